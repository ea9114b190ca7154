"""`etl-assets show RUN_ID`: one run explained in plain words, from its history record."""

from __future__ import annotations

from typing import Any

LAYERS = ("raw", "normalized", "validated")


def _n(v: Any) -> str:
    return "-" if v is None else f"{v:,}" if isinstance(v, int) else str(v)


def explain(run: dict[str, Any], storage_dir: str) -> str:
    P, parts = run["pipeline"], list(run["partitions"])
    out: list[str] = []
    add = out.append
    add(f"Run {run['run_id']} of {P}: {run['status'].upper()}")
    add("")
    add("What ran")
    add(f"  pipeline {P}, sources {', '.join(run['sources']) or '-'}, {len(parts)} partition(s): {', '.join(parts)}")
    for step, info in sorted((run.get("steps") or {}).items()):
        add(f"  step {step}: {info.get('status', '?')}" + (f" in {info['duration_s']:.2f}s" if info.get("duration_s") is not None else ""))
    add("")
    add("When")
    add(f"  started {run['started_at']}, finished {run['finished_at']}, took {_n(run['duration_s'])}s; trigger: {run['trigger']}")
    if run.get("retries"):
        add(f"  {run['retries']} step retr{'y' if run['retries'] == 1 else 'ies'} after transient errors")
    if run.get("peak_rss_mb") is not None:
        add(f"  peak memory {run['peak_rss_mb']:.0f} MB, CPU {_n(run.get('cpu_s'))}s")
    add("")
    add("Inputs")
    for name, s in run["sources"].items():
        for key, inp in sorted((s.get("inputs") or {}).items()):
            if not isinstance(inp, dict):
                continue
            add(f"  {name} {key}: window {inp.get('window_start', '?')} → {inp.get('window_end', '?')}")
            if inp.get("query"):
                add(f"    query: {inp['query']}")
            for f in inp.get("files") or []:
                add(f"    file: {f.get('path')} sha256 {str(f.get('sha256'))[:16]}… {_n(f.get('size'))} bytes, {_n(f.get('rows'))} rows")
            if inp.get("pages") is not None:
                add(f"    pages fetched: {inp['pages'] if not isinstance(inp['pages'], list) else len(inp['pages'])}")
            if inp.get("unchanged"):
                add("    inputs unchanged since the previous extract: stored raw file kept")
    add("")
    add("What changed")
    for name, s in run["sources"].items():
        add(
            f"  {name}: {s['status']}; extracted {_n(s['rows_extracted'])}, inserted {_n(s['inserted'])}, "
            f"updated {_n(s['updated'])}, unchanged {_n(s['unchanged'])}, deleted {_n(s['deleted'])}"
            + (f", quarantined {_n(s['rows_quarantined'])}" if s.get("rows_quarantined") else "")
        )
    add("")
    add("Checks and failures")
    any_issue = False
    for name, s in run["sources"].items():
        for c in s.get("checks") or []:
            if not c.get("passed"):
                any_issue = True
                level = "FAILED" if c.get("severity") == "error" else "warned"
                samples = ", ".join(map(str, c.get("samples") or []))
                add(f"  {name}.{c['name']} {level}: {c.get('description')} — {c.get('unexpected_count')} unexpected" + (f" (e.g. {samples})" if samples else ""))
        if s.get("error"):
            any_issue = True
            add(f"  {name} failed: {s['error']}")
    if run.get("error_summary") and not any(s.get("error") for s in run["sources"].values()):
        any_issue = True
        add(f"  run failed ({run.get('error_type')}): {run['error_summary']}")
    if not any_issue:
        add("  every check passed; nothing failed")
    for note in run.get("notes") or []:
        add(f"  note: {note}")
    add("")
    add("Produced")
    base = storage_dir.rstrip("/")
    for name, s in run["sources"].items():
        for layer in LAYERS:
            for k in parts:
                add(f"  {base}/{P}/{layer}/{name}/{k}.parquet")
    if run.get("report_path"):
        add(f"  report: {run['report_path']}")
    add(f"  run log: {base}/{P}/runs/{run['run_id']}.json")
    if run.get("webserver_url"):
        add(f"  in the UI: {run['webserver_url'].rstrip('/')}/runs/{run['run_id']}")
    return "\n".join(out)
