"""In-process runs for the CLI, and the summary they print.

The summary is the run's `history.RunOutcome`, the one interpretation of a run that history,
`show` and alerts also read. Its `status` is `success`, `failed` or `partial`: partial when at
least one source loaded and another did not.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Callable
from typing import Any, Self, TextIO

import dagster as dg
from upath import UPath

from etl_assets.core.partitions import partitions_def
from etl_assets.core.secrets import redact
from etl_assets.ops import history, lineage
from etl_assets.ops.history import RunOutcome
from etl_assets.orchestration.assets import LAYERS, asset_key
from etl_assets.quality import check_name
from etl_assets.spec import PipelineSpec, RowCountCheck

STEPS = (*LAYERS, "report")


class RunRequestError(Exception):
    """The user asked for something that cannot run (unknown partition, missing upstream)."""


def resolve_partitions(
    spec: PipelineSpec,
    *,
    partition: str | None = None,
    first: str | None = None,
    last: str | None = None,
    latest: bool = False,
    last_n: int | None = None,
) -> list[str]:
    pdef = partitions_def(spec)
    keys = pdef.get_partition_keys()
    if not keys:
        raise RunRequestError(f"{spec.name}: no complete partition yet (partitions start {spec.partitions.start})")
    chosen = sum(bool(x) for x in (partition, first or last, latest, last_n))
    if chosen != 1:
        raise RunRequestError("choose exactly one of --partition, --from/--to, --latest or --last N")
    if latest:
        return [keys[-1]]
    if last_n:
        return keys[-last_n:]
    wanted = [partition] if partition else [first or last, last or first]
    for k in wanted:
        if k not in keys:
            near = ", ".join(keys[-3:])
            raise RunRequestError(
                f"{spec.name}: {k!r} is not a complete partition key (latest ones: {near})"
            )
    if partition:
        return [partition]
    i, j = keys.index(wanted[0]), keys.index(wanted[1])
    if i > j:
        raise RunRequestError(f"--from {wanted[0]} is after --to {wanted[1]}")
    return keys[i : j + 1]


def step_selection(spec: PipelineSpec, step: str | None) -> list[dg.AssetKey] | None:
    if step is None:
        return None
    if step == "report":
        return [asset_key(spec.name, "report")]
    return [asset_key(spec.name, step, s.name) for s in spec.sources]


def check_upstream(instance: dg.DagsterInstance, spec: PipelineSpec, step: str | None, keys: list[str]) -> None:
    """`--step report` needs every source loaded for these partitions; say which is missing."""
    if step != "report":
        return  # the Parquet IO manager names missing upstream files for the other steps
    for s in spec.sources:
        key = asset_key(spec.name, "loaded", s.name)
        have = instance.get_materialized_partitions(key)
        missing = [k for k in keys if k not in have]
        if missing:
            raise RunRequestError(
                f"{key.to_user_string()} has no materialization for {', '.join(missing)}: "
                f"run --step loaded (or the whole pipeline) first"
            )


def send_lineage(instance: dg.DagsterInstance, spec: PipelineSpec, run_id: str) -> None:
    """An in-process run has no daemon sensor to send its OpenLineage events: send them here.

    START goes out after the fact, stamped with the run's start time, then the final event.
    """
    if not lineage.configured():
        return
    run = instance.get_run_by_id(run_id)
    if run is None or run.status not in lineage.EVENT_TYPES:
        return
    for status in (dg.DagsterRunStatus.STARTED, run.status):
        lineage.emit(instance, run, spec, status, warehouse_url=os.environ["ETL_WAREHOUSE_URL"])


def run_pipeline(
    defs: dg.Definitions,
    spec: PipelineSpec,
    keys: list[str],
    *,
    step: str | None = None,
    instance: dg.DagsterInstance,
    trigger: str = "cli",
    log_level: str = "WARNING",
    record_history: bool = True,
    notifiers: dict[str, Any] | None = None,
    on_event: Callable[[dg.EventLogEntry], None] | None = None,
) -> RunOutcome:
    """Run `keys` in-process; `on_event` sees each event of the run as it happens."""
    check_upstream(instance, spec, step, keys)
    job = defs.resolve_job_def(f"{spec.name}_job")
    selection = step_selection(spec, step)
    tags = {"etl/trigger": trigger, "etl/pipeline": spec.name}
    kwargs: dict[str, Any] = {}
    if len(keys) == 1:
        kwargs["partition_key"] = keys[0]
    else:
        tags["dagster/asset_partition_range_start"] = keys[0]
        tags["dagster/asset_partition_range_end"] = keys[-1]
    run_id = str(uuid.uuid4())  # known before the run starts, so a listener can follow it
    if on_event is not None:
        instance.add_event_listener(run_id, on_event)
    result = job.execute_in_process(
        instance=instance,
        tags=tags,
        raise_on_error=False,
        asset_selection=selection,
        run_id=run_id,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        **kwargs,
    )
    send_lineage(instance, spec, result.run_id)
    if not record_history:
        return history.build_outcome(instance, result.run_id, spec)
    # The same handler the daemon's run-status sensors call: same rows, same messages, and
    # the same outcome this summary prints.
    from etl_assets.orchestration.sensors import record_run

    outcome = record_run(
        instance,
        result.run_id,
        {spec.name: spec},
        warehouse_url=os.environ["ETL_WAREHOUSE_URL"],
        webserver_url=os.environ.get("ETL_WEBSERVER_URL", "http://127.0.0.1:3000"),
        **(notifiers or {}),
    )
    assert outcome is not None  # the run is ours: it carries the etl/pipeline tag
    return outcome


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


def _expected_rows(check: RowCountCheck) -> str:
    if check.max is None:
        return f"at least {check.min or 0}"
    if check.min is None:
        return f"at most {check.max}"
    return f"between {check.min} and {check.max}"


def check_cause(c: dict[str, Any], check: Any | None) -> str:
    """Why a check failed, in the words of the spec the user wrote."""
    if c.get("message"):
        return str(c["message"])
    if isinstance(check, RowCountCheck):
        return f"{c.get('observed')} rows, expected {_expected_rows(check)}"
    if c.get("unexpected_count"):
        samples = ", ".join(map(str, (c.get("samples") or [])[:3]))
        return (f"{c['unexpected_count']:,} of {c.get('element_count') or 0:,} rows fail "
                f"'{c.get('description')}'" + (f" (e.g. {samples})" if samples else ""))
    return f"expected {c.get('description')}, observed {c.get('observed')}"


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


def _entry_error(entry: dg.EventLogEntry) -> Any:
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
    folder = UPath(os.environ["ETL_STORAGE_DIR"]) / pipeline / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id}.log"
    path.write_text(redact("\n".join(lines) + "\n"), encoding="utf-8")
    return str(path)


# --- live progress ---------------------------------------------------------------------------


class Progress:
    """One line per step as it starts and as it ends; on a terminal, a bar over partitions.

    Fed by the instance's event listener while the run executes in this process.
    """

    def __init__(self, spec: PipelineSpec, keys: list[str], step: str | None, stream: TextIO) -> None:
        from rich.console import Console

        self.console = Console(file=stream, soft_wrap=True, highlight=False)
        self.span = keys[0] if len(keys) == 1 else f"{keys[0]} … {keys[-1]}"
        self.partitions = len(keys)
        selected = step_selection(spec, step)
        self.total = len(selected) if selected else len(spec.sources) * len(LAYERS) + 1
        self.index: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.rows: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.ended: set[str] = set()
        self.bar: Any = None
        if self.console.is_terminal:
            from rich import progress as rp

            self.bar = rp.Progress(
                rp.TextColumn("partitions"), rp.BarColumn(), rp.MofNCompleteColumn(), rp.TimeElapsedColumn(),
                console=self.console, transient=True,
            )
            self.task = self.bar.add_task("", total=self.total * self.partitions)

    def __enter__(self) -> Self:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def finish(self, instance: dg.DagsterInstance, run_id: str) -> None:
        """Print the end of every step whose end event the listener has not seen, from the
        stored event log: the run's summary never follows a step left hanging at "…"."""
        ends = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_SKIPPED}
        for entry in instance.all_logs(run_id, of_type=ends):
            if entry.step_key and entry.step_key not in self.ended:
                self(entry)

    def _label(self, step: str) -> str:
        parts = step.split("__")
        name = f"{parts[2]} {parts[1]}" if len(parts) == 3 else parts[-1]
        return f"[{self.index[step]}/{self.total}] {name} {self.span}"

    def _advance(self, step: str, n: int) -> None:
        n = min(n, self.partitions - self.done.get(step, 0))
        self.done[step] = self.done.get(step, 0) + n
        if self.bar is not None and n > 0:
            self.bar.advance(self.task, n)

    def __call__(self, entry: dg.EventLogEntry) -> None:
        event, step = entry.dagster_event, entry.step_key
        if event is None or not step:
            return
        kind = event.event_type
        if kind == dg.DagsterEventType.STEP_START:
            self.index.setdefault(step, len(self.index) + 1)
            self.started[step] = entry.timestamp
            self.console.print(f"{self._label(step)} …", markup=False)
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            meta = entry.asset_materialization.metadata
            by_partition = getattr(meta.get("rows_by_partition"), "value", None)
            if isinstance(by_partition, dict):
                self.rows[step] = sum(int(v or 0) for v in by_partition.values())
            elif meta.get("dagster/row_count") is not None and step.count("__") == 2:
                self.rows[step] = int(meta["dagster/row_count"].value)
            self._advance(step, 1)
        elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            self.index.setdefault(step, len(self.index) + 1)
            self.ended.add(step)
            took = entry.timestamp - self.started.get(step, entry.timestamp)
            word = "OK" if kind == dg.DagsterEventType.STEP_SUCCESS else "FAILED"
            rows = f" {self.rows[step]:,} rows" if step in self.rows else ""
            self._advance(step, self.partitions)
            self.console.print(f"{self._label(step)} … {word}{rows} {took:.1f} s", markup=False)
        elif kind == dg.DagsterEventType.STEP_SKIPPED:
            self.index.setdefault(step, len(self.index) + 1)
            self.ended.add(step)
            self._advance(step, self.partitions)
            self.console.print(f"{self._label(step)} … SKIPPED (upstream failed)", markup=False)
