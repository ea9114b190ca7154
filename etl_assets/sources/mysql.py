"""MySQL and MariaDB sources over PyMySQL, streamed with a server-side cursor.

`SSCursor` reads rows off the socket as they are fetched instead of buffering the whole
result, so with `batch_size` memory holds one batch. The session runs in UTC.
"""

from __future__ import annotations

import datetime as dt
import functools
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pymysql
import pymysql.cursors
import sqlalchemy as sa
from pymysql.constants import FIELD_TYPE, FLAG
from sqlalchemy.dialects.mysql import pymysql as mysql_pymysql

from etl_assets.core.errors import is_permanent
from etl_assets.core.secrets import redact
from etl_assets.sources.base import Extract, SourceDataError, window_bounds
from etl_assets.sources.sqlcommon import parse_url, shown_url, statement
from etl_assets.sources.tabular import RowConverter, counted, exact_columns, naive_bounds

if TYPE_CHECKING:
    from etl_assets.sources.base import ExtractRequest
    from etl_assets.spec import MysqlSource

_INT = (
    FIELD_TYPE.TINY,
    FIELD_TYPE.SHORT,
    FIELD_TYPE.LONG,
    FIELD_TYPE.LONGLONG,
    FIELD_TYPE.INT24,
    FIELD_TYPE.YEAR,
)
_FLOAT = (FIELD_TYPE.FLOAT, FIELD_TYPE.DOUBLE, FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL)
_TEXT = (
    FIELD_TYPE.VARCHAR,
    FIELD_TYPE.VAR_STRING,
    FIELD_TYPE.STRING,
    FIELD_TYPE.JSON,
    FIELD_TYPE.ENUM,
    FIELD_TYPE.SET,
    FIELD_TYPE.TINY_BLOB,
    FIELD_TYPE.MEDIUM_BLOB,
    FIELD_TYPE.LONG_BLOB,
    FIELD_TYPE.BLOB,
    FIELD_TYPE.TIME,
)
_DATES = (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE)
_BINARY_CHARSET = 63
_SSL_OPTIONS = ("ssl_ca", "ssl_cert", "ssl_key", "ssl_verify_cert")
# The pyformat dialect PyMySQL speaks: `%(name)s` placeholders, backtick-quoted names.
DIALECT = mysql_pymysql.dialect(paramstyle="pyformat")


def _message(exc: pymysql.err.MySQLError) -> str:
    args = exc.args
    return redact(str(args[1]) if len(args) > 1 else str(exc))


def connect(source: MysqlSource, where: str) -> tuple[pymysql.Connection, sa.URL]:
    url = parse_url(source.connection.url, where=where)
    if url.get_backend_name() not in ("mysql", "mariadb"):
        raise SourceDataError(f"{where}: expected a mysql:// URL, got {url.drivername}://")
    options = dict(url.query)
    unknown = sorted(set(options) - {"charset", *_SSL_OPTIONS})
    if unknown:
        raise SourceDataError(
            f"{where}: unsupported URL option {unknown[0]!r} "
            f"(supported: charset, {', '.join(_SSL_OPTIONS)})"
        )
    ssl: dict[str, Any] = {k: str(options[k]) for k in _SSL_OPTIONS if k in options}
    if "ssl_verify_cert" in ssl:
        ssl["ssl_verify_cert"] = ssl["ssl_verify_cert"].lower() in ("1", "true", "yes")
    try:
        conn = pymysql.connect(
            host=url.host or "localhost",
            port=url.port or 3306,
            user=url.username,
            password=url.password or "",
            database=url.database,
            charset=str(options.get("charset", "utf8mb4")),
            connect_timeout=10,
            read_timeout=int(source.timeout_seconds) if source.timeout_seconds else None,
            autocommit=True,
            init_command="SET time_zone = '+00:00'",
            **ssl,
        )
    except pymysql.err.MySQLError as e:
        if is_permanent(e):
            raise SourceDataError(f"{where}: cannot connect: {_message(e)}") from None
        raise
    return conn, url


def _arrow_types(cursor: pymysql.cursors.Cursor, exact: set[str]) -> dict[str, pa.DataType]:
    """Arrow types from the result's column metadata, so every batch has the same schema.
    BIGINT UNSIGNED is uint64 (normalize rejects what int64 cannot hold); a DECIMAL declared
    as anything but float keeps its exact text."""
    fields = getattr(getattr(cursor, "_result", None), "fields", None) or []
    charsets = [getattr(f, "charsetnr", None) for f in fields]
    unsigned = [bool(getattr(f, "flags", 0) & FLAG.UNSIGNED) for f in fields]
    types: dict[str, pa.DataType] = {}
    for i, d in enumerate(cursor.description or []):
        name, code = d[0], d[1]
        binary = i < len(charsets) and charsets[i] == _BINARY_CHARSET
        if code == FIELD_TYPE.LONGLONG and i < len(unsigned) and unsigned[i]:
            types[name] = pa.uint64()
        elif code in _INT:
            types[name] = pa.int64()
        elif code in (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL) and name in exact:
            types[name] = pa.string()
        elif code in _FLOAT:
            types[name] = pa.float64()
        elif code == FIELD_TYPE.TIMESTAMP:
            types[name] = pa.timestamp("us", tz="UTC")  # an instant, read in the UTC session
        elif code == FIELD_TYPE.DATETIME:
            types[name] = pa.timestamp("us")  # wall-clock time, as stored
        elif code in _DATES:
            types[name] = pa.date32()
        elif code in _TEXT and code != FIELD_TYPE.TIME and binary:
            types[name] = pa.binary()
        elif code in _TEXT:
            types[name] = pa.string()
    return types


def _zero_dates(rows: list[tuple], columns: list[int]) -> list[tuple]:
    """MySQL's '0000-00-00' placeholder dates come back as text; they mean "no date"."""
    if not columns or not rows:
        return rows
    wanted = set(columns)
    out = []
    for row in rows:
        if any(isinstance(row[i], str) for i in columns):
            row = tuple(
                None if i in wanted and isinstance(v, str) and v.startswith("0000-00-00") else v
                for i, v in enumerate(row)
            )
        out.append(row)
    return out


def _utc(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _values(source: MysqlSource, request: ExtractRequest, ts_code: int | None) -> dict[str, Any]:
    """DATETIME/DATE hold wall-clock time (read by normalize in the source's `timezone`,
    default the pipeline's), so they get bounds in that zone; TIMESTAMP and `query:`
    parameters get UTC, the session's zone."""
    start, end = window_bounds(source, request)
    if source.query:
        return {
            "window_start": _utc(start),
            "window_end": _utc(end),
            "last_sync": _utc(request.last_sync) if request.last_sync else None,
        }
    if source.mode != "incremental":
        return {}
    if ts_code in (FIELD_TYPE.DATETIME, *_DATES):
        local_start, local_end = naive_bounds(source, request)
        return {"window_start": local_start, "window_end": local_end}
    return {"window_start": _utc(start), "window_end": _utc(end)}


def _close(conn: pymysql.Connection, cur: pymysql.cursors.Cursor | None = None) -> None:
    result = getattr(cur, "_result", None)
    if cur is not None and result is not None and getattr(result, "unbuffered_active", False):
        # Abandon the unread rest of a stream: dropping the connection is faster than
        # reading it, and PyMySQL would otherwise try to read it from a closed socket.
        result.unbuffered_active = False
        cur._result = None
    if conn.open:  # PyMySQL refuses to close twice
        conn.close()


def _timestamp_type(conn: pymysql.Connection, source: MysqlSource) -> int | None:
    column = source.timestamp_column_source
    if source.query or source.mode != "incremental" or not (source.table and column):
        return None
    schema, _, name = source.table.rpartition(".")
    table = sa.table(name, schema=schema or None)
    probe: sa.Select[Any] = sa.select(sa.column(column)).select_from(table).limit(0)
    with conn.cursor() as cur:
        cur.execute(str(probe.compile(dialect=DIALECT, compile_kwargs={"literal_binds": True})))
        return cur.description[0][1]


def _stream(
    cur: pymysql.cursors.Cursor, converter: RowConverter, size: int, dates: list[int]
) -> Iterator[pd.DataFrame]:
    n = 0
    while True:
        rows = cur.fetchmany(size)
        if not rows and n:
            return
        n += 1
        yield converter.frame(_zero_dates(list(rows), dates), where=f"batch {n}: ")
        if not rows:
            return


def extract(source: MysqlSource, request: ExtractRequest) -> Extract:
    where = f"{request.pipeline}.sources.{source.name}.connection.url"
    conn, url = connect(source, where)
    cur = None
    streaming = False
    try:
        ts_code = _timestamp_type(conn, source)
        compiled = statement(source).compile(dialect=DIALECT)
        values = _values(source, request, ts_code)
        params = {k: values.get(k) for k in compiled.params}
        cur = conn.cursor(pymysql.cursors.SSCursor)
        rendered = cur.mogrify(str(compiled), params)
        cur.execute(str(compiled), params)
        types = _arrow_types(cur, exact_columns(source))
        names = [d[0] for d in cur.description or []]
        dates = [i for i, n in enumerate(names) if pa.types.is_temporal(types.get(n, pa.null()))]
        converter = RowConverter(names, types)
        start, end = window_bounds(source, request)
        inputs: dict[str, Any] = {
            "kind": "mysql",
            "connection": shown_url(url),
            "query": redact(rendered),
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "rows": None,
        }
        if source.batch_size:
            stream = _stream(cur, converter, source.batch_size, dates)
            weakref.finalize(stream, _close, conn, cur)  # a stream dropped unread still lets go
            streaming = True
            return Extract(counted(stream, inputs, on_close=functools.partial(_close, conn, cur)), inputs)
        frame = converter.frame(_zero_dates(list(cur.fetchall()), dates))
    except pymysql.err.MySQLError as e:
        if is_permanent(e):
            raise SourceDataError(f"query failed: {_message(e)}") from None
        raise
    finally:
        if not streaming:
            _close(conn, cur)
    inputs["rows"] = len(frame)
    return Extract(frame, inputs)
