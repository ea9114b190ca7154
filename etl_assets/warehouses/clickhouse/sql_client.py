"""Talking to ClickHouse through clickhouse-connect: quoting, bound parameters, the client.

Values are always bound server-side (`{name:Type}`); identifiers, which ClickHouse cannot
bind in DDL, column lists or `REPLACE PARTITION … FROM`, are quoted by clickhouse-connect's
own `quote_identifier`. clickhouse-connect and chdb are optional, heavy imports (the
`clickhouse` extra), loaded on first use so PostgreSQL-only installs never need them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pandas as pd
import pyarrow as pa

from etl_assets.core.errors import CLICKHOUSE_TRANSIENT_CODES, TransientSourceError
from etl_assets.core.secrets import redact
from etl_assets.core.sql import rewrite_named
from etl_assets.warehouses.clickhouse.configuration import Endpoint


def ident(name: str) -> str:
    """`name` quoted as a ClickHouse identifier."""
    # Optional heavy dependency (the clickhouse extra); only ClickHouse loads get here.
    from clickhouse_connect.driver.binding import quote_identifier

    return quote_identifier(name)


def qualified(target: str) -> str:
    return ".".join(ident(p) for p in target.split("."))


def names(columns: list[str]) -> str:
    return ", ".join(map(ident, columns))


def key_expr(key: list[str]) -> str:
    """The key as one expression: `k`, or the tuple `(a, b)`."""
    return ident(key[0]) if len(key) == 1 else f"({names(key)})"


def _param(value: Any) -> tuple[str, Any]:
    """A Python value as (ClickHouse type, value clickhouse-connect binds server-side)."""
    if value is None:
        return "Nullable(String)", None
    if isinstance(value, bool):
        return "Bool", "true" if value else "false"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return "DateTime64(6, 'UTC')", value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return "Date32", value.isoformat()
    if isinstance(value, int):
        return "Int64", value
    if isinstance(value, float):
        return "Float64", value
    if isinstance(value, Decimal):
        return "Decimal(38, 10)", str(value)
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return "Array(Int64)", list(value)
        return "Array(String)", [str(v) for v in value]
    return "String", str(value)


def bind_named(text: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`:name` placeholders → ClickHouse `{name:Type}`; values stay bound, never formatted."""
    types = {name: _param(value) for name, value in params.items()}
    text, used = rewrite_named(text, params, lambda name: "{" + name + ":" + types[name][0] + "}")
    return text, {name: types[name][1] for name in used}


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Rows as plain Python values (Decimal, datetime, None), like the PostgreSQL warehouse."""
    cols = list(table.column_names)
    rows = list(zip(*(col.to_pylist() for col in table.columns))) if table.num_rows else []
    return pd.DataFrame(rows, columns=cols)


def _translate(exc: BaseException) -> BaseException | None:
    """A transient ClickHouse failure as TransientSourceError; None for anything else."""
    try:  # optional heavy dependency, loaded when an error needs classifying
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
    except ImportError:  # pragma: no cover - no client, nothing of its to translate
        return None
    text = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    if isinstance(exc, OperationalError):
        lowered = text.lower()
        if "authentication" in lowered or "password" in lowered:
            return None
        return TransientSourceError(f"ClickHouse unreachable: {text}")
    if isinstance(exc, DatabaseError) and getattr(exc, "code", None) in CLICKHOUSE_TRANSIENT_CODES:
        return TransientSourceError(f"ClickHouse: {text}")
    return None


@contextmanager
def classified_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        translated = _translate(exc)
        if translated is None:
            raise
        raise translated from None


def open_client(e: Endpoint) -> Any:
    """A clickhouse-connect client for `e`: chDB in this process, or a server over HTTP."""
    try:  # the optional clickhouse extra, heavy to import: only when a client is opened
        import clickhouse_connect
    except ImportError:
        raise ImportError(
            "a clickhouse warehouse needs the clickhouse extra: pip install 'etl-assets[clickhouse]'"
        ) from None
    if e.embedded:
        try:
            import chdb  # noqa: F401
        except ImportError:
            raise ImportError(
                "a chdb:// warehouse needs chdb: pip install 'etl-assets[clickhouse]'"
            ) from None
        return clickhouse_connect.get_client(interface="chdb", path=e.path)
    return clickhouse_connect.get_client(
        host=e.host, port=e.port, username=e.username, password=e.password,
        database=e.database, secure=e.secure, connect_timeout=10,
    )


class Connection:
    """A clickhouse-connect client with the few calls the warehouse needs."""

    def __init__(self, client: Any, endpoint: Endpoint):
        self.client = client
        self.endpoint = endpoint

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.client.command(sql, parameters=params or None)

    def arrow(
        self, sql: str, params: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> pa.Table:
        return self.client.query_arrow(
            sql, parameters=params or None, settings=settings, use_strings=True
        )

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        table = self.arrow(sql, params)
        return list(zip(*(col.to_pylist() for col in table.columns))) if table.num_rows else []

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def insert(self, table: str, frame: pd.DataFrame, schema: pa.Schema) -> None:
        if not len(frame):
            return
        data = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, data.schema) as writer:
            writer.write_table(data)
        self.client.raw_insert(
            table, list(schema.names), insert_block=sink.getvalue().to_pybytes(), fmt="ArrowStream"
        )

    def columns(self, target: str) -> dict[str, str]:
        db, table = target.split(".")
        return dict(
            self.rows(
                "SELECT name, type FROM system.columns WHERE database = {db:String} "
                "AND table = {t:String} ORDER BY position",
                {"db": db, "t": table},
            )
        )

    def table_info(self, target: str) -> tuple[str, str] | None:
        """(engine, sorting_key) of `target`, or None when it does not exist."""
        db, table = target.split(".")
        rows = self.rows(
            "SELECT engine, sorting_key FROM system.tables WHERE database = {db:String} "
            "AND name = {t:String}",
            {"db": db, "t": table},
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def source(self, target: str) -> str:
        """`target` as a FROM item: with FINAL when its engine collapses versions."""
        info = self.table_info(target)
        final = info is not None and "ReplacingMergeTree" in info[0]
        return qualified(target) + (" FINAL" if final else "")
