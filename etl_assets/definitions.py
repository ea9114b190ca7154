"""The code location: every pipeline in the pipelines directory as Dagster definitions."""

from __future__ import annotations

import dagster as dg

from etl_assets.core.settings import pipelines_dir
from etl_assets.io.storage import ParquetIOManagerResource
from etl_assets.ops.lineage import build_lineage_sensors
from etl_assets.ops.retention import build_retention
from etl_assets.orchestration import executors
from etl_assets.orchestration.assets import build_job, build_pipeline_assets
from etl_assets.orchestration.deadlines import build_deadline_sensors
from etl_assets.orchestration.schedules import build_schedule
from etl_assets.orchestration.sensors import build_sensors, notifier_resources
from etl_assets.orchestration.tick_alerts import build_tick_sensor
from etl_assets.spec import PipelineSpec, load_pipelines
from etl_assets.warehouses.postgres import WarehouseResource


def build_defs(specs: list[PipelineSpec]) -> dg.Definitions:
    assets: list[dg.AssetsDefinition] = []
    jobs = []
    for spec in specs:
        assets.extend(build_pipeline_assets(spec))
        jobs.append(build_job(spec))
    retention_job, retention_schedule = build_retention(specs)
    return dg.Definitions(
        # A pipeline's own `executor:` wins for its job; this serves the rest (executors.py).
        executor=executors.DEFAULT,
        assets=assets,
        jobs=[*jobs, retention_job],
        schedules=[*(build_schedule(spec) for spec in specs), retention_schedule],
        sensors=[
            *build_sensors(specs), *build_lineage_sensors(specs),
            *build_deadline_sensors(specs), build_tick_sensor(specs),
        ],
        resources={
            # Resolved when a run launches, so loading definitions needs no secret.
            "parquet_io": ParquetIOManagerResource(base_path=dg.EnvVar("ETL_STORAGE_DIR")),
            "warehouse": WarehouseResource(url=dg.EnvVar("ETL_WAREHOUSE_URL")),
            **notifier_resources(specs),
        },
    )


defs = build_defs(load_pipelines(pipelines_dir()))
