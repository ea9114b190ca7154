"""Where things live. Every function reads the environment when called, never at import."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def etl_home() -> Path:
    return Path(os.environ.get("ETL_HOME") or PROJECT_ROOT / ".etl_home").absolute()


def storage_dir() -> str:
    """Base path for Parquet layers, reports and run logs: a local folder or an fsspec URL."""
    return os.environ.get("ETL_STORAGE_DIR") or str(etl_home() / "storage")


def pipelines_dir() -> Path:
    return Path(os.environ.get("ETL_PIPELINES_DIR") or PROJECT_ROOT / "pipelines").absolute()


def warehouse_url() -> str | None:
    return os.environ.get("ETL_WAREHOUSE_URL") or None


def dagster_yaml() -> Path:
    return PROJECT_ROOT / "dagster.yaml"


def memory_mb() -> int | None:
    """The instance's memory limit per step process (ETL_MEMORY_MB), for pipelines that set
    none in `resources.memory_mb`; None: unlimited."""
    value = os.environ.get("ETL_MEMORY_MB", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) == 0:
        raise ValueError(f"ETL_MEMORY_MB must be a whole number of megabytes above 0, not {value!r}")
    return int(value)


def webserver_url() -> str:
    """The Dagster UI's address, for links in reports and alerts."""
    return os.environ.get("ETL_WEBSERVER_URL", "http://127.0.0.1:3000")
