"""The only place that touches Dagster's private modules (`dagster._*`).

Each function wraps one internal the public API lacks: cron validation and tick times
exactly as the scheduler computes them, stopping a schedule from code, one scheduler
daemon iteration at a chosen instant, failed ticks from the tick history, and a run launcher whose workers run monitoring can check. Pinned to dagster 1.13.x; `etl_assets_tests/test_dagster_internal.py` fails first
when an upgrade moves them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import psutil
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._utils.error import SerializableErrorInfo
from dagster._utils.schedules import cron_string_iterator, is_valid_cron_string

if TYPE_CHECKING:
    # What `dg.define_asset_job` returns; dagster does not export the class.
    from typing import TypeAlias

    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

    AssetJob: TypeAlias = UnresolvedAssetJobDefinition


def is_valid_cron(expression: str) -> bool:
    """Dagster's own check, so a spec never holds a cron the scheduler would refuse."""
    return is_valid_cron_string(expression)


def cron_ticks(cron: str, timezone: str, after: dt.datetime) -> Iterator[dt.datetime]:
    """Tick times strictly after `after`, with the scheduler's own DST rules.

    A time skipped by spring-forward fires at the first existing time after it; an
    ambiguous fall-back time fires once.
    """
    for tick in cron_string_iterator(after.timestamp(), cron, timezone):
        if tick.timestamp() > after.timestamp():
            yield tick


def stop_schedule(instance: dg.DagsterInstance, name: str) -> bool:
    """Stop the schedule `name` as the UI toggle would; the public API cannot.

    Needs the stored state row that exists once the daemon has ticked the schedule or someone
    toggled it. False when there is none or the schedule is already stopped.
    """
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE):
        if state.instigator_name == name and state.is_running:
            instance.stop_schedule(state.instigator_origin_id, state.selector_id, None)
            return True
    return False


def run_scheduler_iteration(
    instance: dg.DagsterInstance,
    python_file: Path,
    now: dt.datetime,
    *,
    attribute: str = "defs",
    logger: logging.Logger | None = None,
) -> None:
    """One scheduler daemon iteration over `python_file`'s definitions, the clock frozen at `now`.

    The code location is loaded in this process, so the frozen clock also holds inside
    schedule evaluation, and runs are submitted through the instance's run coordinator.
    """
    # Lazy: these pull in the daemon and workspace machinery (about 3 s of imports) that
    # only this testing and tooling entry point needs, not every importer of this module.
    from dagster._core.test_utils import freeze_time
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._scheduler.scheduler import launch_scheduled_runs

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            python_file=str(python_file),
            attribute=attribute,
            working_directory=str(python_file.parent),
        ),
        location_name="etl_assets",
    )
    with freeze_time(now.astimezone(dt.timezone.utc)):
        with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context:
            for entry in context.create_request_context().get_code_location_entries().values():
                if entry.load_error:
                    # The daemon would skip the location with a warning and launch nothing.
                    raise RuntimeError(entry.load_error.to_string())
            errors = [
                item
                for item in launch_scheduled_runs(
                    context,
                    logger or logging.getLogger("SchedulerDaemon"),
                    end_datetime_utc=now.astimezone(dt.timezone.utc),
                    iteration_times={},
                )
                if item is not None and hasattr(item, "to_string")
            ]
    if errors:
        # The daemon only logs these and carries on; a caller asking for one iteration wants them.
        raise RuntimeError("\n".join(e.to_string() for e in errors))


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid the run worker reported when it started ("Started process for run (pid: N)")."""
    pid = None
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        value = getattr((data.metadata or {}).get("pid"), "value", None) if data else None
        if value and str(value).isdigit():
            pid = int(value)  # the newest wins: a resumed run has a new worker
    return pid


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class HealthCheckedRunLauncher(DefaultRunLauncher):
    """Dagster's default launcher, plus a worker health check for run monitoring.

    The default launcher cannot tell that its run worker was SIGKILLed or OOM-killed, so such
    a run would stay STARTED forever and nobody would hear of it. With this launcher the
    daemon's run monitoring sees the dead worker, marks the run failed, and the failure
    sensor records and alerts it. Run workers are local processes, so a pid check is exact.
    """

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        pid = run_worker_pid(self._instance, run.run_id)
        if pid is None or _alive(pid):
            # No pid yet means the worker is still starting; the start timeout covers that.
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker lost: process {pid} is gone (killed or out of memory)"
        )


@dataclass(frozen=True)
class FailedTick:
    """One failed evaluation of a schedule or sensor, from the instance's tick history."""

    selector_id: str
    kind: str  # schedule | sensor
    name: str
    tick_id: int
    timestamp: float
    error: str  # the first line of the innermost error: the user's exception, not Dagster's wrapper


def _first_line(error: SerializableErrorInfo | None) -> str:
    while error is not None and error.cause is not None:
        error = error.cause
    text = ((error.message if error is not None else "") or "").strip()
    return text.splitlines()[0] if text else "the tick failed without an error message"


def tick_failures(
    instance: dg.DagsterInstance, seen: dict[str, int], limit: int = 100
) -> tuple[list[FailedTick], dict[str, int]]:
    """Failed ticks of every schedule and sensor newer than `seen`, oldest first, and the new `seen`.

    `seen` maps an instigator's selector id to the newest failed tick already reported; the
    public API has no tick history. An instigator not in `seen` reports a failure only when it
    is its newest tick (it is failing now), so old history is not replayed.
    """
    found: list[FailedTick] = []
    after = dict(seen)
    for state in instance.all_instigator_state():
        origin, selector = state.instigator_origin_id, state.selector_id
        if selector in seen:
            ticks = instance.get_ticks(origin, selector, statuses=[TickStatus.FAILURE], limit=limit)
            new = [t for t in ticks if t.tick_id > seen[selector]]
        else:
            newest = instance.get_ticks(origin, selector, limit=1)
            new = [t for t in newest if t.status == TickStatus.FAILURE]
            failed = new or instance.get_ticks(origin, selector, statuses=[TickStatus.FAILURE], limit=1)
            after[selector] = failed[0].tick_id if failed else 0
        kind = "schedule" if state.instigator_type == InstigatorType.SCHEDULE else "sensor"
        for t in sorted(new, key=lambda t: t.tick_id):
            found.append(FailedTick(selector, kind, state.instigator_name, t.tick_id, t.timestamp, _first_line(t.error)))
            after[selector] = max(after.get(selector, 0), t.tick_id)
    return sorted(found, key=lambda f: (f.timestamp, f.tick_id)), after
