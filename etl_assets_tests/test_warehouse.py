"""The PostgreSQL warehouse: every spec type survives the load exactly, nulls included."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd

from etl_assets.normalize import record_hashes
from etl_assets.warehouse import Warehouse

from .conftest import query

TYPES = {"id": "integer", "name": "string", "price": "float", "ok": "boolean", "day": "date", "at": "timestamp"}


def _frame(n: int = 1_000) -> pd.DataFrame:
    start = pd.Timestamp("2025-03-09T01:02:03.456789Z")
    frame = pd.DataFrame({
        "id": pd.array(range(1, n + 1), dtype="Int64"),
        "name": pd.array([None if i % 10 == 0 else f"näme, \"{i}\"\n\\N" for i in range(n)], dtype="string"),
        "price": pd.array([None if i % 7 == 0 else i / 3 for i in range(n)], dtype="Float64"),
        "ok": pd.array([None if i % 5 == 0 else i % 2 == 0 for i in range(n)], dtype="boolean"),
        "day": pd.Series([None if i % 9 == 0 else dt.date(2025, 3, 1) + dt.timedelta(days=i % 30) for i in range(n)],
                         dtype=object),
        "at": pd.Series([start + pd.Timedelta(seconds=i) for i in range(n)]).astype("datetime64[us, UTC]"),
    })
    frame.loc[frame.index % 11 == 0, "at"] = pd.NaT
    frame["record_hash"] = record_hashes(frame, TYPES)
    return frame


def _load(wh: Warehouse, frame: pd.DataFrame, types: dict[str, str], target: str = "mart.t") -> tuple[int, int, int]:
    with wh.connect() as conn:
        wh.ensure_table(conn, target, types, ["id"])
        c = wh.load_partition(conn, target=target, frame=frame, types=types, key=["id"],
                              partition="2025-03-09", run_id="r1", strategy="upsert")
    return c.inserted, c.updated, c.unchanged


def test_every_type_and_null_round_trips(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    frame = _frame()
    assert _load(wh, frame, TYPES) == (1_000, 0, 0)
    rows = query(warehouse_url, "SELECT id, name, price, ok, day, at, record_hash FROM mart.t ORDER BY id")
    assert len(rows) == 1_000
    for row, (_, want) in zip(rows, frame.iterrows()):
        expected = tuple(None if pd.isna(v) else v for v in want[list(TYPES) + ["record_hash"]])
        expected = expected[:5] + (None if expected[5] is None else expected[5].to_pydatetime(),) + expected[6:]
        assert row == expected, (row, expected)
    assert rows[1][1] == 'näme, "1"\n\\N'  # quotes, commas, newlines and the NULL token stay text
    assert rows[1][5] == dt.datetime(2025, 3, 9, 1, 2, 4, 456789, tzinfo=dt.UTC)
    assert _load(wh, frame, TYPES) == (0, 0, 1_000)


def test_a_column_the_binary_encoder_cannot_type_still_loads(warehouse_url: str) -> None:
    """An all-empty column of unknown type (Arrow's null type) goes through CSV instead."""
    wh = Warehouse(warehouse_url)
    types = {"id": "integer", "note": "string", "amount": "float"}
    frame = pd.DataFrame({
        "id": pd.array([1, 2, 3], dtype="Int64"),
        "note": pd.Series([None, None, None], dtype=object),
        "amount": pd.array([Decimal("1.5"), None, Decimal("2")], dtype=object).astype("Float64"),
    })
    frame["record_hash"] = record_hashes(frame, types)
    assert _load(wh, frame, types, "mart.u") == (3, 0, 0)
    assert query(warehouse_url, "SELECT id, note, amount FROM mart.u ORDER BY id") == [
        (1, None, 1.5), (2, None, None), (3, None, 2.0)
    ]


def test_a_rerun_repairs_rows_changed_or_lost_in_the_warehouse(warehouse_url: str) -> None:
    """An unchanged rerun skips staging only when the partition holds exactly the frame's rows."""
    wh = Warehouse(warehouse_url)
    frame = _frame(200)
    assert _load(wh, frame, TYPES) == (200, 0, 0)
    before = query(warehouse_url, "SELECT * FROM mart.t ORDER BY id")
    assert _load(wh, frame, TYPES) == (0, 0, 200)
    assert query(warehouse_url, "SELECT * FROM mart.t ORDER BY id") == before  # not even _loaded_at moved

    query_and_commit(warehouse_url, "UPDATE mart.t SET name = 'edited by hand', record_hash = 'x' WHERE id = 5")
    query_and_commit(warehouse_url, "DELETE FROM mart.t WHERE id = 7")
    assert _load(wh, frame, TYPES) == (1, 1, 198)
    assert query(warehouse_url, "SELECT id, name, price, ok, day, at, record_hash FROM mart.t ORDER BY id") == [
        r[:7] for r in before
    ]


def query_and_commit(url: str, text: str) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute(text)
