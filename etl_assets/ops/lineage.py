"""OpenLineage events for every pipeline run: START, COMPLETE, FAIL and ABORT.

Run-status sensors under the daemon send each run of a pipeline's job to an OpenLineage
collector through `openlineage-python`, configured the client's standard way
(`OPENLINEAGE_URL`, `openlineage.yml`, `OPENLINEAGE__TRANSPORT__…`). Without that
configuration there are no lineage sensors, no client is ever built and openlineage-python
is not even imported: the event and the client live in `ops.lineage_events`, loaded by `emit`.

Inputs are the source tables, CSV files and API URLs; outputs are the warehouse tables, with
the schemas, row counts and check outcomes the run's event log recorded. Namespaces and names
follow the OpenLineage naming spec and are built from scheme, host, port and path alone, so a
credential cannot reach them. A collector that is down or refuses an event is logged; neither
the run nor the sensor fails.
"""

# No `from __future__ import annotations`: Dagster reads the sensor function's annotations at
# definition time to tell its resource parameter from the context.

import logging
import os
from collections.abc import Callable
from typing import Any

import dagster as dg

from etl_assets.core.secrets import redact
from etl_assets.ops import history
from etl_assets.ops.lineage_naming import (
    DEFAULT_JOB_NAMESPACE,
    EVENT_TYPES,
    database_location,
    file_dataset,
    job_namespace,
    table_name,
    url_dataset,
    warehouse_location,
)
from etl_assets.spec import PipelineSpec
from etl_assets.warehouses.postgres import WarehouseResource

# Re-exported: the naming spec's helpers were defined here, and tests read them from here. The
# event itself is built in `ops.lineage_events`, loaded only when one is sent.
__all__ = [
    "DEFAULT_JOB_NAMESPACE", "EVENT_TYPES", "SENSORS", "build_lineage_sensors", "configured",
    "database_location", "emit", "file_dataset", "job_namespace", "table_name", "url_dataset",
    "warehouse_location",
]

log = logging.getLogger("etl_assets")

SENSORS = (
    "etl_lineage_start_sensor", "etl_lineage_success_sensor",
    "etl_lineage_failure_sensor", "etl_lineage_canceled_sensor",
)
_STATUSES = (
    dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED,
)


def configured() -> bool:
    """Whether the OpenLineage client would find a transport: the URL, its settings variables
    or an openlineage.yml, looked up in the client's own order without building a client."""
    if os.environ.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OPENLINEAGE_URL") or any(k.startswith("OPENLINEAGE__TRANSPORT") for k in os.environ):
        return True
    files = (
        os.environ.get("OPENLINEAGE_CONFIG"),
        os.path.join(os.getcwd(), "openlineage.yml"),
        os.path.expanduser(os.path.join("~", ".openlineage", "openlineage.yml")),
    )
    return any(f and os.path.isfile(f) for f in files)


def emit(
    instance: dg.DagsterInstance, run: dg.DagsterRun, spec: PipelineSpec, status: dg.DagsterRunStatus,
    *, warehouse_url: str, logger: Any = None,
) -> bool:
    """Send the run's event; False (and a warning) when lineage is off or the collector failed."""
    logger = logger or log
    if not configured():
        return False
    event_type = EVENT_TYPES[status]
    try:
        # openlineage-python costs most of a second to import: only a configured collector
        # with an event to send loads it, not every run or code-location load.
        from etl_assets.ops import lineage_events

        lineage_events.send(instance, run, spec, status, warehouse_url=warehouse_url, logger=logger)
    except Exception as e:
        reason = (str(e).strip().splitlines() or [""])[0][:300]
        logger.warning(redact(
            f"{spec.name}: could not send the OpenLineage {event_type} event of run {run.run_id}: "
            f"{type(e).__name__}: {reason}"
        ))
        return False
    return True


def build_lineage_sensors(specs: list[PipelineSpec]) -> list[dg.SensorDefinition]:
    """One run-status sensor per event type, only when a collector is configured."""
    if not specs or not configured():
        return []
    by_name = {s.name: s for s in specs}

    def sensor_fn(status: dg.DagsterRunStatus) -> Callable[[dg.RunStatusSensorContext, WarehouseResource], None]:
        def fn(context: dg.RunStatusSensorContext, warehouse: WarehouseResource) -> None:
            run = context.dagster_run
            spec = by_name.get(history.pipeline_of(run, context.instance) or "")
            if spec is not None:
                emit(context.instance, run, spec, status, warehouse_url=warehouse.url, logger=context.log)

        return fn

    return [
        dg.run_status_sensor(
            name=name,
            run_status=status,
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=10,
            description=f"Sends the OpenLineage {EVENT_TYPES[status]} event of each pipeline run.",
        )(sensor_fn(status))
        for name, status in zip(SENSORS, _STATUSES)
    ]
