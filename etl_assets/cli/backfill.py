"""Backfills that are safe to launch.

Each partition's state is read from the Dagster instance: the per-partition status of the
`loaded` assets (and the report, whose failure fails the partition's run) and the runs still
queued or running. The plan skips what is loaded or in flight, so a backfill never doubles a
partition another run already covers, and the runs go through the webserver to the run queue,
so they outlive the command that launched them.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import dagster as dg

from etl_assets.core.keys import asset_key
from etl_assets.core.partitions import partitions_def
from etl_assets.ops import jobcontrol as jobs
from etl_assets.ops.history import pipeline_of
from etl_assets.orchestration.schedules import (
    IN_FLIGHT,
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
)
from etl_assets.spec import PipelineSpec

State = Literal["materialized", "failed", "missing", "queued", "running"]
Reprocess = Literal["missing", "failed", "all"]

TRIGGER = "backfill"
BACKFILL_TAG = "etl/backfill"
# With --max-concurrent N, run i carries `<backfill id>:<i mod N>`; the instance admits one run
# per value at a time (dagster.yaml), so at most N run at once, even after the CLI has exited.
LANE_TAG = "etl/backfill_lane"

LAUNCH = "launch"
SKIP_LOADED = "skip: already loaded"
SKIP_IN_FLIGHT = "skip: in flight"
SKIP_NOT_FAILED = "skip: not failed"

_WAITING = (dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED)


class BackfillError(Exception):
    """The instance cannot run this backfill as asked."""


@dataclass
class PartitionPlan:
    partition: str
    state: State
    action: str
    run_id: str | None = None  # the run in flight that covers it


@dataclass
class PlannedRun:
    partitions: list[str]
    run_id: str | None = None  # set once launched


@dataclass
class Backfill:
    pipeline: str
    first: str
    last: str
    reprocess: Reprocess
    max_concurrent: int | None
    dry_run: bool
    partitions: list[PartitionPlan]
    runs: list[PlannedRun] = field(default_factory=list)
    backfill_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["from"], out["to"] = out.pop("first"), out.pop("last")
        return out


def _in_flight(instance: dg.DagsterInstance, spec: PipelineSpec, keys: list[str]) -> dict[str, tuple[State, str]]:
    """Keys covered by a queued or running run of the pipeline, whoever launched it (UI included)."""
    busy: dict[str, tuple[State, str]] = {}
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=IN_FLIGHT)):
        run = record.dagster_run
        if pipeline_of(run) != spec.name:
            continue
        tags = run.tags
        if PARTITION_TAG in tags:
            covered = [tags[PARTITION_TAG]]
        elif RANGE_START_TAG in tags and RANGE_END_TAG in tags:
            # Keys are zero-padded times, so string order is time order.
            covered = [k for k in keys if tags[RANGE_START_TAG] <= k <= tags[RANGE_END_TAG]]
        else:
            covered = []
        state: State = "queued" if run.status in _WAITING else "running"
        for k in covered:
            busy.setdefault(k, (state, run.run_id))
    return busy


def partition_states(
    instance: dg.DagsterInstance, spec: PipelineSpec, keys: list[str]
) -> dict[str, tuple[State, str | None]]:
    """Per key: queued or running (with the run), failed (a load's or the report's latest attempt
    failed), materialized (every source loaded) or missing."""
    pdef = partitions_def(spec)
    loaded = [
        instance.get_status_by_partition(asset_key(spec.name, "loaded", s.name), keys, pdef) or {}
        for s in spec.sources
    ]
    report = instance.get_status_by_partition(asset_key(spec.name, "report"), keys, pdef) or {}
    busy = _in_flight(instance, spec, keys)
    states: dict[str, tuple[State, str | None]] = {}
    for k in keys:
        if k in busy:
            states[k] = busy[k]
        elif any(s.get(k) == dg.AssetPartitionStatus.FAILED for s in (*loaded, report)):
            states[k] = ("failed", None)
        elif all(s.get(k) == dg.AssetPartitionStatus.MATERIALIZED for s in loaded):
            states[k] = ("materialized", None)
        else:
            states[k] = ("missing", None)
    return states


def action(state: State, reprocess: Reprocess) -> str:
    """`missing` launches what is not loaded (failed included), `failed` only what failed,
    `all` everything; never a partition in flight."""
    if state in ("queued", "running"):
        return SKIP_IN_FLIGHT
    if reprocess == "all" or state == "failed":
        return LAUNCH
    if state == "materialized":
        return SKIP_LOADED
    return LAUNCH if reprocess == "missing" else SKIP_NOT_FAILED


def group_runs(partitions: list[PartitionPlan], max_concurrent: int | None) -> list[PlannedRun]:
    """One run per partition with --max-concurrent; otherwise one run per unbroken stretch of
    partitions to launch, as a single-run backfill (a skipped partition splits the range)."""
    runs: list[PlannedRun] = []
    previous = None
    for p in partitions:
        if p.action == LAUNCH:
            if max_concurrent or previous != LAUNCH:
                runs.append(PlannedRun([]))
            runs[-1].partitions.append(p.partition)
        previous = p.action
    return runs


def plan(
    instance: dg.DagsterInstance,
    spec: PipelineSpec,
    keys: list[str],
    *,
    reprocess: Reprocess = "missing",
    max_concurrent: int | None = None,
    dry_run: bool = False,
) -> Backfill:
    states = partition_states(instance, spec, keys)
    partitions = [PartitionPlan(k, s, action(s, reprocess), run_id) for k, (s, run_id) in states.items()]
    return Backfill(
        spec.name, keys[0], keys[-1], reprocess, max_concurrent, dry_run, partitions,
        group_runs(partitions, max_concurrent),
    )


def check_lanes(instance: dg.DagsterInstance) -> None:
    """--max-concurrent relies on the run queue's one-run-per-lane limit; without it, say so."""
    queue = instance.get_concurrency_config().run_queue_config
    for limit in (queue.tag_concurrency_limits if queue else []):
        value = limit.get("value")
        if limit.get("key") == LANE_TAG and limit.get("limit") == 1 and isinstance(value, dict) \
                and value.get("applyLimitPerUniqueValue"):
            return
    raise BackfillError(
        f"--max-concurrent needs the run queue limit on {LANE_TAG} (one run per value) in "
        f"$DAGSTER_HOME/dagster.yaml, as in the project's dagster.yaml"
    )


def launch(url: str, backfill: Backfill) -> None:
    """Submit the planned runs to the webserver's run queue; each gets its run id as it goes,
    so a failure part-way leaves a record of what was launched."""
    backfill.backfill_id = uuid.uuid4().hex[:8]
    tags = {"etl/trigger": TRIGGER, BACKFILL_TAG: backfill.backfill_id}
    for i, run in enumerate(backfill.runs):
        lane = {LANE_TAG: f"{backfill.backfill_id}:{i % backfill.max_concurrent}"} if backfill.max_concurrent else {}
        if len(run.partitions) == 1:
            run.run_id = jobs.run_job(url, backfill.pipeline, run.partitions[0], tags={**tags, **lane})
        else:
            run.run_id = jobs.run_range(url, backfill.pipeline, run.partitions[0], run.partitions[-1],
                                        tags={**tags, **lane})
