"""PostgreSQL sources against the real server: windows, queries, batches and errors."""

from __future__ import annotations

import datetime as dt
import gc
from decimal import Decimal

import pandas as pd
import psycopg
import pytest

from etl_assets.sources import postgres
from etl_assets.sources.base import SourceDataError
from etl_assets_tests.helpers import ADMIN_URL, create_orders, query
from etl_assets_tests.sources.conftest import request, source

UTC = dt.UTC
ROWS = [
    (1, "before", Decimal("1.00"), dt.datetime(2025, 1, 5, 4, 59, 59, tzinfo=UTC)),
    (2, "at start", Decimal("2.50"), dt.datetime(2025, 1, 5, 5, 0, tzinfo=UTC)),
    (3, None, Decimal("3.25"), dt.datetime(2025, 1, 8, 12, 0, tzinfo=UTC)),
    (4, "", None, dt.datetime(2025, 1, 12, 4, 59, 59, tzinfo=UTC)),
    (5, "at end", Decimal("5.00"), dt.datetime(2025, 1, 12, 5, 0, tzinfo=UTC)),
]
COLUMNS = [
    {"name": "id", "from": "order_id", "type": "integer"},
    {"name": "customer"},
    {"name": "amount", "type": "float"},
    {"name": "updated_at", "type": "timestamp"},
]


def orders(**kw):
    fields = {
        "kind": "postgres",
        "connection": {"url": "${SRC_URL}"},
        "table": "src.orders",
        "timestamp_column": "updated_at",
        "columns": COLUMNS,
    }
    return source(**{**fields, **kw})


def test_incremental_reads_exactly_the_window(pg: str) -> None:
    create_orders(pg, ROWS)
    ex = postgres.extract(orders(), request())
    f = ex.frame
    assert list(f.columns) == ["order_id", "customer", "amount", "updated_at"]
    assert f["order_id"].tolist() == [2, 3, 4]
    # NULL and '' stay apart through the CSV stream.
    assert f["customer"][0] == "at start" and pd.isna(f["customer"][1]) and f["customer"][2] == ""
    assert f["amount"].tolist()[:2] == [2.5, 3.25] and pd.isna(f["amount"][2])
    assert f["updated_at"].tolist() == [pd.Timestamp(r[3]) for r in ROWS[1:4]]
    assert str(f["order_id"].dtype) == "Int64"
    assert ex.inputs["rows"] == 3
    assert ex.inputs["window_start"] == "2025-01-05T00:00:00-05:00"
    assert ex.inputs["window_end"] == "2025-01-12T00:00:00-05:00"
    assert ex.inputs["query"] == (
        'SELECT "order_id", "customer", "amount", "updated_at" FROM "src"."orders" '
        "WHERE \"updated_at\" >= '2025-01-05 00:00:00-05:00'::timestamptz "
        "AND \"updated_at\" < '2025-01-12 00:00:00-05:00'::timestamptz"
    )


def test_lookback_widens_only_the_start(pg: str) -> None:
    create_orders(pg, ROWS)
    ex = postgres.extract(orders(lookback="1h"), request())
    assert ex.frame["order_id"].tolist() == [1, 2, 3, 4]
    assert ex.inputs["window_start"] == "2025-01-04T23:00:00-05:00"


def test_full_mode_reads_the_whole_table(pg: str) -> None:
    create_orders(pg, ROWS)
    ex = postgres.extract(orders(mode="full", timestamp_column=None), request())
    assert sorted(ex.frame["order_id"].tolist()) == [1, 2, 3, 4, 5]
    assert "WHERE" not in ex.inputs["query"]


def test_naive_timestamps_are_wall_clock_in_the_pipeline_timezone(pg: str) -> None:
    with psycopg.connect(pg) as conn:
        conn.execute("CREATE TABLE visits (id int, seen timestamp)")
        conn.cursor().executemany(
            "INSERT INTO visits VALUES (%s, %s)",
            [
                (1, dt.datetime(2025, 1, 4, 23, 59)),  # local, just before the window
                (2, dt.datetime(2025, 1, 5, 0, 0)),  # local midnight: the start (05:00 UTC)
                (3, dt.datetime(2025, 1, 11, 23, 59)),
                (4, dt.datetime(2025, 1, 12, 0, 0)),
            ],
        )
    ex = postgres.extract(
        source(
            kind="postgres",
            connection={"url": "${SRC_URL}"},
            table="visits",
            timestamp_column="seen",
        ),
        request(),
    )
    assert ex.frame["id"].tolist() == [2, 3]
    assert ex.frame["seen"].tolist() == [
        pd.Timestamp("2025-01-05 00:00"),
        pd.Timestamp("2025-01-11 23:59"),
    ]
    assert "'2025-01-05 00:00:00'::timestamp " in ex.inputs["query"]


def test_query_binds_window_and_last_sync(pg: str) -> None:
    create_orders(pg, ROWS)
    q = (
        "SELECT order_id, amount::float8 AS amount FROM src.orders "
        "WHERE updated_at >= :window_start AND updated_at < :window_end "
        "AND updated_at > :last_sync AND customer IS DISTINCT FROM ':x' ORDER BY order_id"
    )
    src = source(
        kind="postgres",
        connection={"url": "${SRC_URL}"},
        query=q,
        timestamp_column="updated_at",
        primary_key=[],
        load={"strategy": "replace_partition"},
    )
    last = dt.datetime(2025, 1, 6, tzinfo=UTC)
    ex = postgres.extract(src, request(last_sync=last))
    assert ex.frame["order_id"].tolist() == [3, 4]
    assert ex.frame["amount"].tolist()[0] == 3.25
    assert "'2025-01-06 00:00:00+00:00'::timestamptz" in ex.inputs["query"]


def test_batches_stream_with_one_schema(pg: str) -> None:
    rows = [
        (i, f"c{i}", Decimal(i), dt.datetime(2025, 1, 6, tzinfo=UTC) + dt.timedelta(minutes=i))
        for i in range(1, 11)
    ]
    create_orders(pg, rows)
    ex = postgres.extract(orders(batch_size=3), request())
    assert not ex.inputs["rows"]  # counted as the stream is read
    frames = list(ex.frame)
    assert [len(f) for f in frames] == [3, 3, 3, 1]
    assert len({tuple(map(str, f.dtypes)) for f in frames}) == 1
    whole = pd.concat(frames, ignore_index=True)
    assert whole["order_id"].tolist() == list(range(1, 11))
    assert whole["customer"].tolist() == [f"c{i}" for i in range(1, 11)]
    assert ex.inputs["rows"] == 10


def test_an_empty_stream_still_yields_the_schema(pg: str) -> None:
    create_orders(pg, [])
    frames = list(postgres.extract(orders(batch_size=100), request()).frame)
    assert len(frames) == 1 and len(frames[0]) == 0
    assert list(frames[0].columns) == ["order_id", "customer", "amount", "updated_at"]
    assert str(frames[0]["order_id"].dtype) == "Int64"


def _sessions(db: str) -> int:
    return query(ADMIN_URL, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (db,))[0][0]


def test_an_abandoned_stream_releases_its_connection(pg: str) -> None:
    create_orders(pg, ROWS)
    db = pg.rsplit("/", 1)[1]
    ex = postgres.extract(orders(batch_size=1), request())
    first = next(iter(ex.frame))
    assert first["order_id"].tolist() == [2]
    assert _sessions(db) == 1
    ex.frame.close()
    assert _sessions(db) == 0
    ex = postgres.extract(orders(batch_size=1), request())  # never read at all
    del ex
    gc.collect()
    assert _sessions(db) == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"table": "src.missing"}, 'query failed: relation "src.missing" does not exist'),
        (
            {"columns": [{"name": "id", "from": "nope"}, {"name": "updated_at"}]},
            'query failed: column "nope" does not exist',
        ),
        (
            {"table": None, "query": "SELECT order_id FROM src.orders WHERE AND"},
            'query failed: syntax error at or near "AND"',
        ),
        (
            {"table": None, "query": "SELECT 1 WHERE now() > :since"},
            "query: unknown parameter :since (available: :window_start, :window_end, :last_sync)",
        ),
    ],
)
def test_permanent_problems_are_source_data_errors(pg: str, fields: dict, message: str) -> None:
    create_orders(pg, ROWS)
    with pytest.raises(SourceDataError) as e:
        postgres.extract(orders(**fields), request())
    assert str(e.value) == message


def test_unknown_database_is_permanent_and_refused_connection_is_not(pg: str, monkeypatch) -> None:
    monkeypatch.setenv("SRC_URL", pg + "_gone")
    with pytest.raises(SourceDataError, match=r"connection\.url: cannot connect: .*does not exist"):
        postgres.extract(orders(), request())
    monkeypatch.setenv("SRC_URL", "postgresql://postgres@127.0.0.1:1/x")
    with pytest.raises(psycopg.OperationalError, match="refused"):
        postgres.extract(orders(), request())
