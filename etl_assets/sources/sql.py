"""Any database SQLAlchemy reaches (`kind: sql`): SQLite, PostgreSQL, Oracle, SQL Server, ….

The window query is built with SQLAlchemy Core, so each dialect quotes identifiers and
binds values its own way; rows are fetched in `batch_size` slices from a streaming result.
Drivers beyond the core install are extras: `pip install 'etl-assets[oracle]'` (oracledb),
`pip install 'etl-assets[mssql]'` (pymssql).
"""

from __future__ import annotations

import datetime as dt
import functools
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from etl_assets.core import errors
from etl_assets.core.secrets import redact
from etl_assets.sources.base import Extract, SourceDataError, window_bounds
from etl_assets.sources.sqlcommon import (
    ALLOWED_PARAMS,
    parse_url,
    shown_url,
    statement,
    text_query,
    window_select,
)
from etl_assets.sources.tabular import RowConverter, counted, exact_columns, naive_zone

if TYPE_CHECKING:
    from etl_assets.sources.base import ExtractRequest
    from etl_assets.spec import SqlSource

__all__ = [  # the shared statement helpers stay importable from here
    "ALLOWED_PARAMS",
    "extract",
    "parse_url",
    "shown_url",
    "statement",
    "text_query",
    "window_select",
]

# Driver module → the extra that installs it.
DRIVER_EXTRAS = {"oracledb": "oracle", "cx_Oracle": "oracle", "pymssql": "mssql", "pyodbc": "mssql"}

# Sessions run in UTC, so timezone-aware columns compare with the UTC bounds bound below.
_SESSION_UTC = {
    "postgresql": "SET TIME ZONE 'UTC'",
    "mysql": "SET time_zone = '+00:00'",
    "mariadb": "SET time_zone = '+00:00'",
    "oracle": "ALTER SESSION SET TIME_ZONE = '+00:00'",
}


# --- engines and errors ---------------------------------------------------------------------


def missing_driver(url: sa.URL, exc: ImportError, where: str) -> SourceDataError:
    module = exc.name or str(exc)
    extra = DRIVER_EXTRAS.get(module)
    hint = f"pip install 'etl-assets[{extra}]'" if extra else f"pip install {module}"
    return SourceDataError(
        f"{where}: the driver for {url.drivername} ({module}) is not installed: {hint}"
    )


def create_engine(url: sa.URL, *, where: str, timeout_seconds: float | None) -> sa.Engine:
    args: dict[str, Any] = {}
    backend = url.get_backend_name()
    if timeout_seconds and backend in ("mysql", "mariadb"):
        args["read_timeout"] = int(timeout_seconds)
    if timeout_seconds and backend == "mssql":
        args["timeout"] = int(timeout_seconds)
    try:
        # SQLAlchemy imports the dialect's driver (oracledb, pymssql …) here, lazily.
        return sa.create_engine(url, poolclass=NullPool, connect_args=args)
    except sa.exc.NoSuchModuleError:
        raise SourceDataError(f"{where}: unknown database kind {url.drivername!r}") from None
    except ImportError as e:
        raise missing_driver(url, e, where) from None


def is_permanent(exc: sa.exc.DBAPIError) -> bool:
    """Missing table or column, bad SQL, refused login: retrying cannot help."""
    if isinstance(exc, sa.exc.ProgrammingError):
        return True
    return exc.orig is not None and errors.is_permanent(exc.orig)


def driver_message(exc: sa.exc.DBAPIError) -> str:
    """The database's own words, without SQLAlchemy's statement and parameter dump."""
    return redact(
        str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    )


# --- bound values ---------------------------------------------------------------------------


def _bound(t: dt.datetime, local: bool, backend: str, zone: dt.tzinfo) -> Any:
    if local:
        naive = t.astimezone(zone).replace(tzinfo=None)
        return naive.strftime("%Y-%m-%d %H:%M:%S") if backend == "sqlite" else naive
    return t.astimezone(dt.timezone.utc).replace(tzinfo=None)


def window_values(
    source: SqlSource,
    request: ExtractRequest,
    backend: str,
    column_type: sa.types.TypeEngine[Any] | None = None,
) -> dict[str, Any]:
    """Bound values for the window.

    Columns with a timezone get UTC instants (the session runs in UTC). Columns without one
    hold wall-clock time, which normalize reads in the source's `timezone` (default the
    pipeline's), so they get wall-clock bounds there. SQLite keeps timestamps as text.
    """
    start, end = window_bounds(source, request)
    local = backend == "sqlite" or (
        column_type is not None
        and isinstance(column_type, (sa.DateTime, sa.Date))
        and not getattr(column_type, "timezone", False)
    )
    zone = naive_zone(source, request)
    values = {
        "window_start": _bound(start, local, backend, zone),
        "window_end": _bound(end, local, backend, zone),
    }
    if source.query:
        last = request.last_sync
        values["last_sync"] = _bound(last, local, backend, zone) if last else None
    elif source.mode != "incremental":
        values = {}
    return values


# --- extract --------------------------------------------------------------------------------


def _check_table(conn: sa.Connection, source: SqlSource) -> sa.types.TypeEngine[Any] | None:
    """Fail early and clearly on a missing table or column; return the timestamp's type."""
    table = source.table or ""
    schema, _, name = table.rpartition(".")
    inspector = sa.inspect(conn)
    try:
        found = inspector.get_columns(name, schema=schema or None)
    except sa.exc.NoSuchTableError:
        raise SourceDataError(f"table {table} does not exist") from None
    types = {c["name"]: c["type"] for c in found}
    wanted = [c.source_name for c in source.columns or []]
    ts_column = source.timestamp_column_source if source.mode == "incremental" else None
    if ts_column:
        wanted.append(ts_column)
    missing = [w for w in wanted if w not in types]
    if missing:
        raise SourceDataError(
            f"table {table} has no column {missing[0]!r} (found {', '.join(types)})"
        )
    return types.get(ts_column) if ts_column else None


def _fetch(result: sa.CursorResult[Any], converter: RowConverter, size: int) -> Iterator[pd.DataFrame]:
    empty = True
    for n, rows in enumerate(result.partitions(size), start=1):
        empty = False
        yield converter.frame(rows, where=f"batch {n}: ")
    if empty:
        yield converter.frame([])


def _connect(engine: sa.Engine, where: str) -> sa.Connection:
    try:
        return engine.connect()
    except sa.exc.DBAPIError as e:
        engine.dispose()
        if is_permanent(e):
            raise SourceDataError(f"{where}: cannot connect: {driver_message(e)}") from None
        raise


def _prepare_session(conn: sa.Connection, backend: str, source: SqlSource) -> None:
    if backend in _SESSION_UTC:
        conn.exec_driver_sql(_SESSION_UTC[backend])
    if backend == "postgresql" and source.timeout_seconds:
        conn.execute(
            sa.text("SELECT set_config('statement_timeout', :ms, false)"),
            {"ms": str(int(source.timeout_seconds * 1000))},
        )


def _inputs(
    source: SqlSource,
    request: ExtractRequest,
    url: sa.URL,
    engine: sa.Engine,
    stmt: sa.TextClause | sa.Select[Any],
    values: dict[str, Any],
) -> dict[str, Any]:
    start, end = window_bounds(source, request)
    return {
        "kind": "sql",
        "connection": shown_url(url),
        "dialect": engine.dialect.name,
        "query": redact(str(stmt.compile(dialect=engine.dialect))),
        "params": {
            k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in values.items()
        },
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "rows": None,
    }


def extract(source: SqlSource, request: ExtractRequest) -> Extract:
    where = f"{request.pipeline}.sources.{source.name}.connection.url"
    url = parse_url(source.connection.url, where=where)
    engine = create_engine(url, where=where, timeout_seconds=source.timeout_seconds)
    backend = url.get_backend_name()
    stmt = statement(source)
    streaming = False
    conn = _connect(engine, where)
    try:
        _prepare_session(conn, backend, source)
        ts_type = _check_table(conn, source) if source.table else None
        values = window_values(source, request, backend, ts_type)
        if source.batch_size:
            conn = conn.execution_options(stream_results=True, yield_per=source.batch_size)
        result = conn.execute(stmt, values)
        inputs = _inputs(source, request, url, engine, stmt, values)
        converter = RowConverter(list(result.keys()), exact=exact_columns(source))
        if source.batch_size:
            stream = _fetch(result, converter, source.batch_size)
            release = functools.partial(_release, conn, engine)
            weakref.finalize(stream, release)
            streaming = True
            return Extract(counted(stream, inputs, on_close=release), inputs)
        frame = converter.frame(result.fetchall())
    except sa.exc.DBAPIError as e:
        if is_permanent(e):
            raise SourceDataError(f"query failed: {driver_message(e)}") from None
        raise
    finally:
        if not streaming:
            conn.close()
            engine.dispose()
    inputs["rows"] = len(frame)
    return Extract(frame, inputs)


def _release(conn: sa.Connection, engine: sa.Engine) -> None:
    conn.close()
    engine.dispose()
