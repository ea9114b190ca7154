"""In-process runs for the CLI, and the run summary every entry point reports.

The summary's `status` is `success`, `failed` or `partial`: partial when at least one source
loaded and another did not.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from etl_assets.assets import LAYERS, asset_key
from etl_assets.partitions import partitions_def
from etl_assets.secrets import redact
from etl_assets.spec import PipelineSpec

STEPS = (*LAYERS, "report")


class RunRequestError(Exception):
    """The user asked for something that cannot run (unknown partition, missing upstream)."""


@dataclass
class SourceOutcome:
    status: str = "skipped"  # success | failed | skipped
    rows_extracted: int | None = None
    inserted: int | None = None
    updated: int | None = None
    unchanged: int | None = None
    deleted: int | None = None
    error: str | None = None


@dataclass
class RunSummary:
    run_id: str
    pipeline: str
    partitions: list[str]
    status: str
    sources: dict[str, SourceOutcome] = field(default_factory=dict)
    report_path: str | None = None
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "partitions": self.partitions,
            "status": self.status,
            "sources": {k: v.__dict__ for k, v in self.sources.items()},
            "report_path": self.report_path,
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "notes": self.notes,
        }


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


def _meta(event: dg.DagsterEvent) -> dict[str, Any]:
    mat = event.step_materialization_data.materialization
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def summarize(spec: PipelineSpec, result: Any, keys: list[str], selected: list[dg.AssetKey] | None) -> RunSummary:
    P = spec.name
    outcomes = {s.name: SourceOutcome() for s in spec.sources}
    report_path = None
    failures: list[str] = []
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            key = event.asset_key
            meta = _meta(event)
            if key == asset_key(P, "report"):
                report_path = meta.get("report_path")
                continue
            layer, source = key.path[1], key.path[2]
            o = outcomes[source]
            if layer == "raw":
                o.rows_extracted = int(meta.get("dagster/row_count") or 0)
            if layer == "loaded":
                for f in ("inserted", "updated", "unchanged", "deleted"):
                    setattr(o, f, int(meta.get(f) or 0))
            o.status = "success" if o.status != "failed" else o.status
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            data = event.step_failure_data
            message = (
                data.user_failure_data.description
                if data.user_failure_data and data.user_failure_data.description
                else (data.error.message.strip() if data.error else "step failed")
            )
            message = redact(message)
            parts = event.step_key.split("__")
            if len(parts) == 3 and parts[2] in outcomes:
                outcomes[parts[2]].status = "failed"
                outcomes[parts[2]].error = outcomes[parts[2]].error or message
            failures.append(message)
    # A source whose selected steps all materialized succeeded; one stopped upstream did not.
    final_layer = {k.path[1] for k in selected} if selected else {"loaded"}
    for s in spec.sources:
        o = outcomes[s.name]
        if o.status == "success" and "loaded" in final_layer and o.inserted is None:
            o.status = "failed" if o.error else "skipped"
    statuses = [o.status for o in outcomes.values()]
    if result.success:
        status = "success"
    elif "success" in statuses and any(st != "success" for st in statuses):
        status = "partial"
    else:
        status = "failed"
    return RunSummary(
        run_id=result.run_id,
        pipeline=P,
        partitions=keys,
        status=status,
        sources=outcomes,
        report_path=report_path,
        error=failures[0] if failures else None,
    )


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
) -> RunSummary:
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
    started = dt.datetime.now(dt.timezone.utc)
    result = job.execute_in_process(
        instance=instance,
        tags=tags,
        raise_on_error=False,
        asset_selection=selection,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        **kwargs,
    )
    summary = summarize(spec, result, keys, selection)
    summary.started_at = started.isoformat()
    summary.finished_at = dt.datetime.now(dt.timezone.utc).isoformat()
    if record_history:
        # The same handler the daemon's run-status sensors call: same rows, same messages.
        from etl_assets.sensors import handle_run_finished

        record = handle_run_finished(
            instance,
            result.run_id,
            {spec.name: spec},
            warehouse_url=os.environ["ETL_WAREHOUSE_URL"],
            webserver_url=os.environ.get("ETL_WEBSERVER_URL", "http://127.0.0.1:3000"),
            **(notifiers or {}),
        )
        if record:
            summary.report_path = record.get("report_path") or summary.report_path
            summary.notes = record.get("notes", [])
    return summary


def format_summary(s: RunSummary) -> str:
    span = s.partitions[0] if len(s.partitions) == 1 else f"{s.partitions[0]} … {s.partitions[-1]}"
    lines = [f"run {s.run_id}  {s.pipeline}  partitions {span} ({len(s.partitions)})  {s.status.upper()}"]
    for name, o in s.sources.items():
        counts = (
            f"extracted {o.rows_extracted if o.rows_extracted is not None else '-'}  "
            f"inserted {o.inserted if o.inserted is not None else '-'}  "
            f"updated {o.updated if o.updated is not None else '-'}  "
            f"unchanged {o.unchanged if o.unchanged is not None else '-'}"
        )
        lines.append(f"  {name:<16} {o.status:<8} {counts}")
        if o.error:
            lines.append(f"    error: {o.error}")
    if s.error and not any(o.error for o in s.sources.values()):
        lines.append(f"  error: {s.error}")
    if s.report_path:
        lines.append(f"report: {s.report_path}")
    return "\n".join(lines)
