"""The PostgreSQL warehouse: every spec type survives the load exactly, nulls included."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest

from etl_assets.sources.base import SourceDataError
from etl_assets.transform.normalize import record_hashes
from etl_assets.warehouses.postgres import LoadCounts, Warehouse
from etl_assets_tests.helpers import query

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
        "amount": pd.array([Decimal("1.5"), None, Decimal(2)], dtype=object).astype("Float64"),
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


def test_a_rerun_restores_values_edited_in_the_warehouse_with_the_hash_left_as_is(warehouse_url: str) -> None:
    """The window's state is the source's, not what record_hash claims the table holds."""
    wh = Warehouse(warehouse_url)
    frame = _frame(200)
    assert _load(wh, frame, TYPES) == (200, 0, 0)
    before = query(warehouse_url, "SELECT id, name, price, ok, day, at, record_hash FROM mart.t ORDER BY id")
    query_and_commit(warehouse_url, "UPDATE mart.t SET price = 0 WHERE id = 2")
    query_and_commit(warehouse_url, "UPDATE mart.t SET name = NULL, day = '1999-01-01' WHERE id = 3")
    query_and_commit(warehouse_url, "DELETE FROM mart.t WHERE id = 7")
    assert _load(wh, frame, TYPES) == (1, 2, 197)
    assert query(warehouse_url, "SELECT id, name, price, ok, day, at, record_hash FROM mart.t ORDER BY id") == before
    assert _load(wh, frame, TYPES) == (0, 0, 200)


def _typed(types: dict[str, str], rows: dict[str, list]) -> pd.DataFrame:
    dtypes = {"integer": "Int64", "string": "string", "float": "Float64"}
    frame = pd.DataFrame({c: pd.array(rows[c], dtype=dtypes[types[c]]) for c in types})
    frame["record_hash"] = record_hashes(frame, types)
    return frame


def _load_p(wh: Warehouse, frame: pd.DataFrame, types: dict[str, str], partition: str, **kwargs) -> LoadCounts:
    with wh.connect() as conn:
        wh.ensure_table(conn, "mart.d", types, ["id"])
        return wh.load_partition(conn, target="mart.d", frame=frame, types=types, key=["id"],
                                 partition=partition, run_id=partition, strategy="upsert", **kwargs)


FULL = {"id": "integer", "name": "string", "amount": "float"}
SHRUNK = {"id": "integer", "name": "string"}


def test_a_column_gone_from_the_source_fails_the_load_and_names_it(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    _load_p(wh, _typed(FULL, {"id": [1, 2], "name": ["a", "b"], "amount": [1.5, 2.5]}), FULL, "p1")
    before = query(warehouse_url, "SELECT * FROM mart.d ORDER BY id")
    with pytest.raises(SourceDataError, match=r"^mart\.d has column 'amount', which the source no longer "
                                              r"provides; set schema\.on_missing_column: null"):
        _load_p(wh, _typed(SHRUNK, {"id": [1, 3], "name": ["a2", "c"]}), SHRUNK, "p1")
    assert query(warehouse_url, "SELECT * FROM mart.d ORDER BY id") == before


def test_a_column_gone_from_the_source_is_null_in_the_rows_loaded_after_under_policy_null(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    _load_p(wh, _typed(FULL, {"id": [1, 2, 9], "name": ["a", "b", "z"], "amount": [1.5, 2.5, 9.5]}), FULL, "p1")
    _load_p(wh, _typed(FULL, {"id": [5], "name": ["e"], "amount": [5.5]}), FULL, "p0")
    shrunk = _typed(SHRUNK, {"id": [1, 2, 3, 9], "name": ["a", "b2", "c", "z"]})
    counts = _load_p(wh, shrunk, SHRUNK, "p1", on_missing_column="null")
    assert counts.missing_columns == ["amount"]
    assert (counts.inserted, counts.updated, counts.unchanged) == (1, 3, 0)
    assert query(warehouse_url, "SELECT id, name, amount, _partition FROM mart.d ORDER BY id") == [
        (1, "a", None, "p1"), (2, "b2", None, "p1"), (3, "c", None, "p1"), (5, "e", 5.5, "p0"), (9, "z", None, "p1"),
    ]
    again = _load_p(wh, shrunk, SHRUNK, "p1", on_missing_column="null")
    assert (again.inserted, again.updated, again.unchanged, again.missing_columns) == (0, 0, 4, ["amount"])


def test_a_column_name_over_the_identifier_limit_is_a_clear_error(warehouse_url: str) -> None:
    """PostgreSQL would truncate it silently, and every later run would then fail on it."""
    wh = Warehouse(warehouse_url)
    long = "ç" * 32  # 64 bytes in UTF-8
    types = {"id": "integer", long: "string"}
    frame = _typed({"id": "integer", "name": "string"}, {"id": [1], "name": ["a"]}).rename(columns={"name": long})
    for _ in range(2):
        with pytest.raises(SourceDataError, match=f"^column {long!r} is 64 bytes long; PostgreSQL names hold at most "
                                                  "63: declare it under columns with a shorter name and from:"):
            _load_p(wh, frame, types, "p1")
