"""The job the executor tests run, rebuilt by name in each process that executes its steps."""

from __future__ import annotations

import dagster as dg

from etl_assets.core.settings import pipelines_dir
from etl_assets.definitions import build_defs
from etl_assets.spec import load_pipelines


def shop_job() -> dg.JobDefinition:
    return build_defs(load_pipelines(pipelines_dir())).resolve_job_def("shop_job")
