"""`etl-assets show RUN_ID`: one run explained in plain words, from its history record."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any
from zoneinfo import ZoneInfo

from upath import UPath

# Clauses that start a new line of an indented query.
_CLAUSE = re.compile(r"\s+(?=\b(?:FROM|WHERE|AND|OR|ORDER BY|GROUP BY|HAVING|LIMIT|OFFSET|UNION)\b)", re.IGNORECASE)
_QUOTED = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")")


def _n(v: Any) -> str:
    return "-" if v is None else f"{v:,}" if isinstance(v, int) else str(v)


def value(v: Any) -> str:
    """A value as the user wrote it: 17, not 17.0 (pandas widens nullable integers to floats)."""
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return str(int(v))
    return str(v)


def samples_text(samples: list[Any]) -> str:
    """`17, 18 and 2 nulls`, never `None, None`."""
    nulls = sum(v is None or (isinstance(v, float) and math.isnan(v)) for v in samples)
    shown = [value(v) for v in samples if not (v is None or (isinstance(v, float) and math.isnan(v)))]
    if nulls:
        shown.append(f"{nulls} null{'' if nulls == 1 else 's'}")
    return ", ".join(shown)


def when(ts: Any, tz: ZoneInfo) -> str:
    """To the second, in the pipeline's timezone and in UTC."""
    if ts is None:
        return "-"
    t = dt.datetime.fromisoformat(ts) if isinstance(ts, str) else ts
    t = t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    local = t.astimezone(tz)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({t.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC)"


def indented_query(query: str, indent: str = "      ") -> list[str]:
    """The query one clause a line (quoted names and literals left whole)."""
    pieces = _QUOTED.split(" ".join(query.split()))
    text = "".join(p if i % 2 else _CLAUSE.sub("\n", p) for i, p in enumerate(pieces))
    return [f"{indent}{line.strip()}" for line in text.splitlines() if line.strip()]


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
            samples = samples_text(c.get("samples") or [])
            detail = f"{_n(c.get('unexpected_count'))} unexpected" + (f" (e.g. {samples})" if samples else "")
            if c.get("message"):
                detail += f": {c['message']}"
            lines.append(f"    {c.get('partition') or 'partition not recorded'}: {detail}")
    return lines


def _size(path: str) -> int | None:
    try:
        return UPath(path).stat().st_size
    except (OSError, ValueError):
        return None


def _bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GB"


def produced_lines(run: dict[str, Any], files: bool) -> list[str]:
    """Per layer: how many files, their size and one of them; or, with `files`, every one."""
    by_layer: dict[str, list[str]] = {}
    for step, info in ordered_steps(run):
        parts = step.split("__")
        layer = parts[1] if len(parts) == 3 else "reports" if parts[-1] == "report" else parts[-1]
        by_layer.setdefault(layer, []).extend(info.get("produced") or [])
    lines: list[str] = []
    for layer, paths in by_layer.items():
        if not paths:
            continue
        if files:
            lines += [f"  {p}" for p in paths]
            continue
        sizes = [s for s in map(_size, paths) if s is not None]
        size = f", {_bytes(sum(sizes))}" if sizes else ""
        lines.append(f"  {layer}: {len(paths)} file{'' if len(paths) == 1 else 's'}{size}, e.g. {paths[0]}")
    return lines


def _what_ran(run: dict[str, Any], parts: list[str]) -> list[str]:
    span = parts[0] if len(parts) == 1 else f"{parts[0]} … {parts[-1]}" if parts else "-"
    out = [(f"  pipeline {run['pipeline']}, sources {', '.join(run['sources']) or '-'}, "
            f"{len(parts)} partition(s): {', '.join(parts)}")]
    for step, info in ordered_steps(run):
        if info.get("status") == "not run":
            out.append(f"  step {step}: not run ({info.get('reason') or 'not started'})")
            continue
        took = f" in {info['duration_s']:.2f}s" if info.get("duration_s") is not None else ""
        out.append(f"  step {step}: {info.get('status', '?')}{took}, partitions {span}")
    return out


def _inputs(run: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for name, s in run["sources"].items():
        for key, inp in sorted((s.get("inputs") or {}).items()):
            if not isinstance(inp, dict):
                continue
            out.append(f"  {name} {key}: window {inp.get('window_start', '?')} → {inp.get('window_end', '?')}")
            if inp.get("query"):
                out += ["    query:", *indented_query(str(inp["query"]))]
            for f in inp.get("files") or []:
                out.append(f"    file: {f.get('path')} sha256 {str(f.get('sha256'))[:16]}… "
                           f"{_n(f.get('size'))} bytes, {_n(f.get('rows'))} rows")
            if inp.get("pages") is not None:
                out.append(f"    pages fetched: {inp['pages'] if not isinstance(inp['pages'], list) else len(inp['pages'])}")
            if inp.get("unchanged"):
                out.append("    inputs unchanged since the previous extract: stored raw file kept")
    return out


def _failures(run: dict[str, Any], parts: list[str]) -> list[str]:
    out: list[str] = []
    for name, s in run["sources"].items():
        out += check_lines(name, s.get("checks") or [], len(parts))
        if s.get("error"):
            out.append(f"  {name} failed: {s['error']}")
    if run.get("error_summary") and not any(s.get("error") for s in run["sources"].values()):
        out.append(f"  run failed ({run.get('error_type')}): {run['error_summary']}")
    if not out:
        out.append("  every check passed; nothing failed")
    return out + [f"  note: {note}" for note in run.get("notes") or []]


def explain(run: dict[str, Any], storage_dir: str, *, timezone: str = "UTC", files: bool = False) -> str:
    P, parts = run["pipeline"], list(run["partitions"])
    tz = ZoneInfo(timezone)
    out = [f"Run {run['run_id']} of {P}: {run['status'].upper()}", "", "What ran", *_what_ran(run, parts)]
    out += ["", "When",
            f"  started  {when(run['started_at'], tz)}",
            f"  finished {when(run['finished_at'], tz)}",
            f"  took {_n(run['duration_s'])}s; trigger: {run['trigger']}"
            + (f", started by {run['started_by']}" if run.get("started_by") else "")]
    if run.get("retries"):
        out.append(f"  {run['retries']} step retr{'y' if run['retries'] == 1 else 'ies'} after transient errors")
    if run.get("peak_rss_mb") is not None:
        out.append(f"  peak memory {run['peak_rss_mb']:.0f} MB, CPU {_n(run.get('cpu_s'))}s")
    out += ["", "Inputs", *_inputs(run), "", "What changed"]
    for name, s in run["sources"].items():
        out.append(
            f"  {name}: {s['status']}; extracted {_n(s['rows_extracted'])}, inserted {_n(s['inserted'])}, "
            f"updated {_n(s['updated'])}, unchanged {_n(s['unchanged'])}, deleted {_n(s['deleted'])}"
            + (f", quarantined {_n(s['rows_quarantined'])}" if s.get("rows_quarantined") else "")
        )
    out += ["", "Checks and failures", *_failures(run, parts), "", "Produced", *produced_lines(run, files)]
    if run.get("report_path"):
        out.append(f"  report: {run['report_path']}")
    out.append(f"  run log: {storage_dir.rstrip('/')}/{P}/runs/{run['run_id']}.json")
    out.append(f"  step log: {storage_dir.rstrip('/')}/{P}/runs/{run['run_id']}.log")
    if run.get("webserver_url"):
        out.append(f"  in the UI: {run['webserver_url'].rstrip('/')}/runs/{run['run_id']}")
    return "\n".join(out)
