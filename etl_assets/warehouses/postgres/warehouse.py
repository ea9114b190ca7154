"""`Warehouse`: `BaseWarehouse` on PostgreSQL, the default engine, and its read queries.

DDL lives in `schema.py`, partition loads in `load.py`; this class binds them to a URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from etl_assets.core.secrets import redact
from etl_assets.core.sql import bind_named
from etl_assets.warehouses.base import (
    BaseWarehouse,
    DriftEvent,
    LoadCounts,
    LoadRequest,
    TableRequest,
)
from etl_assets.warehouses.postgres import load, schema, sql_client
from etl_assets.warehouses.postgres.configuration import PG_TYPES
from etl_assets.warehouses.postgres.sql_client import first_row

if TYPE_CHECKING:
    import pandas as pd


class Warehouse(BaseWarehouse):
    """The PostgreSQL warehouse."""

    kind = "postgres"
    # Kept as an attribute: benchmarks/profile.py calls and times it here.
    _copy_in = staticmethod(sql_client.copy_in)

    def __init__(self, url: str):
        self.url = url

    def __repr__(self) -> str:
        return f"Warehouse({redact(self.url)!r})"

    def column_type(self, type_: str) -> str:
        return PG_TYPES[type_]

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with sql_client.connect(self.url) as conn:
            yield conn

    def _ensure(self, conn: psycopg.Connection, req: TableRequest) -> list[DriftEvent]:
        return schema.ensure_table(conn, req)

    def _load(self, conn: psycopg.Connection, req: LoadRequest) -> LoadCounts:
        return load.load_partition(conn, req)

    # --- queries ----------------------------------------------------------------------------

    def query(self, text: str, params: dict[str, Any]) -> pd.DataFrame:
        """A spec's SQL with `:name` parameters (KPIs), values bound."""
        stmt, bound = bind_named(text, params)
        return self.run(stmt, bound)

    def run(self, stmt: sql.SQL | sql.Composed, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return sql_client.run(self.url, stmt, params)

    def table_exists(self, target: str) -> bool:
        found = self.run(sql.SQL("SELECT to_regclass(%(t)s) IS NOT NULL AS ok"), {"t": target})
        return bool(found.iloc[0, 0])

    def partition_counts(
        self, target: str, partition: str, limit: int, *, inclusive: bool
    ) -> list[tuple[str, int]]:
        frame = self.run(
            sql.SQL(
                "SELECT _partition, count(*) AS n FROM {tbl} WHERE _partition {op} %(k)s "
                "GROUP BY _partition ORDER BY _partition DESC LIMIT %(lim)s"
            ).format(tbl=sql.Identifier(*target.split(".")), op=sql.SQL("<=" if inclusive else "<")),
            {"k": partition, "lim": limit},
        )
        return [(str(p), int(n)) for p, n in frame.itertuples(index=False)]

    def missing_values(self, target: str, column: str, values: list[str]) -> set[str]:
        found = self.run(
            sql.SQL(
                "SELECT DISTINCT u.v FROM unnest(%(vals)s::text[]) AS u(v) "
                "WHERE NOT EXISTS (SELECT 1 FROM {tbl} t WHERE t.{col}::text = u.v)"
            ).format(tbl=sql.Identifier(*target.split(".")), col=sql.Identifier(column)),
            {"vals": values},
        )
        return set(found.iloc[:, 0].astype(str)) if len(found) else set()

    def high_water_mark(self, target: str, column: str) -> Any:
        """The newest `column` value loaded into `target`, or None before the first load."""
        with self.connect() as conn:
            if first_row(conn.execute("SELECT to_regclass(%s)", (target,)))[0] is None:
                return None
            stmt = sql.SQL("SELECT max({}) FROM {}").format(
                sql.Identifier(column), sql.Identifier(*target.split("."))
            )
            return first_row(conn.execute(stmt))[0]

    def count(self, target: str, partition: str | None = None) -> int:
        with self.connect() as conn:
            stmt = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*target.split(".")))
            if partition is None:
                return int(first_row(conn.execute(stmt))[0])
            stmt += sql.SQL(" WHERE _partition = %s")
            return int(first_row(conn.execute(stmt, (partition,)))[0])
