"""The run summary the CLI prints, and the run's log file: both read the run's one `RunOutcome`."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

import dagster as dg
from upath import UPath

from etl_assets.core import settings
from etl_assets.core.outcome import RunOutcome
from etl_assets.core.secrets import redact
from etl_assets.ops import history

if TYPE_CHECKING:
    from dagster._utils.error import SerializableErrorInfo
from etl_assets.quality import check_name
from etl_assets.report.causes import check_cause
from etl_assets.spec import PipelineSpec


def _n(v: int | None) -> str:
    return "-" if v is None else str(v)


def _counts(o: history.SourceOutcome, layers: set[str]) -> str:
    """What the layers this run built did; a one-step run shows that step's own counts."""
    fields: list[tuple[str, int | None]] = []
    if "raw" in layers or "loaded" in layers:
        fields.append(("extracted", o.rows_extracted))
    if layers == {"normalized"}:
        fields += [("normalized", o.rows_normalized), ("duplicates dropped", o.duplicates_dropped)]
    if layers & {"validated", "loaded"}:
        fields.append(("quarantined", o.rows_quarantined))
    if "loaded" in layers:
        fields += [(f, getattr(o, f)) for f in history.LOAD_COUNTS]
        # The load counts first, as the README shows them; what was set aside after.
        fields.append(fields.pop(1))
    if layers == {"validated"}:
        fields += [("checks passed", o.checks_passed), ("warned", len(o.checks_warned)),
                   ("failed", len(o.checks_failed))]
    return "  ".join(f"{name} {_n(v)}" for name, v in fields)


def layers_run(s: RunOutcome) -> set[str]:
    """The source layers among this run's steps (step keys are <pipeline>__<layer>__<source>)."""
    return {k.split("__")[1] for k in s.steps if k.count("__") == 2}


def format_summary(s: RunOutcome, spec: PipelineSpec | None = None, log_path: str | None = None) -> str:
    """The run in a few lines: per source what it did, then one sentence per failure."""
    span = s.partitions[0] if len(s.partitions) == 1 else f"{s.partitions[0]} … {s.partitions[-1]}"
    lines = [f"run {s.run_id}  {s.pipeline}  partitions {span} ({len(s.partitions)})  {s.status.upper()}"]
    layers = layers_run(s) or set(history.SOURCE_LAYERS)
    for name, o in s.sources.items():
        lines.append(f"  {name:<16} {o.status:<8} {_counts(o, layers)}".rstrip())
    lines += failure_lines(s, spec)
    if log_path:
        lines.append(f"log: {log_path}")
    if s.report_path:
        lines.append(f"report: {s.report_path}")
    return "\n".join(lines)


def failure_lines(s: RunOutcome, spec: PipelineSpec | None = None) -> list[str]:
    """One sentence per failure: pipeline, source, partition, the check or step, and why."""
    span = s.partitions[0] if len(s.partitions) == 1 else f"{s.partitions[0]} … {s.partitions[-1]}"
    declared = {(src.name, check_name(c)): c for src in (spec.sources if spec else []) for c in src.checks}
    lines: list[str] = []
    for name, o in s.sources.items():
        blocking = [c for c in o.checks if not c.get("passed") and c.get("severity") == "error"]
        for c in blocking:
            cause = check_cause(c, declared.get((name, c["name"])))
            lines.append(f"{s.pipeline} {name} {c.get('partition') or span}: blocking check {c['name']} failed: {cause}")
        if o.error and not blocking:
            failed = [k.split("__")[1] for k, st in s.steps.items() if st.status == "failed" and k.endswith(f"__{name}")]
            what = f"step {failed[0]}" if failed else "source"
            lines.append(f"{s.pipeline} {name} {span}: {what} failed: {o.error}")
    if s.error_summary and not lines:
        lines.append(f"{s.pipeline} {span}: run failed: {s.error_summary}")
    return lines


# --- the run's log file ----------------------------------------------------------------------


def _entry_error(entry: dg.EventLogEntry) -> SerializableErrorInfo | None:
    """The error (with its stack trace) a failure event carries, if any."""
    data = entry.dagster_event.event_specific_data if entry.dagster_event else None
    return getattr(data, "error", None)


def write_run_log(instance: dg.DagsterInstance, run_id: str, pipeline: str) -> str:
    """Every event of the run, stack traces included, secrets masked: what `-v` would have shown.

    Next to the JSON run log (`<storage>/<pipeline>/runs/`), so `show` and a user find both.
    """
    lines = []
    for entry in instance.all_logs(run_id):
        when = dt.datetime.fromtimestamp(entry.timestamp, dt.UTC).isoformat(timespec="milliseconds")
        event = entry.dagster_event
        what = event.event_type_value if event else "LOG"
        lines.append(f"{when} {logging.getLevelName(entry.level):<7} {entry.step_key or '-'} {what} {entry.message}")
        error = _entry_error(entry)
        if error is not None:
            lines.append(error.to_string().rstrip())
    folder = UPath(settings.storage_dir()) / pipeline / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id}.log"
    path.write_text(redact("\n".join(lines) + "\n"), encoding="utf-8")
    return str(path)
