"""One schedule per pipeline: a tick at a local time after each window closes, with catch-up.

Dagster does not catch up missed ticks of schedules defined in code: after an outage it
evaluates only the latest tick. So every tick looks back over the last `catchup.window`
complete partitions itself and requests each one that is not materialized, not running and
not already launched by this schedule, oldest first.
"""

from __future__ import annotations

import datetime as dt
from itertools import islice
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import dagster as dg

from etl_assets.core import tags as tag
from etl_assets.core.keys import asset_key
from etl_assets.core.partitions import latest_complete_keys, partitions_def
from etl_assets.dagster_internal import cron_ticks
from etl_assets.spec import WEEKDAYS, PipelineSpec, SpecError

if TYPE_CHECKING:
    from etl_assets.dagster_internal import AssetJob

SCHEDULE_TAG = "dagster/schedule_name"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
LOCK_TAG = tag.PARTITION_LOCK

# A run in any of these may still write its partitions, so a second one would only queue
# behind the partition lock and redo the same work.
IN_FLIGHT = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def schedule_name(spec: PipelineSpec) -> str:
    return f"{spec.name}_schedule"


def schedule_cron(spec: PipelineSpec) -> str:
    """The tick cron, read in the pipeline's timezone: `schedule.at` after each window closes."""
    p, s = spec.partitions, spec.schedule
    problem = s.conflict(p.cadence)
    if problem:
        raise SpecError(f"pipeline {spec.name}: {problem}")
    hour, minute = (int(x) for x in s.at.split(":"))
    if p.cadence == "cron":
        return str(p.cron)
    if p.cadence in ("15min", "30min"):
        step = 15 if p.cadence == "15min" else 30
        return ",".join(str(m) for m in range(minute % step, 60, step)) + " * * * *"
    if p.cadence == "hourly":
        return f"{minute} * * * *"
    if p.cadence == "daily":
        return f"{minute} {hour} * * *"
    if p.cadence == "weekly":
        day = WEEKDAYS.index(s.day_of_week or p.week_start)
        return f"{minute} {hour} * * {day}"
    return f"{minute} {hour} {s.day_of_month or 1} * *"


CAUGHT_UP_TAG = tag.CAUGHT_UP
OUTSIDE_WINDOW_TAG = tag.OUTSIDE_WINDOW
TICK_TAG = tag.TICK


def run_tags(spec: PipelineSpec, key: str) -> dict[str, str]:
    tags = {
        PARTITION_TAG: key,
        LOCK_TAG: f"{spec.name}:{key}",
        tag.TRIGGER: "schedule",
    }
    if spec.timeout_minutes:
        tags["dagster/max_runtime"] = str(spec.timeout_minutes * 60)
    return tags


def materialized_partitions(instance: dg.DagsterInstance, spec: PipelineSpec) -> set[str]:
    """Partitions whose report and every loaded table exist: nothing left to do for them."""
    keys = [asset_key(spec.name, "report")] + [
        asset_key(spec.name, "loaded", s.name) for s in spec.sources
    ]
    done: set[str] | None = None
    for key in keys:
        have = set(instance.get_materialized_partitions(key))
        done = have if done is None else done & have
    return done or set()


def in_flight(instance: dg.DagsterInstance, spec: PipelineSpec, candidates: list[str]) -> set[str]:
    """Candidates a queued or running run of the pipeline covers, from any trigger."""
    busy: set[str] = set()
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=f"{spec.name}_job", statuses=IN_FLIGHT)
    )
    for record in records:
        tags = record.dagster_run.tags
        if PARTITION_TAG in tags:
            busy.add(tags[PARTITION_TAG])
        elif RANGE_START_TAG in tags and RANGE_END_TAG in tags:
            # Keys are zero-padded timestamps, so string order is time order.
            first, last = tags[RANGE_START_TAG], tags[RANGE_END_TAG]
            busy.update(k for k in candidates if first <= k <= last)
    return busy


def _launched(instance: dg.DagsterInstance, spec: PipelineSpec, candidates: list[str]) -> set[str]:
    """Candidates this schedule already launched, in any status: a failure waits for a person."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={SCHEDULE_TAG: schedule_name(spec), PARTITION_TAG: candidates})
    )
    return {r.dagster_run.tags[PARTITION_TAG] for r in records}


def catchup_partitions(
    instance: dg.DagsterInstance, spec: PipelineSpec, now: dt.datetime
) -> list[str]:
    """The partitions a tick at `now` requests, oldest first."""
    candidates = latest_complete_keys(partitions_def(spec), spec.catchup.lookback, now)
    if not candidates:
        return []
    skip = (
        materialized_partitions(instance, spec)
        | in_flight(instance, spec, candidates)
        | _launched(instance, spec, candidates)
    )
    return [k for k in candidates if k not in skip][: spec.catchup.runs_per_tick]


def outside_window(
    instance: dg.DagsterInstance, spec: PipelineSpec, now: dt.datetime, oldest_in_window: str
) -> list[str]:
    """Unprocessed partitions just before the look-back window: catch-up will not reach them.

    Looks back one more window's length, so a long-unloaded history does not flood the note.
    """
    keys = latest_complete_keys(partitions_def(spec), 2 * spec.catchup.lookback, now)
    older = [k for k in keys if k < oldest_in_window]
    if not older:
        return []
    done = materialized_partitions(instance, spec) | _launched(instance, spec, older) | in_flight(instance, spec, older)
    return [k for k in older if k not in done]


def build_schedule(spec: PipelineSpec, job: AssetJob | None = None) -> dg.ScheduleDefinition:
    """`<pipeline>_schedule`, targeting `<pipeline>_job` from `etl_assets.orchestration.assets.build_job`."""
    catchup = spec.catchup
    looked_at = (
        f"the last {catchup.window} partitions" if catchup.enabled else "the latest partition"
    )
    scope = (
        f"{looked_at}, at most {catchup.max_runs_per_tick} runs a tick"
        if catchup.enabled
        else "the latest partition only"
    )

    @dg.schedule(
        name=schedule_name(spec),
        cron_schedule=schedule_cron(spec),
        execution_timezone=spec.timezone,
        # By name, so it binds to the job build_defs already holds (a second definition of
        # the same job is an error); pass `job` to use a schedule without build_defs.
        **({"job": job} if job is not None else {"job_name": f"{spec.name}_job"}),
        default_status=(
            dg.DefaultScheduleStatus.RUNNING
            if spec.schedule.enabled
            else dg.DefaultScheduleStatus.STOPPED
        ),
        description=f"Runs {spec.name} after each window closes; catches up {scope}.",
    )
    def _tick(context: dg.ScheduleEvaluationContext) -> dg.SkipReason | list[dg.RunRequest]:
        now = context.scheduled_execution_time or dt.datetime.now(dt.timezone.utc)
        keys = catchup_partitions(context.instance, spec, now)
        if not keys:
            return dg.SkipReason(
                f"{spec.name}: {looked_at} at {now.isoformat()}: each is materialized, "
                "running or already launched by this schedule"
            )
        # More than one partition at once means ticks were missed: say so in the runs' tags,
        # and the run-finished handler records it in etl_meta.missed_ticks and the next alert.
        extra: dict[str, str] = {}
        if len(keys) > 1:
            window = latest_complete_keys(partitions_def(spec), spec.catchup.lookback, now)
            extra = {
                CAUGHT_UP_TAG: ",".join(keys[:-1]),
                OUTSIDE_WINDOW_TAG: ",".join(outside_window(context.instance, spec, now, window[0])),
                TICK_TAG: now.isoformat(),
            }
        return [
            dg.RunRequest(run_key=k, partition_key=k, tags={**run_tags(spec, k), **extra}) for k in keys
        ]

    return _tick


def preview(spec: PipelineSpec, n: int, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The next `n` ticks after `now` and the partition each processes when nothing is behind."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    tz = ZoneInfo(spec.timezone)
    pdef = partitions_def(spec)
    out = []
    for tick in islice(cron_ticks(schedule_cron(spec), spec.timezone, now), n):
        keys = latest_complete_keys(pdef, 1, tick)
        out.append(
            {
                "local": tick.astimezone(tz).isoformat(),
                "utc": tick.astimezone(dt.timezone.utc).isoformat(),
                "partition": keys[-1] if keys else None,
            }
        )
    return out
