"""Any database SQLAlchemy reaches (`kind: sql`): SQLite, PostgreSQL, Oracle, SQL Server, ….

The window query is built with SQLAlchemy Core, so each dialect quotes identifiers and
binds values its own way; rows are fetched in `batch_size` slices from a streaming result.
Drivers beyond the core install are extras: `pip install 'etl-assets[oracle]'` (oracledb),
`pip install 'etl-assets[mssql]'` (pymssql).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import weakref
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from etl_assets.core.secrets import redact, resolve
from etl_assets.sources.base import Extract, ExtractRequest, SourceDataError, window_bounds
from etl_assets.sources.tabular import RowConverter, counted, exact_columns, naive_zone
from etl_assets.spec import ENV_REF

# Driver module → the extra that installs it.
DRIVER_EXTRAS = {"oracledb": "oracle", "cx_Oracle": "oracle", "pymssql": "mssql", "pyodbc": "mssql"}

# Sessions run in UTC, so timezone-aware columns compare with the UTC bounds bound below.
_SESSION_UTC = {
    "postgresql": "SET TIME ZONE 'UTC'",
    "mysql": "SET time_zone = '+00:00'",
    "mariadb": "SET time_zone = '+00:00'",
    "oracle": "ALTER SESSION SET TIME_ZONE = '+00:00'",
}
# ORA- codes for bad SQL, unknown table/column, refused login, unknown service.
_ORACLE_PERMANENT = frozenset(
    (900, 904, 905, 906, 907, 911, 918, 923, 933, 936, 942, 1017, 1031, 1045, 12505, 12514)
)
# SQL Server: syntax, unknown object/column, permission, unknown database, login failed.
_MSSQL_PERMANENT = frozenset((102, 105, 156, 207, 208, 209, 229, 230, 4060, 18456))
_SQLITE_PERMANENT = ("no such ", "syntax error", "near ", "ambiguous column", "unrecognized token")
ALLOWED_PARAMS = ("window_start", "window_end", "last_sync")


# --- URLs and engines -----------------------------------------------------------------------


def parse_url(text: str, *, where: str) -> sa.URL:
    """The spec's URL with `${VAR}`s resolved per component, so a password needs no escaping."""
    try:
        if ENV_REF.fullmatch(text.strip()):
            return sa.make_url(resolve(text.strip(), where=where))
        url = sa.make_url(text)
    except sa.exc.ArgumentError:
        raise SourceDataError(f"{where}: not a valid database URL") from None

    def r(value: Any) -> Any:
        return resolve(value, where=where) if isinstance(value, str) else value

    return url.set(
        username=r(url.username),
        password=r(url.password),
        host=r(url.host),
        database=r(url.database),
        query={
            k: (tuple(r(x) for x in v) if isinstance(v, tuple) else r(v))
            for k, v in url.query.items()
        },
    )


def shown_url(url: sa.URL) -> str:
    return redact(url.render_as_string(hide_password=True))


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
        return sa.create_engine(url, poolclass=NullPool, connect_args=args)
    except sa.exc.NoSuchModuleError:
        raise SourceDataError(f"{where}: unknown database kind {url.drivername!r}") from None
    except ImportError as e:
        raise missing_driver(url, e, where) from None


# --- errors ---------------------------------------------------------------------------------


def is_permanent(exc: sa.exc.DBAPIError) -> bool:
    """Missing table or column, bad SQL, refused login: retrying cannot help."""
    from etl_assets.sources import mysql, postgres

    orig = exc.orig
    if isinstance(exc, sa.exc.ProgrammingError):
        return True
    if isinstance(orig, sqlite3.Error):
        return str(orig).lower().startswith(_SQLITE_PERMANENT)
    try:
        import psycopg

        if isinstance(orig, psycopg.Error):
            return postgres.is_permanent(orig)
    except ImportError:  # pragma: no cover - psycopg is a core dependency
        pass
    pgcode = getattr(orig, "pgcode", None)  # psycopg2
    if pgcode:
        return str(pgcode).startswith(postgres.PERMANENT_SQLSTATE)
    code = mysql.error_code(orig)
    if code is not None and (code in mysql.PERMANENT_CODES or code in _MSSQL_PERMANENT):
        return True
    ora = getattr(orig.args[0] if orig.args else None, "code", None)  # oracledb _Error
    return isinstance(ora, int) and ora in _ORACLE_PERMANENT


def driver_message(exc: sa.exc.DBAPIError) -> str:
    """The database's own words, without SQLAlchemy's statement and parameter dump."""
    return redact(
        str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    )


# --- the statement --------------------------------------------------------------------------


def text_query(query: str, allowed: tuple[str, ...] = ALLOWED_PARAMS) -> sa.TextClause:
    """A `query:` with `:window_start`-style parameters, each one bound by the driver."""
    clause = sa.text(query)
    unknown = sorted(set(clause._bindparams) - set(allowed))
    if unknown:
        available = ", ".join(":" + a for a in allowed)
        raise SourceDataError(f"query: unknown parameter :{unknown[0]} (available: {available})")
    return clause


def window_select(table: str, columns: list[str] | None, timestamp_column: str | None) -> sa.Select:
    """`SELECT cols FROM table [WHERE ts >= :window_start AND ts < :window_end]`."""
    schema, _, name = table.rpartition(".")
    names = list(columns or [])
    extra = [timestamp_column] if timestamp_column and timestamp_column not in names else []
    t = sa.table(name, *(sa.column(n) for n in names + extra), schema=schema or None)
    stmt = sa.select(*(t.c[n] for n in names)) if names else sa.select(sa.literal_column("*"))
    stmt = stmt.select_from(t)
    if timestamp_column:
        ts = t.c[timestamp_column]
        stmt = stmt.where(ts >= sa.bindparam("window_start"), ts < sa.bindparam("window_end"))
    return stmt


def statement(source: Any) -> sa.Executable:
    if source.query:
        return text_query(source.query)
    return window_select(
        source.table,
        [c.source_name for c in source.columns] if source.columns else None,
        source.timestamp_column_source if source.mode == "incremental" else None,
    )


def window_values(
    source: Any, request: ExtractRequest, backend: str, column_type: Any = None
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

    def bound(t: dt.datetime) -> Any:
        if local:
            naive = t.astimezone(zone).replace(tzinfo=None)
            return naive.strftime("%Y-%m-%d %H:%M:%S") if backend == "sqlite" else naive
        return t.astimezone(dt.timezone.utc).replace(tzinfo=None)

    values = {"window_start": bound(start), "window_end": bound(end)}
    if source.query:
        values["last_sync"] = bound(request.last_sync) if request.last_sync else None
    elif source.mode != "incremental":
        values = {}
    return values


# --- extract --------------------------------------------------------------------------------


def _check_table(conn: sa.Connection, source: Any) -> Any:
    """Fail early and clearly on a missing table or column; return the timestamp's type."""
    schema, _, name = source.table.rpartition(".")
    inspector = sa.inspect(conn)
    try:
        found = inspector.get_columns(name, schema=schema or None)
    except sa.exc.NoSuchTableError:
        raise SourceDataError(f"table {source.table} does not exist") from None
    types = {c["name"]: c["type"] for c in found}
    wanted = [c.source_name for c in source.columns or []]
    if source.mode == "incremental":
        wanted.append(source.timestamp_column_source)
    missing = [w for w in wanted if w not in types]
    if missing:
        raise SourceDataError(
            f"table {source.table} has no column {missing[0]!r} (found {', '.join(types)})"
        )
    return types.get(source.timestamp_column_source) if source.mode == "incremental" else None


def _fetch(result: sa.CursorResult, converter: RowConverter, size: int) -> Iterator[Any]:
    empty = True
    for n, rows in enumerate(result.partitions(size), start=1):
        empty = False
        yield converter.frame(rows, where=f"batch {n}: ")
    if empty:
        yield converter.frame([])


def extract(source: Any, request: ExtractRequest) -> Extract:
    where = f"{request.pipeline}.sources.{source.name}.connection.url"
    url = parse_url(source.connection.url, where=where)
    engine = create_engine(url, where=where, timeout_seconds=source.timeout_seconds)
    backend = url.get_backend_name()
    stmt = statement(source)
    streaming = False
    try:
        conn = engine.connect()
    except sa.exc.DBAPIError as e:
        engine.dispose()
        if is_permanent(e):
            raise SourceDataError(f"{where}: cannot connect: {driver_message(e)}") from None
        raise
    try:
        if backend in _SESSION_UTC:
            conn.exec_driver_sql(_SESSION_UTC[backend])
        if backend == "postgresql" and source.timeout_seconds:
            conn.execute(
                sa.text("SELECT set_config('statement_timeout', :ms, false)"),
                {"ms": str(int(source.timeout_seconds * 1000))},
            )
        ts_type = _check_table(conn, source) if source.table else None
        values = window_values(source, request, backend, ts_type)
        if source.batch_size:
            conn = conn.execution_options(stream_results=True, yield_per=source.batch_size)
        result = conn.execute(stmt, values)
        names = list(result.keys())
        start, end = window_bounds(source, request)
        inputs: dict[str, Any] = {
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
        converter = RowConverter(names, exact=exact_columns(source))
        if source.batch_size:
            stream = _fetch(result, converter, source.batch_size)
            release = _closer(conn, engine)
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


def _closer(conn: sa.Connection, engine: sa.Engine) -> Any:
    def release() -> None:
        conn.close()
        engine.dispose()

    return release
