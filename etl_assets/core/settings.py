"""Where things live: one typed `Settings`, read from the environment when a run starts.

`Settings.from_env()` reads the ETL_* variables (and DAGSTER_HOME) once; the module-level
functions below are thin accessors that read them afresh on each call, never at import, so
code and tests that change the environment see the change.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WEBSERVER_URL = "http://127.0.0.1:3000"


@dataclass(frozen=True)
class Settings:
    """Every setting of a process, each from its environment variable or its default."""

    etl_home: Path  # ETL_HOME
    storage_dir: str  # ETL_STORAGE_DIR: a local folder or an fsspec URL
    pipelines_dir: Path  # ETL_PIPELINES_DIR
    warehouse_url: str | None  # ETL_WAREHOUSE_URL; None: the embedded server serves
    instance_url: str | None  # ETL_INSTANCE_URL: the Dagster instance's database (SQLAlchemy URL)
    demo_source_url: str | None  # ETL_DEMO_SOURCE_URL
    demo_mysql_url: str | None  # ETL_DEMO_MYSQL_URL: the demo's optional MariaDB source
    dagster_home: str | None  # DAGSTER_HOME, as written
    webserver_url: str  # ETL_WEBSERVER_URL
    memory_mb_text: str  # ETL_MEMORY_MB as written; checked by `memory_mb`

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("ETL_HOME") or PROJECT_ROOT / ".etl_home").absolute()
        return cls(
            etl_home=home,
            storage_dir=env.get("ETL_STORAGE_DIR") or str(home / "storage"),
            pipelines_dir=Path(env.get("ETL_PIPELINES_DIR") or PROJECT_ROOT / "pipelines").absolute(),
            warehouse_url=env.get("ETL_WAREHOUSE_URL") or None,
            instance_url=env.get("ETL_INSTANCE_URL") or None,
            demo_source_url=env.get("ETL_DEMO_SOURCE_URL") or None,
            demo_mysql_url=env.get("ETL_DEMO_MYSQL_URL") or None,
            dagster_home=env.get("DAGSTER_HOME") or None,
            webserver_url=env.get("ETL_WEBSERVER_URL", DEFAULT_WEBSERVER_URL),
            memory_mb_text=env.get("ETL_MEMORY_MB", ""),
        )

    @property
    def memory_mb(self) -> int | None:
        """The instance's memory limit per step process (ETL_MEMORY_MB), for pipelines that set
        none in `resources.memory_mb`; None: unlimited. Checked when asked for, so a bad value
        fails the runs that need it, not every command."""
        value = self.memory_mb_text.strip()
        if not value:
            return None
        if not value.isdigit() or int(value) == 0:
            raise ValueError(f"ETL_MEMORY_MB must be a whole number of megabytes above 0, not {value!r}")
        return int(value)


def current() -> Settings:
    """The settings as the environment holds them now."""
    return Settings.from_env()


def etl_home() -> Path:
    return current().etl_home


def storage_dir() -> str:
    """Base path for Parquet layers, reports and run logs: a local folder or an fsspec URL."""
    return current().storage_dir


def pipelines_dir() -> Path:
    return current().pipelines_dir


def warehouse_url() -> str | None:
    return current().warehouse_url


def require_warehouse_url() -> str:
    """The warehouse URL a run writes to; set by the caller or by the embedded server."""
    url = current().warehouse_url
    if not url:
        raise RuntimeError("ETL_WAREHOUSE_URL is not set: point it at the warehouse, or run through etl-assets")
    return url


def dagster_yaml() -> Path:
    return PROJECT_ROOT / "dagster.yaml"


def memory_mb() -> int | None:
    """The instance's memory limit per step process (ETL_MEMORY_MB); None: unlimited."""
    return current().memory_mb


def webserver_url() -> str:
    """The Dagster UI's address, for links in reports and alerts."""
    return current().webserver_url
