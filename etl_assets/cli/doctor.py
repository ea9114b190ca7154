"""`etl-assets doctor`: is each part of the deployment up, and if not, why.

Read-only, so a timer or cron can run it: the instance's schema is compared with what this
Dagster needs, never created or upgraded here. Every reason goes through `secrets.redact`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import dagster as dg
import psycopg
from sqlalchemy.exc import SQLAlchemyError

from etl_assets.core import settings
from etl_assets.core.secrets import redact
from etl_assets.dev.embedded import to_libpq
from etl_assets.ops import jobcontrol as jobs

CONNECT_TIMEOUT = 5  # seconds


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": "OK" if self.ok else "DOWN", "reason": self.reason}


def _first_line(e: BaseException) -> str:
    return redact((str(e).strip().splitlines() or [type(e).__name__])[0])


def _where(url: str) -> str:
    """host:port/database of a connection URL or DSN, without its credentials."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unparsable URL)"
    return f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, autocommit=True)


def check_warehouse(url: str | None) -> Check:
    if not url:
        return Check("warehouse", False, "ETL_WAREHOUSE_URL is not set")
    try:
        with _connect(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as e:
        return Check("warehouse", False, f"cannot connect to {_where(url)}: {_first_line(e)}")
    return Check("warehouse", True, f"{_where(url)} reachable (PostgreSQL {version[0] if version else '?'})")


def check_webserver(url: str) -> Check:
    try:
        info = jobs.server_info(url)
    except jobs.JobControlError as e:
        return Check("webserver", False, redact(str(e)))
    return Check("webserver", True, f"{redact(url)} answers (dagster {info.get('dagster_version', '?')})")


def _schema_created(url: str) -> Check | None:
    """None when the instance database is reachable and holds Dagster's tables."""
    try:
        with _connect(url) as conn:
            row = conn.execute("SELECT to_regclass('runs') IS NOT NULL").fetchone()
    except psycopg.Error as e:
        return Check("instance", False, f"cannot connect to {_where(url)}: {_first_line(e)}")
    if not (row and row[0]):
        return Check("instance", False, f"{_where(url)} has no Dagster schema: run etl-assets instance migrate")
    return None


def _schema_current(instance: dg.DagsterInstance, where: str) -> Check:
    storages = (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
    for storage in filter(None, storages):
        revision = getattr(storage, "alembic_version", None)  # SQL storages, as dagster.yaml sets
        version = revision() if revision is not None else None
        if version and version[0] != version[1]:
            return Check("instance", False, f"{where} schema is at revision {version[0]}, this Dagster needs "
                                            f"{version[1]}: run etl-assets instance migrate")
    return Check("instance", True, f"{where} reachable, schema up to date")


def _age(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f} min"


def check_daemons(instance: dg.DagsterInstance, max_age: float, now: float | None = None) -> list[Check]:
    """One check per daemon the instance needs, from the heartbeat each writes while it runs."""
    now = time.time() if now is None else now
    beats = instance.get_daemon_heartbeats()
    checks = []
    for kind in instance.get_required_daemon_types():
        beat = beats.get(kind)
        name = f"daemon {kind}"
        if beat is None:
            checks.append(Check(name, False, "no heartbeat: is dagster-daemon running on this instance?"))
            continue
        age = max(now - beat.timestamp, 0.0)
        if age > max_age:
            checks.append(Check(name, False, f"last heartbeat {_age(age)} ago (over {_age(max_age)})"))
            continue
        reason = f"heartbeat {_age(age)} ago"
        if beat.errors:
            reason += f"; last error: {redact(beat.errors[0].message.strip().splitlines()[0])}"
        checks.append(Check(name, True, reason))
    return checks


def run_checks(webserver_url: str, max_heartbeat_age: float) -> list[Check]:
    """Daemons, webserver, instance and warehouse, in that order."""
    current = settings.current()
    instance_url = current.instance_url or ""
    problem = _schema_created(to_libpq(instance_url)) if instance_url else Check(
        "instance", False, "ETL_INSTANCE_URL is not set")
    if problem:
        daemons = [Check("daemon", False, "heartbeats unknown: the instance database is not available")]
        instance_check = problem
    else:
        where = _where(to_libpq(instance_url))
        try:
            with dg.DagsterInstance.get() as instance:
                daemons = check_daemons(instance, max_heartbeat_age)
                instance_check = _schema_current(instance, where)
        except (dg.DagsterError, SQLAlchemyError) as e:
            daemons = [Check("daemon", False, "heartbeats unknown: the instance cannot be opened")]
            instance_check = Check("instance", False, f"{where}: {_first_line(e)}")
    return [*daemons, check_webserver(webserver_url), instance_check,
            check_warehouse(current.warehouse_url)]
