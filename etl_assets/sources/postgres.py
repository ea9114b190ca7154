"""PostgreSQL sources: `COPY (SELECT …) TO STDOUT` streamed into Arrow, never row by row.

With `batch_size`, the COPY stream is parsed block by block as it arrives and handed on in
frames of at most `batch_size` rows, so memory holds one batch, not the window.
"""

from __future__ import annotations

import io
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from etl_assets.core.errors import is_permanent
from etl_assets.core.secrets import redact, resolve
from etl_assets.core.sql import UnknownParameter, bind_named, qualified
from etl_assets.sources.base import Extract, SourceDataError, window_bounds
from etl_assets.sources.tabular import counted, exact_columns, naive_bounds, to_frame

if TYPE_CHECKING:
    from etl_assets.sources.base import ExtractRequest
    from etl_assets.spec import PostgresSource

# PostgreSQL type OIDs → Arrow types, so raw keeps the source's types through the CSV stream.
OID_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int64(),
    23: pa.int64(),
    700: pa.float64(),
    701: pa.float64(),
    1700: pa.float64(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    25: pa.string(),
    1043: pa.string(),
    1042: pa.string(),
    2950: pa.string(),
}
_NUMERIC = 1700
_NAIVE_OIDS = (1082, 1114)  # date, timestamp without time zone

_READ = pacsv.ReadOptions(use_threads=True, block_size=1 << 22)


def _message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    return redact((diag.message_primary if diag and diag.message_primary else str(exc)).strip())


def connect(url: str, *, where: str, timeout_seconds: float | None = None) -> psycopg.Connection:
    options = "-c TimeZone=UTC"
    if timeout_seconds:
        options += f" -c statement_timeout={int(timeout_seconds * 1000)}"
    dsn = resolve(url, where=where)
    try:
        return psycopg.connect(dsn, options=options, connect_timeout=10, autocommit=True)
    except psycopg.Error as e:
        if is_permanent(e):
            raise SourceDataError(f"{where}: cannot connect: {_message(e)}") from None
        raise


def _describe(cur: psycopg.Cursor[Any], query: sql.Composable) -> list[Any]:
    try:
        cur.execute(sql.SQL("SELECT * FROM ({}) AS q LIMIT 0").format(query))
    except psycopg.Error as e:
        if is_permanent(e):
            raise SourceDataError(f"query failed: {_message(e)}") from None
        raise
    return list(cur.description or [])


def build_query(
    source: PostgresSource, request: ExtractRequest, cur: psycopg.Cursor[Any] | None = None
) -> tuple[sql.SQL | sql.Composed, dict[str, Any]]:
    """The window query and its bound values.

    A `timestamp`/`date` column holds wall-clock time, which normalize reads in the source's
    `timezone` (default the pipeline's), so it is compared with wall-clock bounds there;
    `timestamptz` compares instants. `cur` (when given) tells which one the column is.
    """
    start, end = window_bounds(source, request)
    if source.query:
        params = {"window_start": start, "window_end": end, "last_sync": request.last_sync}
        try:
            return bind_named(source.query, params)
        except UnknownParameter as e:
            raise SourceDataError(f"query: {e}") from None
    cols = (
        sql.SQL(", ").join(sql.Identifier(c.source_name) for c in source.columns)
        if source.columns and not source.schema_checked
        else sql.SQL("*")
    )
    table = qualified(source.table or "")  # the spec requires a table when there is no query
    query = sql.SQL("SELECT {} FROM {}").format(cols, table)
    ts_column = source.timestamp_column_source
    if source.mode != "incremental" or not ts_column:
        return query, {}
    ts = sql.Identifier(ts_column)
    if cur is not None:
        probe = sql.SQL("SELECT {} FROM {}").format(ts, table)
        if _describe(cur, probe)[0].type_code in _NAIVE_OIDS:
            start, end = naive_bounds(source, request)
    query += sql.SQL(" WHERE {ts} >= %(window_start)s AND {ts} < %(window_end)s").format(ts=ts)
    return query, {"window_start": start, "window_end": end}


def _arrow_types(described: list[Any], exact: set[str]) -> dict[str, pa.DataType]:
    """Arrow types by OID; a `numeric` declared as anything but float keeps its exact text."""
    return {
        d.name: pa.string() if d.type_code == _NUMERIC and d.name in exact
        else OID_TYPES.get(d.type_code, pa.string())
        for d in described
    }


def _convert(types: dict[str, pa.DataType]) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(
        column_types=types,
        true_values=["t"],
        false_values=["f"],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,  # COPY writes NULL bare and '' quoted
    )


def _parse(data: bytearray, types: dict[str, pa.DataType]) -> pa.Table:
    return pacsv.read_csv(
        pa.BufferReader(pa.py_buffer(data)),  # read in place, no copy
        read_options=pacsv.ReadOptions(use_threads=False, block_size=1 << 20),
        convert_options=_convert(types),
    )


def _stream(
    conn: psycopg.Connection,
    copy_sql: sql.Composed,
    types: dict[str, pa.DataType],
    batch_size: int,
) -> Iterator[pd.DataFrame]:
    """COPY data in frames of `batch_size` rows. The server sends one CopyData message per
    row, so counting messages cuts batches exactly, quoted newlines included."""
    try:
        with conn.cursor().copy(copy_sql) as copy:
            chunks = iter(copy)
            header = bytes(next(chunks, b""))
            buf, rows, sent = bytearray(header), 0, False
            for chunk in chunks:
                buf += chunk
                rows += 1
                if rows == batch_size:
                    yield to_frame(_parse(buf, types))
                    buf, rows, sent = bytearray(header), 0, True
            if rows or not sent:  # an empty result still yields one frame with the schema
                yield to_frame(
                    _parse(buf, types) if header else pa.schema(list(types.items())).empty_table()
                )
    finally:
        conn.close()  # also abandons an unfinished COPY


def extract(source: PostgresSource, request: ExtractRequest) -> Extract:
    where = f"{request.pipeline}.sources.{source.name}.connection.url"
    conn = connect(source.connection.url, where=where, timeout_seconds=source.timeout_seconds)
    streaming = False
    try:
        cur = psycopg.ClientCursor(conn)
        query, params = build_query(source, request, cur)
        rendered = cur.mogrify(query, params)
        # Describe the result first, so the CSV stream is parsed with the source's types.
        described = _describe(cur, sql.SQL(rendered))
        types = _arrow_types(described, exact_columns(source))
        copy_sql = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(
            sql.SQL(rendered)
        )
        start, end = window_bounds(source, request)
        inputs: dict[str, Any] = {
            "kind": "postgres",
            "connection": redact(resolve(source.connection.url, where=where)),
            "query": redact(rendered),
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "rows": None,
        }
        if source.batch_size:
            stream = _stream(conn, copy_sql, types, source.batch_size)
            weakref.finalize(stream, conn.close)  # a stream dropped unread still lets go
            streaming = True
            return Extract(counted(stream, inputs), inputs)
        buf = io.BytesIO()
        with cur.copy(copy_sql) as copy:
            for chunk in copy:
                buf.write(chunk)
    finally:
        if not streaming:
            conn.close()
    buf.seek(0)
    table = pacsv.read_csv(buf, read_options=_READ, convert_options=_convert(types))
    if not types:
        table = pa.table({})
    frame = to_frame(table)
    inputs["rows"] = len(frame)
    return Extract(frame, inputs)
