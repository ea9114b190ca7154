"""MySQL/MariaDB sources against the real MariaDB server: windows, streaming, types, errors."""

from __future__ import annotations

import datetime as dt
import gc
from typing import Any

import dagster as dg
import pandas as pd
import pymysql
import pytest

from etl_assets.io.storage import ParquetIOManagerResource
from etl_assets.orchestration.assets import asset_key, build_pipeline_assets
from etl_assets.sources import mysql
from etl_assets.sources.base import SourceDataError
from etl_assets.transform.normalize import CastError, normalize
from etl_assets.warehouses.postgres import WarehouseResource
from etl_assets_tests.helpers import make_spec, query
from etl_assets_tests.sources.conftest import MYSQL, MariaDB, request, source

DDL = """CREATE TABLE orders (
    id BIGINT PRIMARY KEY,
    customer VARCHAR(40),
    amount DECIMAL(10, 2),
    created DATETIME NOT NULL,
    changed TIMESTAMP NULL,
    day DATE NULL,
    raw BLOB
)"""
INSERT = "INSERT INTO orders VALUES (%s, %s, %s, %s, %s, %s, %s)"
# `created` is wall-clock New York time; `changed` is a UTC instant (inserted in a UTC session).
ROWS = [
    (1, "before", "1.00", "2025-01-04 23:59:59", "2025-01-05 04:59:59", "2025-01-04", b"\x00"),
    (2, "at start", "2.50", "2025-01-05 00:00:00", "2025-01-05 05:00:00", "2025-01-05", None),
    (3, None, "3.25", "2025-01-08 12:00:00", "2025-01-08 17:00:00", "0000-00-00", b"ab"),
    (4, "", None, "2025-01-11 23:59:59", "2025-01-12 04:59:59", None, None),
    (5, "at end", "5.00", "2025-01-12 00:00:00", "2025-01-12 05:00:00", "2025-01-12", None),
]


def seed(db: MariaDB, rows=ROWS) -> None:
    db.execute("SET SESSION sql_mode = ''", "SET time_zone = '+00:00'", DDL)
    conn = pymysql.connect(
        **MYSQL,
        database=db.name,
        autocommit=True,
        init_command="SET SESSION sql_mode = '', time_zone = '+00:00'",
    )
    try:
        with conn.cursor() as cur:
            cur.executemany(INSERT, rows)
    finally:
        conn.close()


def orders(db: MariaDB, **kw):
    fields = {
        "kind": "mysql",
        "connection": {"url": db.url()},
        "table": "orders",
        "timestamp_column": "created",
    }
    return source(**{**fields, **kw})


def test_datetime_columns_are_local_wall_clock(mariadb: MariaDB) -> None:
    seed(mariadb)
    ex = mysql.extract(orders(mariadb), request())
    f = ex.frame
    assert f["id"].tolist() == [2, 3, 4]
    assert f["customer"][0] == "at start" and pd.isna(f["customer"][1]) and f["customer"][2] == ""
    assert f["amount"].tolist()[:2] == [2.5, 3.25] and pd.isna(f["amount"][2])
    assert f["created"].tolist() == [
        pd.Timestamp("2025-01-05 00:00:00"),
        pd.Timestamp("2025-01-08 12:00:00"),
        pd.Timestamp("2025-01-11 23:59:59"),
    ]
    assert f["changed"].tolist() == [
        pd.Timestamp("2025-01-05 05:00:00", tz="UTC"),
        pd.Timestamp("2025-01-08 17:00:00", tz="UTC"),
        pd.Timestamp("2025-01-12 04:59:59", tz="UTC"),
    ]
    # '0000-00-00' is MySQL's "no date": it arrives as a missing value.
    assert (
        f["day"].tolist()[0] == dt.date(2025, 1, 5)
        and pd.isna(f["day"][1])
        and pd.isna(f["day"][2])
    )
    assert f["raw"].tolist() == [None, b"ab", None]
    assert str(f["id"].dtype) == "Int64" and str(f["customer"].dtype) == "string"
    assert ex.inputs["rows"] == 3
    assert ex.inputs["connection"] == f"mysql://root@127.0.0.1:3306/{mariadb.name}"
    assert ex.inputs["query"] == (
        "SELECT * \nFROM orders \nWHERE orders.created >= '2025-01-05 00:00:00' "
        "AND orders.created < '2025-01-12 00:00:00'"
    )


def test_timestamp_columns_compare_utc_instants(mariadb: MariaDB) -> None:
    seed(mariadb)
    ex = mysql.extract(orders(mariadb, timestamp_column="changed", lookback="1h"), request())
    assert ex.frame["id"].tolist() == [1, 2, 3, 4]
    assert (
        "orders.changed >= '2025-01-05 04:00:00' AND orders.changed < '2025-01-12 05:00:00'"
        in (ex.inputs["query"])
    )


def test_declared_columns_are_selected_by_their_source_names(mariadb: MariaDB) -> None:
    seed(mariadb)
    cols = [
        {"name": "id", "type": "integer"},
        {"name": "who", "from": "customer"},
        {"name": "created", "type": "timestamp"},
    ]
    ex = mysql.extract(orders(mariadb, columns=cols, mode="full", timestamp_column=None), request())
    assert list(ex.frame.columns) == ["id", "customer", "created"]
    assert ex.frame["id"].tolist() == [1, 2, 3, 4, 5]
    assert ex.inputs["query"] == "SELECT orders.id, orders.customer, orders.created \nFROM orders"


def test_query_binds_window_and_last_sync_in_utc(mariadb: MariaDB) -> None:
    seed(mariadb)
    q = (
        "SELECT id, customer FROM orders WHERE changed >= :window_start AND changed < :window_end "
        "AND changed > :last_sync AND customer NOT LIKE 'x%' ORDER BY id"
    )
    src = orders(
        mariadb,
        table=None,
        query=q,
        timestamp_column=None,
        mode="full",
        primary_key=[],
        load={"strategy": "replace_partition"},
    )
    last = dt.datetime(2025, 1, 6, tzinfo=dt.UTC)
    ex = mysql.extract(src, request(last_sync=last))
    # 3 and 4 changed after last_sync; 3's NULL customer fails NOT LIKE, '' passes it.
    assert ex.frame["id"].tolist() == [4]
    assert ex.frame["customer"].tolist() == [""]
    assert "changed > '2025-01-06 00:00:00'" in ex.inputs["query"]


def test_streams_in_batches_with_one_schema(mariadb: MariaDB) -> None:
    rows = [
        (i, f"c{i}", f"{i}.50", f"2025-01-06 00:{i:02d}:00", None, None, None) for i in range(1, 11)
    ]
    seed(mariadb, rows)
    ex = mysql.extract(orders(mariadb, batch_size=4), request())
    frames = list(ex.frame)
    assert [len(f) for f in frames] == [4, 4, 2]
    assert len({tuple(map(str, f.dtypes)) for f in frames}) == 1
    whole = pd.concat(frames, ignore_index=True)
    assert whole["id"].tolist() == list(range(1, 11))
    assert whole["amount"].tolist() == [i + 0.5 for i in range(1, 11)]
    assert str(whole["changed"].dtype) == "datetime64[us, UTC]"  # typed even though all NULL
    assert ex.inputs["rows"] == 10


def test_an_empty_stream_yields_one_typed_frame(mariadb: MariaDB) -> None:
    seed(mariadb, [])
    frames = list(mysql.extract(orders(mariadb, batch_size=4), request()).frame)
    assert len(frames) == 1 and len(frames[0]) == 0
    assert list(frames[0].columns) == [
        "id",
        "customer",
        "amount",
        "created",
        "changed",
        "day",
        "raw",
    ]
    assert str(frames[0]["id"].dtype) == "Int64"


def _sessions(db: MariaDB) -> int:
    conn = pymysql.connect(**MYSQL)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.processlist WHERE db = %s", (db.name,)
            )
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_an_abandoned_stream_releases_its_connection(mariadb: MariaDB) -> None:
    seed(mariadb)
    ex = mysql.extract(orders(mariadb, batch_size=1), request())
    assert next(iter(ex.frame))["id"].tolist() == [2]
    assert _sessions(mariadb) == 1
    ex.frame.close()
    ex = mysql.extract(orders(mariadb, batch_size=1), request())
    del ex
    gc.collect()
    for _ in range(50):  # the server notices a closed socket asynchronously
        if _sessions(mariadb) == 0:
            break
        import time

        time.sleep(0.05)
    assert _sessions(mariadb) == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"table": "missing"}, "query failed: Table '{db}.missing' doesn't exist"),
        ({"timestamp_column": "nope"}, "query failed: Unknown column 'nope' in 'SELECT'"),
        (
            {"table": None, "query": "SELECT id FROM orders WHERE AND"},
            "query failed: You have an error in your SQL syntax; check the manual that corresponds "
            "to your MariaDB server version for the right syntax to use near 'AND' at line 1",
        ),
        (
            {"table": None, "query": "SELECT id FROM orders WHERE id > :since"},
            "query: unknown parameter :since (available: :window_start, :window_end, :last_sync)",
        ),
    ],
)
def test_permanent_problems_are_source_data_errors(
    mariadb: MariaDB, fields: dict, message: str
) -> None:
    seed(mariadb)
    with pytest.raises(SourceDataError) as e:
        mysql.extract(orders(mariadb, **fields), request())
    assert str(e.value) == message.format(db=mariadb.name)


def test_refused_login_is_permanent_and_refused_connection_is_not(
    mariadb: MariaDB, monkeypatch
) -> None:
    monkeypatch.setenv("WRONG_PW", "not-the-password")
    src = orders(mariadb, connection={"url": mariadb.url(password_ref="${WRONG_PW}")})
    with pytest.raises(SourceDataError) as e:
        mysql.extract(src, request())
    assert str(e.value) == (
        "shop.sources.orders.connection.url: cannot connect: "
        "Access denied for user 'root'@'127.0.0.1' (using password: YES)"
    )
    src = orders(mariadb, connection={"url": "mysql://root@127.0.0.1:1/x"})
    with pytest.raises(pymysql.err.OperationalError) as e:
        mysql.extract(src, request())
    assert e.value.args[0] == 2003


NUMBERS_DDL = "CREATE TABLE numbers (id INT PRIMARY KEY, big BIGINT UNSIGNED, dec30 DECIMAL(30, 2))"


def _numbers(db: MariaDB, rows: list[tuple]) -> Any:
    db.execute(NUMBERS_DDL)
    db.insert("INSERT INTO numbers VALUES (%s, %s, %s)", rows)
    cols = [
        {"name": "id", "type": "integer"},
        {"name": "big", "type": "integer"},
        {"name": "dec30", "type": "integer"},
    ]
    return orders(db, table="numbers", mode="full", timestamp_column=None, columns=cols)


def test_bigint_unsigned_beyond_int64_fails_naming_the_row(mariadb: MariaDB) -> None:
    src = _numbers(mariadb, [(1, 5, "1"), (2, 2**64 - 1, "2")])
    ex = mysql.extract(src, request())
    assert ex.frame["big"].tolist() == [5, 2**64 - 1]  # raw keeps the source's value
    with pytest.raises(CastError) as e:
        normalize(ex.frame, src, "UTC")
    assert str(e.value) == (
        "column 'big': 1 row(s) cannot be read as integer, e.g. 18446744073709551615 (first at row 2)"
    )


def test_decimals_declared_integer_are_exact_or_fail(mariadb: MariaDB) -> None:
    src = _numbers(mariadb, [(1, 1, str(2**53 + 1)), (2, 2, "12.00")])
    out = normalize(mysql.extract(src, request()).frame, src, "UTC").frame
    assert out["dec30"].tolist() == [2**53 + 1, 12]
    mariadb.execute("INSERT INTO numbers VALUES (3, 3, 99999999999999999999), (4, 4, 0.5)")
    with pytest.raises(CastError) as e:
        normalize(mysql.extract(src, request()).frame, src, "UTC")
    assert str(e.value) == (
        "column 'dec30': 2 row(s) cannot be read as integer, "
        "e.g. '99999999999999999999.00', '0.50' (first at row 3)"
    )


def test_a_datetime_holding_utc_with_source_timezone_lands_in_the_right_partitions(
    mariadb: MariaDB, etl_env: dict[str, str]
) -> None:
    """The pipeline runs in São Paulo (UTC−3); the DATETIME column holds UTC wall-clock."""
    mariadb.execute("CREATE TABLE events (id INT PRIMARY KEY, at DATETIME NOT NULL)")
    mariadb.insert(
        "INSERT INTO events VALUES (%s, %s)",
        [
            (1, "2025-01-05 02:59:59"),  # 23:59:59 local on 01-04: before the first week
            (2, "2025-01-05 03:00:00"),  # the first instant of week 2025-01-05
            (3, "2025-01-12 02:59:59"),  # its last second
            (4, "2025-01-12 03:00:00"),  # the first instant of week 2025-01-12
            (5, "2025-01-18 12:00:00"),
        ],
    )
    spec = make_spec(
        timezone="America/Sao_Paulo",
        sources=[
            {
                "name": "events",
                "kind": "mysql",
                "connection": {"url": mariadb.url()},
                "table": "events",
                "timestamp_column": "at",
                "timezone": "UTC",
                "primary_key": ["id"],
                "columns": [{"name": "id", "type": "integer"}, {"name": "at", "type": "timestamp"}],
                "load": {"target": "mart.events"},
            }
        ],
        report={},
    )
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            build_pipeline_assets(spec),
            instance=instance,
            resources={
                "parquet_io": ParquetIOManagerResource(base_path=etl_env["ETL_STORAGE_DIR"]),
                "warehouse": WarehouseResource(url=etl_env["ETL_WAREHOUSE_URL"]),
            },
            raise_on_error=False,
            tags={
                "dagster/asset_partition_range_start": "2025-01-05",
                "dagster/asset_partition_range_end": "2025-01-12",
            },
        )
        assert result.success
        raw = next(
            e.step_materialization_data.materialization.metadata["inputs"].value
            for e in result.get_asset_materialization_events()
            if e.asset_key == asset_key("shop", "raw", "events")
        )
    assert "events.at >= '2025-01-05 03:00:00' AND events.at < '2025-01-12 03:00:00'" in (
        raw["2025-01-05"]["query"]
    )
    utc = dt.UTC
    assert query(
        etl_env["ETL_WAREHOUSE_URL"], "SELECT _partition, id, at FROM mart.events ORDER BY id"
    ) == [
        ("2025-01-05", 2, dt.datetime(2025, 1, 5, 3, tzinfo=utc)),
        ("2025-01-05", 3, dt.datetime(2025, 1, 12, 2, 59, 59, tzinfo=utc)),
        ("2025-01-12", 4, dt.datetime(2025, 1, 12, 3, tzinfo=utc)),
        ("2025-01-12", 5, dt.datetime(2025, 1, 18, 12, tzinfo=utc)),
    ]


def test_a_column_timezone_overrides_the_source_timezone(mariadb: MariaDB) -> None:
    mariadb.execute("CREATE TABLE events (id INT PRIMARY KEY, at DATETIME, seen DATETIME)")
    mariadb.insert("INSERT INTO events VALUES (%s, %s, %s)", [(1, "2025-01-06 09:00:00", "2025-01-06 09:00:00")])
    src = orders(
        mariadb, table="events", timestamp_column="at", timezone="UTC",
        columns=[{"name": "id", "type": "integer"}, {"name": "at", "type": "timestamp"},
                 {"name": "seen", "type": "timestamp", "timezone": "Asia/Tokyo"}],
    )
    out = normalize(mysql.extract(src, request()).frame, src, "America/New_York").frame
    assert out["at"].tolist() == [pd.Timestamp("2025-01-06 09:00", tz="UTC")]
    assert out["seen"].tolist() == [pd.Timestamp("2025-01-06 00:00", tz="UTC")]
