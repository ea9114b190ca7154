"""What happens when a run finishes: history, the failure report, auto-pause, notifications.

`handle_run_finished` is the one handler. The run-status sensors call it under the daemon;
`etl-assets run` calls it after an in-process run. Both paths therefore write the same rows
and send the same messages.
"""



import logging
from typing import Any

import dagster as dg
import psycopg

from etl_assets.core import settings
from etl_assets.core.secrets import redact
from etl_assets.ops import history
from etl_assets.spec import PipelineSpec

log = logging.getLogger("etl_assets")

RUN_FINISHED_SENSORS = ("etl_run_success_sensor", "etl_run_failure_sensor", "etl_run_canceled_sensor")


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
    instance: dg.DagsterInstance, spec: PipelineSpec, outcome: history.RunOutcome, conn: psycopg.Connection
) -> str | None:
    """Stop the schedule after `failure_threshold` scheduled failures in a row; say how to resume."""
    threshold = getattr(spec, "failure_threshold", 3)
    if outcome.trigger != "schedule" or outcome.status not in ("failed", "partial") or threshold <= 0:
        return None
    if consecutive_scheduled_failures(instance, spec.name, threshold) < threshold:
        return None
    from etl_assets import dagster_internal

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
    webserver_url: str | None = None,
    slack: Any = None,
    email: Any = None,
    logger: Any = None,
) -> dict[str, Any] | None:
    """Record a finished run and tell people about it; its record. Safe to call twice for one run."""
    outcome = record_run(
        instance, run_id, specs, warehouse_url=warehouse_url, webserver_url=webserver_url,
        slack=slack, email=email, logger=logger,
    )
    return outcome.as_record() if outcome else None


def record_run(
    instance: dg.DagsterInstance,
    run_id: str,
    specs: dict[str, PipelineSpec],
    *,
    warehouse_url: str,
    webserver_url: str | None = None,
    slack: Any = None,
    email: Any = None,
    logger: Any = None,
) -> history.RunOutcome | None:
    """`handle_run_finished`, returning the run's outcome (None: not one of our pipelines)."""
    logger = logger or log
    run = instance.get_run_by_id(run_id)
    if run is None:
        return None
    spec = specs.get(history.pipeline_of(run, instance) or "")
    if spec is None:
        return None  # not one of our pipelines
    outcome = history.build_outcome(instance, run_id, spec, webserver_url=webserver_url)
    full_run = not run.asset_selection or any(k.path[1:] == ["report"] for k in run.asset_selection)
    if outcome.status in ("partial", "failed") and outcome.partitions and full_run:
        if spec.report.on_partial == "render" or outcome.status == "failed":
            from etl_assets.report.partition import render_status_report

            try:
                outcome.report_path = render_status_report(instance, spec, outcome.as_record(), warehouse_url)
            except Exception as e:
                logger.warning(f"{spec.name}: could not render the {outcome.status} report: {redact(str(e))}")
    with psycopg.connect(warehouse_url) as conn:
        history.migrate(conn)
        missed = history.missed_tick_note(conn, spec, run)
        if missed:
            outcome.notes.append(missed)
        note = maybe_pause(instance, spec, outcome, conn)
        if note:
            outcome.notes.append(note)
        history.write_record(conn, outcome.as_record())
    record = outcome.as_record()
    history.write_json_log(settings.storage_dir(), record)
    if outcome.will_retry:
        logger.info(f"{spec.name}: run {run_id} failed and will be retried; no alert yet")
        return outcome
    # Warn-severity checks fail without failing the run: `on: [warning]` hears of them.
    warned = any(s.checks_warned for s in outcome.sources.values())
    _notify(spec, record, slack, email, logger, warned=warned)
    if note:
        _notify(spec, {**record, "status": "paused"}, slack, email, logger)
    return outcome


def _notify(
    spec: PipelineSpec, record: dict[str, Any], slack: Any, email: Any, logger: Any, *, warned: bool = False
) -> None:
    notify_spec = getattr(spec, "notify", None)
    if notify_spec is None:
        return
    from etl_assets.ops import notify

    try:
        notify.notify_run(record, notify_spec, slack, email, logger, warned=warned)
    except Exception as e:
        logger.error(f"{spec.name}: notification failed: {type(e).__name__}")


def notifier_resources(specs: list[PipelineSpec]) -> dict[str, Any]:
    """Slack and SMTP resources, only when some pipeline asks for that channel.

    Their settings are `dg.EnvVar`s, read when a run or sensor launches, never at import.
    """
    from etl_assets.ops.notify import SlackNotifier, email_from_environment

    resources: dict[str, Any] = {}
    slack = [s.notify.slack for s in specs if s.notify.slack]
    if slack:
        resources["slack"] = SlackNotifier(token=dg.EnvVar("SLACK_BOT_TOKEN"), base_url=slack[0].api_url)
    email = email_from_environment() if any(s.notify.email for s in specs) else None
    if email is not None:
        resources["email"] = email
    return resources


def _known(by_name: dict[str, PipelineSpec], pipeline: str | None) -> dict[str, PipelineSpec]:
    """The specs the sensor was built with, or the folder's current ones for a pipeline added
    since: the daemon reloads its code only every minute, and its runs must be recorded too."""
    if pipeline is None or pipeline in by_name:
        return by_name
    from etl_assets.spec import SpecError, load_pipelines

    try:
        return {s.name: s for s in load_pipelines(settings.pipelines_dir())}
    except SpecError:
        return by_name


def build_sensors(specs: list[PipelineSpec]) -> list[dg.SensorDefinition]:
    """Run-status sensors for SUCCESS, FAILURE and CANCELED, all calling the one handler."""
    from etl_assets.ops.notify import EmailNotifier, SlackNotifier
    from etl_assets.warehouses.postgres import WarehouseResource

    by_name = {s.name: s for s in specs}
    channels = set(notifier_resources(specs))

    def handle(context: dg.RunStatusSensorContext, warehouse: Any, slack: Any = None, email: Any = None) -> None:
        run = context.dagster_run
        if run.tags.get("etl/trigger") == "cli":
            return  # `etl-assets run` handled it in-process already
        handle_run_finished(
            context.instance,
            run.run_id,
            _known(by_name, run.tags.get("etl/pipeline")),
            warehouse_url=warehouse.url,
            webserver_url=settings.webserver_url(),
            slack=slack,
            email=email,
            logger=context.log,
        )

    # Dagster injects resources by parameter name, so each channel mix gets its signature.
    if channels == {"slack", "email"}:
        def fn(context: dg.RunStatusSensorContext, warehouse: WarehouseResource, slack: SlackNotifier, email: EmailNotifier) -> None:
            handle(context, warehouse, slack, email)
    elif channels == {"slack"}:
        def fn(context: dg.RunStatusSensorContext, warehouse: WarehouseResource, slack: SlackNotifier) -> None:  # type: ignore[misc]
            handle(context, warehouse, slack=slack)
    elif channels == {"email"}:
        def fn(context: dg.RunStatusSensorContext, warehouse: WarehouseResource, email: EmailNotifier) -> None:  # type: ignore[misc]
            handle(context, warehouse, email=email)
    else:
        def fn(context: dg.RunStatusSensorContext, warehouse: WarehouseResource) -> None:  # type: ignore[misc]
            handle(context, warehouse)

    return [
        dg.run_status_sensor(
            name=name,
            run_status=status,
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=5,  # alerts should not lag a finished run by long
            description=f"Records {status.value.lower()} runs in etl_meta and sends alerts.",
        )(fn)
        for name, status in zip(
            RUN_FINISHED_SENSORS,
            (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED),
        )
    ]
