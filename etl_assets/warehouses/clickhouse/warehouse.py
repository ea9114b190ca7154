"""`ClickHouseWarehouse`: `BaseWarehouse` on ClickHouse, a server or chDB, and its read queries.

One client, clickhouse-connect, talks to a server (`clickhouse://user:${PW}@host:8123/db`) and
to the embedded engine (`chdb:///path/to/dir`, through clickhouse-connect's chDB backend), so
local runs and tests execute exactly the SQL a server gets. KPI queries run with `final = 1`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from etl_assets.warehouses.base import (
    BaseWarehouse,
    DriftEvent,
    LoadCounts,
    LoadRequest,
    TableRequest,
)
from etl_assets.warehouses.clickhouse import load, schema
from etl_assets.warehouses.clickhouse.configuration import CH_TYPES, parse_url
from etl_assets.warehouses.clickhouse.locks import directory_lock, nothing
from etl_assets.warehouses.clickhouse.sql_client import (
    Connection,
    bind_named,
    classified_errors,
    ident,
    open_client,
    qualified,
    to_frame,
)

if TYPE_CHECKING:
    import pandas as pd

# Relationship checks send the values they look up in chunks, to keep each request small.
_VALUES_PER_QUERY = 5000


class ClickHouseWarehouse(BaseWarehouse):
    """ClickHouse through clickhouse-connect: a server, or chDB embedded in this process."""

    kind = "clickhouse"

    def __init__(self, url: str, *, lock_url: str | None = None):
        self.endpoint = parse_url(url)
        # A server's loads of one table are serialized with an advisory lock in this
        # PostgreSQL database (the run-history one); chDB's directory lock already does it.
        self.lock_url = lock_url

    def __repr__(self) -> str:
        return f"ClickHouseWarehouse({self.endpoint.identity!r})"

    def column_type(self, type_: str) -> str:
        return CH_TYPES[type_]

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        e = self.endpoint
        lock = directory_lock(e.path) if e.path is not None else nothing()
        with classified_errors(), lock:
            client = open_client(e)
            try:
                yield Connection(client, e)
            finally:
                client.close()

    def _ensure(self, conn: Connection, req: TableRequest) -> list[DriftEvent]:
        return schema.ensure_table(conn, req)

    def _load(self, conn: Connection, req: LoadRequest) -> LoadCounts:
        # scd2 is PostgreSQL-only, so the validity fields are not used here.
        return load.load_partition(conn, req, lock_url=self.lock_url)

    # --- queries ----------------------------------------------------------------------------

    def query(self, text: str, params: dict[str, Any]) -> pd.DataFrame:
        """A spec's SQL with `:name` parameters (KPIs), values bound, every table FINAL."""
        stmt, bound = bind_named(text, params)
        with self.connect() as conn:
            return to_frame(conn.arrow(stmt, bound, settings={"final": 1}))

    def table_exists(self, target: str) -> bool:
        with self.connect() as conn:
            return conn.table_info(target) is not None

    def partition_counts(
        self, target: str, partition: str, limit: int, *, inclusive: bool
    ) -> list[tuple[str, int]]:
        with self.connect() as conn:
            rows = conn.rows(
                f"SELECT _partition, count() AS n FROM {conn.source(target)} "
                f"WHERE _partition {'<=' if inclusive else '<'} {{k:String}} "
                "GROUP BY _partition ORDER BY _partition DESC LIMIT {lim:UInt64}",
                {"k": partition, "lim": int(limit)},
            )
        return [(str(p), int(n)) for p, n in rows]

    def missing_values(self, target: str, column: str, values: list[str]) -> set[str]:
        missing: set[str] = set()
        with self.connect() as conn:
            for i in range(0, len(values), _VALUES_PER_QUERY):
                rows = conn.rows(
                    "SELECT DISTINCT v FROM (SELECT arrayJoin({vals:Array(String)}) AS v) "
                    f"WHERE v NOT IN (SELECT toString({ident(column)}) FROM {qualified(target)} "
                    f"WHERE {ident(column)} IS NOT NULL)",
                    {"vals": [str(v) for v in values[i : i + _VALUES_PER_QUERY]]},
                )
                missing.update(str(r[0]) for r in rows)
        return missing

    def high_water_mark(self, target: str, column: str) -> Any:
        with self.connect() as conn:
            if conn.table_info(target) is None:
                return None
            return conn.scalar(f"SELECT maxOrNull({ident(column)}) FROM {conn.source(target)}")

    def count(self, target: str, partition: str | None = None) -> int:
        with self.connect() as conn:
            stmt = f"SELECT count() FROM {conn.source(target)}"
            if partition is None:
                return int(conn.scalar(stmt))
            return int(conn.scalar(stmt + " WHERE _partition = {p:String}", {"p": partition}))
