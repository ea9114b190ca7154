"""Which failures are worth retrying. One function decides: `is_transient`.

Transient errors propagate so the step's RetryPolicy retries them. Everything else becomes
`dg.Failure(allow_retries=False)` at once: retrying a schema error only hides it and hammers
the source. What each driver's error codes mean lives here too, in one table, so sources
and the retry policy read them the same way.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import socket
import sqlite3

import dagster as dg
import psycopg
import pymysql
import requests
import sqlalchemy.exc as sa_exc

from etl_assets.core.exceptions import SourceDataError, SpecError, TransientSourceError
from etl_assets.core.secrets import MissingSecret, redact

# --- driver error codes ---------------------------------------------------------------------

# SQLSTATE classes/codes that mean "try again": connection exceptions, lost server,
# serialization failures, deadlocks, lock and statement timeouts, server shutting down.
PG_TRANSIENT_SQLSTATES = ("08", "40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03", "53300")
# SQLSTATE classes that mean "fix the spec or grants": bad SQL or name, login, unknown
# database/schema, unsupported feature, bad data.
PG_PERMANENT_SQLSTATES = ("42", "28", "3D", "3F", "0A", "22")
# libpq reports failed logins without a SQLSTATE; these texts (lower case) mean a refused
# login, not a blip.
PG_LOGIN_REFUSED = (
    "authentication failed",
    "password",
    "does not exist",
    "no pg_hba.conf entry",
    "permission denied",
)
# MySQL/MariaDB: can't connect, server gone, lost connection, lock wait timeout, deadlock.
MYSQL_TRANSIENT_CODES = frozenset((2002, 2003, 2006, 2013, 2055, 1205, 1213, 1040))
# MySQL/MariaDB: login, unknown database/table/column, bad SQL, grants.
MYSQL_PERMANENT_CODES = frozenset(
    (1044, 1045, 1046, 1049, 1052, 1054, 1060, 1064, 1066, 1109, 1142, 1143, 1146, 1149)
    + (1227, 1251, 1305, 1370, 1698)
)
# SQL Server: syntax, unknown object/column, permission, unknown database, login failed.
MSSQL_PERMANENT_CODES = frozenset((102, 105, 156, 207, 208, 209, 229, 230, 4060, 18456))
# ORA- codes for bad SQL, unknown table/column, refused login, unknown service.
ORACLE_PERMANENT_CODES = frozenset(
    (900, 904, 905, 906, 907, 911, 918, 923, 933, 936, 942, 1017, 1031, 1045, 12505, 12514)
)
# SQLite has no codes for these, only the start of the message.
SQLITE_PERMANENT_PREFIXES = ("no such ", "syntax error", "near ", "ambiguous column", "unrecognized token")
# ClickHouse server codes worth a retry: timeouts, overload, network, replicas and keeper.
CLICKHOUSE_TRANSIENT_CODES = frozenset(
    (3, 32, 159, 164, 202, 203, 209, 210, 242, 252, 285, 319, 394, 425, 473, 999)
)
# HTTP statuses besides 5xx that mean "ask again later".
HTTP_TRANSIENT_STATUSES = frozenset((408, 429))


def driver_code(exc: BaseException) -> int | None:
    """The numeric code PyMySQL and pymssql put first in an error's args."""
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def transient_status(status: int) -> bool:
    return status in HTTP_TRANSIENT_STATUSES or status >= 500


def _login_refused(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(t in text for t in PG_LOGIN_REFUSED)


def is_permanent(exc: BaseException) -> bool:
    """A driver's error that retrying cannot fix: missing table or column, bad SQL, refused
    login. `exc` is the driver's own exception (SQLAlchemy's `.orig`)."""
    if isinstance(exc, sqlite3.Error):
        return str(exc).lower().startswith(SQLITE_PERMANENT_PREFIXES)
    if isinstance(exc, psycopg.Error):
        if exc.sqlstate:
            return exc.sqlstate.startswith(PG_PERMANENT_SQLSTATES)
        return isinstance(exc, psycopg.OperationalError) and _login_refused(exc)
    pgcode = getattr(exc, "pgcode", None)  # psycopg2
    if pgcode:
        return str(pgcode).startswith(PG_PERMANENT_SQLSTATES)
    if isinstance(exc, pymysql.err.ProgrammingError):
        return True
    code = driver_code(exc)
    if code is not None and (code in MYSQL_PERMANENT_CODES or code in MSSQL_PERMANENT_CODES):
        return True
    ora = getattr(exc.args[0] if exc.args else None, "code", None)  # oracledb _Error
    return isinstance(ora, int) and ora in ORACLE_PERMANENT_CODES


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def is_transient(exc: BaseException) -> bool:
    """True when the same call may well succeed if repeated a little later."""
    if isinstance(exc, TransientSourceError):
        return True
    if isinstance(exc, (SourceDataError, MissingSecret, SpecError, dg.Failure)):
        return False
    if isinstance(exc, psycopg.Error):
        state = getattr(exc, "sqlstate", None)
        if state:
            return state.startswith(PG_TRANSIENT_SQLSTATES)
        # No SQLSTATE: the client never reached a server (refused, reset, DNS, timeout),
        # unless the server answered that the login is wrong.
        return isinstance(exc, psycopg.OperationalError) and not _login_refused(exc)
    if isinstance(exc, pymysql.err.MySQLError):
        return driver_code(exc) in MYSQL_TRANSIENT_CODES
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    if isinstance(exc, requests.HTTPError):
        status = _http_status(exc)
        return status is not None and transient_status(status)
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        return is_transient(exc.orig) or bool(exc.connection_invalidated)
    # Builtins last: refused/reset connections, DNS failures and timeouts.
    if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, socket.gaierror)):
        return True
    return isinstance(exc, OSError) and exc.errno in (101, 110, 111, 113)


def parse_retry_after(value: str | None) -> float | None:
    """A `Retry-After` header in seconds: it is either seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def retry_after(exc: BaseException) -> float | None:
    """Seconds a server asked us to wait (HTTP 429/503 `Retry-After`), if any."""
    value = getattr(exc, "retry_after", None)
    if value is not None:
        return float(value)
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    return parse_retry_after(headers.get("Retry-After"))


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}" if not isinstance(exc, (SourceDataError, dg.Failure)) else text)


def memory_limit_failure(where: str, limit_mb: int, step: str, peak_mb: float) -> dg.Failure:
    """A step whose process passed its memory limit: never retried, the same input needs the
    same memory."""
    return dg.Failure(
        description=(
            f"{where}: memory limit of {limit_mb} MB exceeded in step {step} (peak resident "
            f"memory {peak_mb:.0f} MB); raise resources.memory_mb or read the source in batches (batch_size)"
        ),
        metadata={"error_type": "memory_limit", "classification": "memory limit", "limit_mb": limit_mb},
        allow_retries=False,
    )


def next_delay(policy: dg.RetryPolicy | None, attempt: int) -> float:
    """The delay Dagster will wait before retry number `attempt + 1` (without jitter)."""
    if policy is None or not policy.delay:
        return 0.0
    if policy.backoff == dg.Backoff.EXPONENTIAL:
        return float(policy.delay) * (2**attempt)
    if policy.backoff == dg.Backoff.LINEAR:
        return float(policy.delay) * (attempt + 1)
    return float(policy.delay)
