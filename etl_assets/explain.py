"""`etl-assets show RUN_ID`: one run explained in plain words, from its history record."""

from __future__ import annotations

from typing import Any


def _n(v: Any) -> str:
    return "-" if v is None else f"{v:,}" if isinstance(v, int) else str(v)


def ordered_steps(run: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Steps in the order they ran; those that did not run come last."""
    steps = (run.get("steps") or {}).items()
    return sorted(steps, key=lambda kv: (kv[1].get("order", len(steps)), kv[1].get("started_at") or "", kv[0]))


def check_lines(source: str, checks: list[dict[str, Any]], partitions: int) -> list[str]:
    """One line per check that did not pass, then one line per partition where it did not."""
    lines: list[str] = []
    by_name: dict[str, list[dict[str, Any]]] = {}
    for c in checks:
        if not c.get("passed"):
            by_name.setdefault(c["name"], []).append(c)
    for name, failing in by_name.items():
        first = failing[0]
        level = "FAILED" if first.get("severity") == "error" else "warned"
        total = sum(int(c.get("unexpected_count") or 0) for c in failing)
        where = [c["partition"] for c in failing if c.get("partition")]
        span = f" in {len(where)} of {partitions} partition(s)" if where else ""
        lines.append(f"  {source}.{name} {level}: {first.get('description')} — {total:,} unexpected{span}")
        for c in failing:
            samples = ", ".join(map(str, c.get("samples") or []))
            detail = f"{_n(c.get('unexpected_count'))} unexpected" + (f" (e.g. {samples})" if samples else "")
            lines.append(f"    {c.get('partition') or 'partition not recorded'}: {detail}")
    return lines


def explain(run: dict[str, Any], storage_dir: str) -> str:
    P, parts = run["pipeline"], list(run["partitions"])
    out: list[str] = []
    add = out.append
    add(f"Run {run['run_id']} of {P}: {run['status'].upper()}")
    add("")
    add("What ran")
    add(f"  pipeline {P}, sources {', '.join(run['sources']) or '-'}, {len(parts)} partition(s): {', '.join(parts)}")
    for step, info in ordered_steps(run):
        if info.get("status") == "not run":
            add(f"  step {step}: not run ({info.get('reason') or 'not started'})")
            continue
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
        for line in check_lines(name, s.get("checks") or [], len(parts)):
            any_issue = True
            add(line)
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
    for step, info in ordered_steps(run):
        for path in info.get("produced") or []:
            add(f"  {path}")
    if run.get("report_path"):
        add(f"  report: {run['report_path']}")
    add(f"  run log: {base}/{P}/runs/{run['run_id']}.json")
    if run.get("webserver_url"):
        add(f"  in the UI: {run['webserver_url'].rstrip('/')}/runs/{run['run_id']}")
    return "\n".join(out)
