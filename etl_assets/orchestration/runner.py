"""In-process runs for the CLI, and the summary they print.

The summary is the run's `history.RunOutcome`, the one interpretation of a run that history,
`show` and alerts also read. Its `status` is `success`, `failed` or `partial`: partial when at
least one source loaded and another did not.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import dagster as dg

from etl_assets.core import settings
from etl_assets.core import tags as tag
from etl_assets.core.keys import LAYERS, asset_key
from etl_assets.core.outcome import RunOutcome
from etl_assets.core.partitions import partitions_def
from etl_assets.ops import history, lineage
from etl_assets.orchestration.sensors import record_run
from etl_assets.spec import PipelineSpec

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
    keys = list(pdef.get_partition_keys())
    if not keys:
        raise RunRequestError(f"{spec.name}: no complete partition yet (partitions start {spec.partitions.start})")
    chosen = sum(bool(x) for x in (partition, first or last, latest, last_n))
    if chosen != 1:
        raise RunRequestError("choose exactly one of --partition, --from/--to, --latest or --last N")
    if latest:
        return [keys[-1]]
    if last_n:
        return keys[-last_n:]
    lo, hi = (partition, partition) if partition else (first or last, last or first)
    assert lo is not None and hi is not None  # exactly one choice was made, checked above
    for k in (lo, hi):
        if k not in keys:
            near = ", ".join(keys[-3:])
            raise RunRequestError(
                f"{spec.name}: {k!r} is not a complete partition key (latest ones: {near})"
            )
    if partition:
        return [partition]
    i, j = keys.index(lo), keys.index(hi)
    if i > j:
        raise RunRequestError(f"--from {lo} is after --to {hi}")
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
        lineage.emit(instance, run, spec, status, warehouse_url=settings.require_warehouse_url())


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
    tags = {tag.TRIGGER: trigger, tag.PIPELINE: spec.name}
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
    outcome = record_run(
        instance,
        result.run_id,
        {spec.name: spec},
        warehouse_url=settings.require_warehouse_url(),
        webserver_url=settings.webserver_url(),
        **(notifiers or {}),
    )
    assert outcome is not None  # the run is ours: it carries the etl/pipeline tag
    return outcome
