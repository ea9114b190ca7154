"""PostgreSQL connections and the statements every part of a load shares.

Binary COPY straight from Arrow (pgpq) stages rows; CSV is the fallback for a type the
encoder lacks.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from pgpq import ArrowToPostgresBinaryEncoder
from psycopg import sql

from etl_assets.warehouses.base import lock_key


@contextmanager
def connect(url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(url, options="-c TimeZone=UTC", connect_timeout=10) as conn:
        yield conn


def first_row(cur: psycopg.Cursor[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The row of a query that always returns one (an aggregate, EXISTS, to_regclass)."""
    row = cur.fetchone()
    if row is None:
        raise RuntimeError("the query returned no row")
    return row


def run(url: str, stmt: sql.SQL | sql.Composed, params: dict[str, Any] | None = None) -> pd.DataFrame:
    with connect(url) as conn:
        cur = conn.execute(stmt, params)
        names = [d.name for d in cur.description or []]
        return pd.DataFrame(cur.fetchall(), columns=names)


def xact_lock(conn: psycopg.Connection, *parts: str) -> None:
    """Hold the advisory lock named by `parts` until the transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(*parts),))


def create_schema(conn: psycopg.Connection, schema: str) -> None:
    """CREATE SCHEMA IF NOT EXISTS, safe when loads of two tables in one new schema run at once.

    IF NOT EXISTS does not stop two concurrent creators from colliding in the catalog.
    """
    xact_lock(conn, "ddl-schema", schema)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def column_types(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str]:
    return {
        r[0]: r[1]
        for r in conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (schema, table),
        )
    }


def copy_in(conn: psycopg.Connection, table: str, cols: list[str], frame: pd.DataFrame) -> None:
    """COPY a frame in binary form, straight from Arrow; CSV for a type the encoder lacks."""
    if not len(frame):
        return
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    target = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(*table.split(".")), sql.SQL(", ").join(map(sql.Identifier, cols))
    )
    try:
        encoder = ArrowToPostgresBinaryEncoder(arrow.schema)
    except ValueError:  # a type it has no encoder for, e.g. an all-empty column Arrow types as null
        encoder = None
    with conn.cursor().copy(target + sql.SQL(" WITH (FORMAT {})").format(sql.SQL("binary" if encoder else "csv"))) as copy:
        if encoder is not None:
            copy.write(encoder.write_header())
            for batch in arrow.to_batches(max_chunksize=65_536):
                copy.write(encoder.write_batch(batch))
            copy.write(encoder.finish())
            return
        buf = io.BytesIO()
        pacsv.write_csv(arrow, buf, pacsv.WriteOptions(include_header=False))
        view = buf.getbuffer()
        step = 1 << 20
        for i in range(0, len(view), step):
            copy.write(view[i : i + step])
