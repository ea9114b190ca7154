"""The run-status sensors: SUCCESS, FAILURE and CANCELED runs go to the one run-finished handler.

What the handler does (history, the failure report, auto-pause, notifications) is in
`ops.run_finished`; `etl-assets run` calls the same handler after an in-process run.
"""

# No `from __future__ import annotations`: Dagster reads the sensor functions' annotations
# at definition time to tell resource parameters from the context.

from collections.abc import Callable

import dagster as dg

from etl_assets.ops.notify_channels import EmailNotifier, SlackNotifier, notifier_resources
from etl_assets.ops.run_finished import (
    consecutive_scheduled_failures,
    handle_run_finished,
    maybe_pause,
    on_run_finished,
    record_run,
    schedule_name,
)
from etl_assets.spec import PipelineSpec
from etl_assets.warehouses.postgres import WarehouseResource

# Re-exported: the CLI, the runner, definitions and tests import the handler from here.
__all__ = [
    "RUN_FINISHED_SENSORS", "build_sensors", "consecutive_scheduled_failures", "handle_run_finished",
    "maybe_pause", "notifier_resources", "record_run", "schedule_name",
]

RUN_FINISHED_SENSORS = ("etl_run_success_sensor", "etl_run_failure_sensor", "etl_run_canceled_sensor")

SensorFn = Callable[..., None]


def _sensor_fn(by_name: dict[str, PipelineSpec], channels: set[str]) -> SensorFn:
    """The sensor function for this mix of channels: Dagster injects resources by parameter
    name, so each mix gets its own signature."""
    if channels == {"slack", "email"}:
        def slack_and_email(
            context: dg.RunStatusSensorContext, warehouse: WarehouseResource, slack: SlackNotifier,
            email: EmailNotifier,
        ) -> None:
            on_run_finished(context, by_name, warehouse.url, slack, email)
        return slack_and_email
    if channels == {"slack"}:
        def slack_only(context: dg.RunStatusSensorContext, warehouse: WarehouseResource, slack: SlackNotifier) -> None:
            on_run_finished(context, by_name, warehouse.url, slack=slack)
        return slack_only
    if channels == {"email"}:
        def email_only(context: dg.RunStatusSensorContext, warehouse: WarehouseResource, email: EmailNotifier) -> None:
            on_run_finished(context, by_name, warehouse.url, email=email)
        return email_only

    def no_channel(context: dg.RunStatusSensorContext, warehouse: WarehouseResource) -> None:
        on_run_finished(context, by_name, warehouse.url)
    return no_channel


def build_sensors(specs: list[PipelineSpec]) -> list[dg.SensorDefinition]:
    """Run-status sensors for SUCCESS, FAILURE and CANCELED, all calling the one handler."""
    fn = _sensor_fn({s.name: s for s in specs}, set(notifier_resources(specs)))
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
