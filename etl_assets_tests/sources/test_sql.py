"""`kind: sql` through SQLAlchemy: dialect-correct SQL, missing drivers, SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import sqlite3
import sys
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from sqlalchemy.dialects.mssql import pymssql as mssql_pymssql
from sqlalchemy.dialects.oracle import oracledb as oracle_oracledb

from etl_assets.sources import sql
from etl_assets.sources.base import SourceDataError
from etl_assets_tests.sources.conftest import collect, request, source

ORACLE = oracle_oracledb.dialect()  # oracledb.paramstyle is "named"
MSSQL = mssql_pymssql.dialect(paramstyle="pyformat")  # pymssql.paramstyle is "pyformat"
COLUMNS = [
    {"name": "id", "from": "order", "type": "integer"},  # a reserved word
    {"name": "amount", "from": "Amount", "type": "float"},  # mixed case
    {"name": "updated_at", "type": "timestamp"},
]


def sales(**kw):
    fields = {
        "kind": "sql",
        "connection": {"url": "oracle+oracledb://etl:${ORA_PW}@db:1521/?service_name=SALES"},
        "table": "sales.Orders",
        "timestamp_column": "updated_at",
        "columns": COLUMNS,
    }
    return source(**{**fields, **kw})


def test_window_query_for_oracle_quotes_and_binds_by_name() -> None:
    compiled = sql.statement(sales()).compile(dialect=ORACLE)
    assert str(compiled) == (
        'SELECT sales."Orders"."order", sales."Orders"."Amount", sales."Orders".updated_at \n'
        'FROM sales."Orders" \n'
        'WHERE sales."Orders".updated_at >= :window_start '
        'AND sales."Orders".updated_at < :window_end'
    )
    assert list(compiled.params) == ["window_start", "window_end"]


def test_window_query_for_sql_server_quotes_with_brackets_and_pyformat_binds() -> None:
    compiled = sql.statement(sales()).compile(dialect=MSSQL)
    assert str(compiled) == (
        "SELECT sales.[Orders].[order], sales.[Orders].[Amount], sales.[Orders].updated_at \n"
        "FROM sales.[Orders] \n"
        "WHERE sales.[Orders].updated_at >= %(window_start)s "
        "AND sales.[Orders].updated_at < %(window_end)s"
    )


def test_full_table_and_query_statements_per_dialect() -> None:
    full = sql.statement(sales(columns=None, mode="full", timestamp_column=None))
    assert str(full.compile(dialect=ORACLE)) == 'SELECT * \nFROM sales."Orders"'
    assert str(full.compile(dialect=MSSQL)) == "SELECT * \nFROM sales.[Orders]"
    q = sales(table=None, query="SELECT * FROM t WHERE ts >= :window_start AND note <> '50%'")
    assert str(sql.statement(q).compile(dialect=ORACLE)) == (
        "SELECT * FROM t WHERE ts >= :window_start AND note <> '50%'"
    )
    # pymssql binds pyformat yet takes a literal % as is, so it is not doubled.
    assert str(sql.statement(q).compile(dialect=MSSQL)) == (
        "SELECT * FROM t WHERE ts >= %(window_start)s AND note <> '50%'"
    )


def test_a_colon_name_inside_quotes_is_text_not_a_parameter() -> None:
    q = sales(table=None, query="SELECT ':since' AS a, \"x:y\" FROM t WHERE ts >= :window_start")
    compiled = sql.statement(q).compile(dialect=ORACLE)
    assert str(compiled) == "SELECT ':since' AS a, \"x:y\" FROM t WHERE ts >= :window_start"
    assert list(compiled.params) == ["window_start"]
    with pytest.raises(SourceDataError, match=r"^query: unknown parameter :since \(available: "):
        sql.statement(sales(table=None, query="SELECT 1 WHERE x > :since"))


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("oracle+oracledb://etl:${ORA_PW}@db:1521/?service_name=SALES", "oracledb", "oracle"),
        ("mssql+pymssql://etl:${ORA_PW}@db:1433/sales", "pymssql", "mssql"),
    ],
)
def test_a_missing_driver_names_the_extra_to_install(url, module, extra, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed
    monkeypatch.setenv("ORA_PW", "s3cret-pw")
    with pytest.raises(SourceDataError) as e:
        sql.extract(sales(connection={"url": url}), request())
    driver = url.split(":", 1)[0]
    assert str(e.value) == (
        f"shop.sources.orders.connection.url: the driver for {driver} ({module}) is not installed: "
        f"pip install 'etl-assets[{extra}]'"
    )


def test_an_unknown_dialect_is_a_clear_error() -> None:
    with pytest.raises(SourceDataError, match=r"connection\.url: unknown database kind 'nosuchdb'"):
        sql.extract(sales(connection={"url": "nosuchdb://h/x"}), request())


# --- SQLite, for real -----------------------------------------------------------------------

SQLITE_ROWS = [
    (1, "before", 1.0, "2025-01-04 23:59:59"),
    (2, "at start", 2.5, "2025-01-05 00:00:00"),
    (3, None, 3.25, "2025-01-08 12:00:00"),
    (4, "", None, "2025-01-11 23:59:59"),
    (5, "at end", 5.0, "2025-01-12 00:00:00"),
]


@pytest.fixture
def lite(tmp_path: Path) -> str:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            'CREATE TABLE orders ("order" INTEGER, customer TEXT, "Amount" REAL, updated_at TEXT)'
        )
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", SQLITE_ROWS)
    return f"sqlite:///{path}"


def test_sqlite_window_is_local_wall_clock_text(lite: str) -> None:
    ex = sql.extract(sales(connection={"url": lite}, table="orders"), request())
    f = ex.frame
    assert f["order"].tolist() == [2, 3, 4]
    assert f["Amount"].tolist()[:2] == [2.5, 3.25] and pd.isna(f["Amount"][2])
    assert f["updated_at"].tolist() == [
        "2025-01-05 00:00:00",
        "2025-01-08 12:00:00",
        "2025-01-11 23:59:59",
    ]
    assert ex.inputs["dialect"] == "sqlite"
    assert ex.inputs["params"] == {
        "window_start": "2025-01-05 00:00:00",
        "window_end": "2025-01-12 00:00:00",
    }
    assert ex.inputs["query"] == (
        'SELECT orders."order", orders."Amount", orders.updated_at \nFROM orders \n'
        "WHERE orders.updated_at >= ? AND orders.updated_at < ?"
    )
    assert ex.inputs["rows"] == 3


def test_sqlite_batches_full_mode_and_query(lite: str) -> None:
    ex = sql.extract(
        sales(
            connection={"url": lite},
            table="orders",
            columns=None,
            mode="full",
            timestamp_column=None,
            batch_size=2,
        ),
        request(),
    )
    frames = list(ex.frame)
    assert [len(f) for f in frames] == [2, 2, 1]
    assert len({tuple(map(str, f.dtypes)) for f in frames}) == 1
    assert pd.concat(frames)["order"].tolist() == [1, 2, 3, 4, 5]
    assert ex.inputs["rows"] == 5
    q = (
        'SELECT "order" FROM orders WHERE updated_at >= :window_start AND updated_at < :window_end '
        "AND customer LIKE 'at%' ORDER BY 1"
    )
    ex = sql.extract(sales(connection={"url": lite}, table=None, query=q, columns=None), request())
    assert ex.frame["order"].tolist() == [2]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"table": "missing"}, "table missing does not exist"),
        (
            {"table": "orders", "timestamp_column": "changed", "columns": None},
            "table orders has no column 'changed' (found order, customer, Amount, updated_at)",
        ),
        ({"table": None, "query": "SELECT nope FROM orders"}, "query failed: no such column: nope"),
        ({"table": None, "query": "SELEC 1"}, 'query failed: near "SELEC": syntax error'),
    ],
)
def test_sqlite_permanent_problems(lite: str, fields: dict, message: str) -> None:
    with pytest.raises(SourceDataError) as e:
        sql.extract(sales(connection={"url": lite}, **fields), request())
    assert str(e.value) == message


# --- PostgreSQL through SQLAlchemy, for real ------------------------------------------------


def test_postgresql_through_sqlalchemy(pg: str) -> None:
    with psycopg.connect(pg) as conn:
        conn.execute("CREATE TABLE ev (id int, at timestamptz, local_at timestamp)")
        conn.cursor().executemany(
            "INSERT INTO ev VALUES (%s, %s, %s)",
            [
                (
                    1,
                    dt.datetime(2025, 1, 5, 4, 59, tzinfo=dt.UTC),
                    dt.datetime(2025, 1, 4, 23, 59),
                ),
                (
                    2,
                    dt.datetime(2025, 1, 5, 5, 0, tzinfo=dt.UTC),
                    dt.datetime(2025, 1, 5, 0, 0),
                ),
                (
                    3,
                    dt.datetime(2025, 1, 12, 4, 59, tzinfo=dt.UTC),
                    dt.datetime(2025, 1, 11, 23, 59),
                ),
                (
                    4,
                    dt.datetime(2025, 1, 12, 5, 0, tzinfo=dt.UTC),
                    dt.datetime(2025, 1, 12, 0, 0),
                ),
            ],
        )
    url = "postgresql+psycopg" + pg.removeprefix("postgresql")
    common = {"connection": {"url": url}, "table": "public.ev", "columns": None}
    by_instant = sql.extract(sales(**common, timestamp_column="at", batch_size=1), request())
    frames = list(by_instant.frame)
    assert [len(f) for f in frames] == [1, 1]
    whole = collect(frames)
    assert whole["id"].tolist() == [2, 3]
    assert whole["at"].tolist() == [
        pd.Timestamp("2025-01-05 05:00", tz="UTC"),
        pd.Timestamp("2025-01-12 04:59", tz="UTC"),
    ]
    assert by_instant.inputs["params"] == {
        "window_start": "2025-01-05T05:00:00",
        "window_end": "2025-01-12T05:00:00",
    }
    by_wall_clock = sql.extract(sales(**common, timestamp_column="local_at"), request())
    assert by_wall_clock.frame["id"].tolist() == [2, 3]
    assert by_wall_clock.frame["local_at"].tolist() == [
        pd.Timestamp("2025-01-05 00:00"),
        pd.Timestamp("2025-01-11 23:59"),
    ]
    with pytest.raises(SourceDataError, match=r"^table public\.gone does not exist$"):
        sql.extract(sales(**{**common, "table": "public.gone"}), request())
    with pytest.raises(SourceDataError, match=r'^query failed: column "nope" does not exist'):
        sql.extract(
            sales(connection={"url": url}, table=None, query="SELECT nope FROM ev"), request()
        )
