"""What happens when a run finishes: history, the failure report, auto-pause, notifications.

`record_run` is the one handler. The run-status sensors call it under the daemon;
`etl-assets run` calls it after an in-process run. Both paths therefore write the same rows
and send the same messages.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Protocol

import dagster as dg
import psycopg
from typing_extensions import TypedDict, Unpack

from etl_assets import dagster_internal
from etl_assets.core import settings
from etl_assets.core import tags as tag
from etl_assets.core.outcome import RunOutcome
from etl_assets.core.secrets import redact
from etl_assets.ops import history, notify
from etl_assets.ops.notify_channels import EmailNotifier, SlackNotifier
from etl_assets.report.partition import render_status_report
from etl_assets.spec import PipelineSpec, SpecError, load_pipelines

log = logging.getLogger("etl_assets")


class RunLog(notify.Log, Protocol):
    """`logging.Logger` or Dagster's `context.log`: alerts' log plus errors."""

    def error(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


class Channels(TypedDict, total=False):
    """Where a finished run is told: the UI address its alerts link to, Slack, email, a log."""

    webserver_url: str | None
    slack: SlackNotifier | None
    email: EmailNotifier | None
    logger: RunLog | None


def schedule_name(pipeline: str) -> str:
    return f"{pipeline}_schedule"


def consecutive_scheduled_failures(instance: dg.DagsterInstance, pipeline: str, limit: int) -> int:
    """How many of the pipeline's latest finished scheduled runs failed in a row."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            tags={"dagster/schedule_name": schedule_name(pipeline)},
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
        ),
        limit=limit,
    )
    count = 0
    for r in records:  # newest first
        if r.dagster_run.status != dg.DagsterRunStatus.FAILURE:
            break
        if r.dagster_run.tags.get("dagster/will_retry") == "true":
            continue  # a run that will be retried has not failed yet
        count += 1
    return count


def maybe_pause(
    instance: dg.DagsterInstance, spec: PipelineSpec, outcome: RunOutcome, conn: psycopg.Connection
) -> str | None:
    """Stop the schedule after `failure_threshold` scheduled failures in a row; say how to resume."""
    threshold = spec.failure_threshold
    if outcome.trigger != "schedule" or outcome.status not in ("failed", "partial") or threshold <= 0:
        return None
    if consecutive_scheduled_failures(instance, spec.name, threshold) < threshold:
        return None
    name = schedule_name(spec.name)
    if not dagster_internal.stop_schedule(instance, name):
        return None
    note = (
        f"{spec.name} is paused after {threshold} consecutive failed scheduled runs. "
        f"Resume with the schedule toggle in the UI, `dagster schedule start {name}` "
        f"or `etl-assets jobs enable {spec.name}`."
    )
    history.set_pipeline_state(conn, spec.name, "paused", note)
    return note


def handle_run_finished(
    instance: dg.DagsterInstance,
    run_id: str,
    specs: dict[str, PipelineSpec],
    *,
    warehouse_url: str,
    **channels: Unpack[Channels],
) -> dict[str, Any] | None:
    """`record_run`, returning the run's record (None: not one of our pipelines)."""
    outcome = record_run(instance, run_id, specs, warehouse_url=warehouse_url, **channels)
    return outcome.as_record() if outcome else None


def record_run(
    instance: dg.DagsterInstance,
    run_id: str,
    specs: dict[str, PipelineSpec],
    *,
    warehouse_url: str,
    **channels: Unpack[Channels],
) -> RunOutcome | None:
    """Record a finished run and tell people about it; its outcome (None: not one of our
    pipelines). Safe to call twice for one run."""
    logger: RunLog = channels.get("logger") or log
    run = instance.get_run_by_id(run_id)
    if run is None:
        return None
    spec = specs.get(history.pipeline_of(run, instance) or "")
    if spec is None:
        return None  # not one of our pipelines
    outcome = history.build_outcome(instance, run_id, spec, webserver_url=channels.get("webserver_url"))
    _status_report(instance, spec, run, outcome, warehouse_url, logger)
    with psycopg.connect(warehouse_url) as conn:
        history.migrate(conn)
        missed = history.missed_tick_note(conn, spec, run)
        if missed:
            outcome.notes.append(missed)
        note = maybe_pause(instance, spec, outcome, conn)
        if note:
            outcome.notes.append(note)
        history.write_record(conn, outcome)
    history.write_json_log(settings.storage_dir(), outcome)
    if outcome.will_retry:
        logger.info(f"{spec.name}: run {run_id} failed and will be retried; no alert yet")
        return outcome
    slack, email = channels.get("slack"), channels.get("email")
    # Warn-severity checks fail without failing the run: `on: [warning]` hears of them.
    warned = any(s.checks_warned for s in outcome.sources.values())
    _notify(spec, outcome, slack, email, logger, warned=warned)
    if note:
        _notify(spec, dataclasses.replace(outcome, status="paused"), slack, email, logger)
    return outcome


def _status_report(
    instance: dg.DagsterInstance, spec: PipelineSpec, run: dg.DagsterRun, outcome: RunOutcome,
    warehouse_url: str, logger: RunLog,
) -> None:
    """Render the PARTIAL/FAILED report of a whole run that did not finish cleanly.

    The `report` asset never runs after an upstream failure, so this is the report readers get.
    """
    full_run = not run.asset_selection or any(k.path[1:] == ["report"] for k in run.asset_selection)
    if outcome.status not in ("partial", "failed") or not outcome.partitions or not full_run:
        return
    if spec.report.on_partial != "render" and outcome.status != "failed":
        return
    try:
        outcome.report_path = render_status_report(instance, spec, outcome, warehouse_url)
    except Exception as e:
        logger.warning(f"{spec.name}: could not render the {outcome.status} report: {redact(str(e))}")


def _notify(
    spec: PipelineSpec, outcome: RunOutcome, slack: SlackNotifier | None, email: EmailNotifier | None,
    logger: RunLog, *, warned: bool = False,
) -> None:
    try:
        notify.notify_run(outcome, spec.notify, slack, email, logger, warned=warned)
    except Exception as e:
        logger.error(f"{spec.name}: notification failed: {type(e).__name__}")


def known_specs(by_name: dict[str, PipelineSpec], run: dg.DagsterRun) -> dict[str, PipelineSpec]:
    """The specs the sensor was built with, or the folder's current ones for a pipeline added
    since: the daemon reloads its code only every minute, and its runs must be recorded too."""
    pipeline = run.tags.get(tag.PIPELINE)
    if pipeline is None or pipeline in by_name:
        return by_name
    try:
        return {s.name: s for s in load_pipelines(settings.pipelines_dir())}
    except SpecError:
        return by_name


def on_run_finished(
    context: dg.RunStatusSensorContext, by_name: dict[str, PipelineSpec], warehouse_url: str,
    slack: SlackNotifier | None = None, email: EmailNotifier | None = None,
) -> None:
    """What a run-status sensor does for one finished run."""
    run = context.dagster_run
    if run.tags.get(tag.TRIGGER) == "cli":
        return  # `etl-assets run` handled it in-process already
    handle_run_finished(
        context.instance,
        run.run_id,
        known_specs(by_name, run),
        warehouse_url=warehouse_url,
        webserver_url=settings.webserver_url(),
        slack=slack,
        email=email,
        logger=context.log,
    )
