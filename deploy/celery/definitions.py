"""The etl-assets code location with every step executed on Celery workers.

The same pipelines, assets, jobs, schedules and sensors as `etl_assets.definitions`; only the
executor differs: `celery_executor`, configured from the YAML file the workers are started
with (ETL_CELERY_CONFIG, default `celery.yaml` beside this file), so both sides always agree
on the broker, the backend and the Celery settings.

Load it with `deploy/celery/workspace.yaml`. Every worker needs this checkout (or the same
image) at the same path, the same environment (ETL_WAREHOUSE_URL, ETL_STORAGE_DIR, source
secrets, ETL_CELERY_*), and DAGSTER_HOME pointing at the same PostgreSQL-backed instance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster_celery import celery_executor

from etl_assets.core.settings import pipelines_dir
from etl_assets.definitions import build_defs
from etl_assets.spec import load_pipelines

HERE = Path(__file__).resolve().parent


def celery_config_path() -> Path:
    return Path(os.environ.get("ETL_CELERY_CONFIG") or HERE / "celery.yaml")


def executor_config(path: Path | None = None) -> dict[str, Any]:
    """The `execution.config` block of the workers' YAML: the celery_executor's config."""
    data = yaml.safe_load((path or celery_config_path()).read_text()) or {}
    return dict(data.get("execution", {}).get("config", {}))


def with_executor(base: dg.Definitions, executor: dg.ExecutorDefinition) -> dg.Definitions:
    """`base` with its default executor replaced (Definitions.merge refuses two executors)."""
    return dg.Definitions(
        assets=base.assets,
        asset_checks=base.asset_checks,
        jobs=base.jobs,
        schedules=base.schedules,
        sensors=base.sensors,
        resources=base.resources,
        loggers=base.loggers,
        metadata=base.metadata,
        executor=executor,
    )


def celery_defs(base: dg.Definitions) -> dg.Definitions:
    return with_executor(base, celery_executor.configured(executor_config()))


defs = celery_defs(build_defs(load_pipelines(pipelines_dir())))
