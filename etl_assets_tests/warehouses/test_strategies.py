"""Load strategies on real PostgreSQL: scd2, append and delete_insert.

For each: the first load, a rerun of the same window (nothing changes), a changed row, a row
gone with delete_missing, a late older window and a load killed mid-flight (all or nothing).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pandas as pd
import pytest

from etl_assets.spec import SpecError
from etl_assets.transform.normalize import record_hashes
from etl_assets.warehouses.postgres import LoadCounts, Warehouse
from etl_assets_tests.helpers import (
    kill_when_it_waits_to_write,
    make_spec,
    query,
    run_script_here,
    wait_session_gone,
    writes_to_table_wait,
)

TYPES = {"id": "integer", "name": "string", "at": "timestamp"}
UTC = dt.UTC
W1, W2, W3 = (dt.datetime(2025, 3, d, tzinfo=UTC) for d in (2, 9, 16))


def at(day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2025, 3, day, hour, tzinfo=UTC)


def _frame(rows: list[tuple[int, str, dt.datetime]]) -> pd.DataFrame:
    frame = pd.DataFrame({
        "id": pd.array([r[0] for r in rows], dtype="Int64"),
        "name": pd.array([r[1] for r in rows], dtype="string"),
        "at": pd.Series([r[2] for r in rows], dtype="datetime64[us, UTC]"),
    })
    frame["record_hash"] = record_hashes(frame, TYPES)
    return frame


def load(
    wh: Warehouse, rows: list[tuple[int, str, dt.datetime]], window: dt.datetime, strategy: str, *,
    key: tuple[str, ...] = ("id",), delete_missing: bool = False, timestamp_column: str | None = "at",
    target: str = "mart.t",
) -> LoadCounts:
    with wh.connect() as conn:
        wh.ensure_table(conn, target, TYPES, list(key), strategy=strategy)
        return wh.load_partition(
            conn, target=target, frame=_frame(rows), types=TYPES, key=list(key),
            partition=window.date().isoformat(), run_id=f"run-{window.date()}", strategy=strategy,
            delete_missing=delete_missing, window_start=window, timestamp_column=timestamp_column,
        )


def versions(url: str, target: str = "mart.t") -> list[tuple]:
    return query(url, f"SELECT id, name, valid_from, valid_to, is_current FROM {target} ORDER BY id, valid_from")


def snapshot(url: str, target: str = "mart.t") -> list[tuple]:
    return query(url, f"SELECT * FROM {target} ORDER BY 1, 2, 3")


FIRST = [(1, "ann", at(3)), (2, "bob", at(4)), (3, "cy", at(5))]


# --- scd2 -----------------------------------------------------------------------------------


def test_scd2_first_load_opens_one_current_version_per_key(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    c = load(wh, FIRST, W1, "scd2")
    assert (c.inserted, c.updated, c.unchanged, c.deleted) == (3, 0, 0, 0)
    assert (c.versions_opened, c.versions_closed) == (3, 0)
    # valid_from is the row's timestamp_column.
    assert versions(warehouse_url) == [
        (1, "ann", at(3), None, True), (2, "bob", at(4), None, True), (3, "cy", at(5), None, True)
    ]
    assert query(warehouse_url, "SELECT id, name FROM mart.t__current ORDER BY id") == [
        (1, "ann"), (2, "bob"), (3, "cy")
    ]


def test_scd2_rerun_of_the_same_window_changes_nothing(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    load(wh, FIRST, W1, "scd2")
    load(wh, [(2, "bobby", at(10))], W2, "scd2")
    before = snapshot(warehouse_url)
    for rows, window in ((FIRST, W1), ([(2, "bobby", at(10))], W2)):
        c = load(wh, rows, window, "scd2")
        assert (c.inserted, c.updated, c.versions_opened, c.versions_closed) == (0, 0, 0, 0)
        assert c.unchanged == len(rows)
    assert snapshot(warehouse_url) == before  # not even _loaded_at or valid_to moved


def test_scd2_changed_row_closes_the_current_version_and_opens_one(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    load(wh, FIRST, W1, "scd2")
    c = load(wh, [(2, "bobby", at(10)), (3, "cy", at(5))], W2, "scd2")
    assert (c.inserted, c.updated, c.unchanged, c.versions_opened, c.versions_closed) == (1, 0, 1, 1, 1)
    assert [v for v in versions(warehouse_url) if v[0] == 2] == [
        (2, "bob", at(4), at(10), False), (2, "bobby", at(10), None, True)
    ]
    # Key 3 arrived again unchanged: still its one version.
    assert [v for v in versions(warehouse_url) if v[0] == 3] == [(3, "cy", at(5), None, True)]
    assert query(warehouse_url, "SELECT id, name FROM mart.t__current ORDER BY id") == [
        (1, "ann"), (2, "bobby"), (3, "cy")
    ]


def test_scd2_late_older_window_does_not_overwrite_newer_versions(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    load(wh, FIRST, W2, "scd2")  # W2 rows carry March 3–5 timestamps; fine for the test
    load(wh, [(2, "bobby", at(10))], W2, "scd2")
    # An older window arrives late with an earlier version of key 2 and a new key 9.
    c = load(wh, [(2, "b.", at(1)), (9, "zed", at(1, 6))], W1, "scd2")
    assert (c.inserted, c.versions_opened) == (2, 2)
    assert [v for v in versions(warehouse_url) if v[0] in (2, 9)] == [
        (2, "b.", at(1), at(4), False),
        (2, "bob", at(4), at(10), False),
        (2, "bobby", at(10), None, True),
        (9, "zed", at(1, 6), None, True),
    ]
    again = load(wh, [(2, "b.", at(1)), (9, "zed", at(1, 6))], W1, "scd2")
    assert (again.inserted, again.updated, again.versions_closed) == (0, 0, 0)


def test_scd2_delete_missing_closes_versions_instead_of_deleting(warehouse_url: str) -> None:
    """A full source without a timestamp column: versions are valid from the window start."""
    wh = Warehouse(warehouse_url)
    full = [(1, "ann", at(1)), (2, "bob", at(1)), (3, "cy", at(1))]
    load(wh, full, W1, "scd2", delete_missing=True, timestamp_column=None)
    c = load(wh, full[:2], W2, "scd2", delete_missing=True, timestamp_column=None)
    assert (c.deleted, c.versions_closed, c.versions_opened) == (0, 1, 0)
    assert [v for v in versions(warehouse_url) if v[0] == 3] == [(3, "cy", W1, W2, False)]
    assert query(warehouse_url, "SELECT count(*) FROM mart.t") == [(3,)]
    before = snapshot(warehouse_url)
    rerun = load(wh, full[:2], W2, "scd2", delete_missing=True, timestamp_column=None)
    assert (rerun.versions_closed, rerun.versions_opened) == (0, 0)
    assert snapshot(warehouse_url) == before
    back = load(wh, full, W3, "scd2", delete_missing=True, timestamp_column=None)
    assert (back.versions_opened, back.versions_closed) == (1, 0)
    assert [v for v in versions(warehouse_url) if v[0] == 3] == [
        (3, "cy", W1, W2, False), (3, "cy", W3, None, True)
    ]


def test_scd2_on_a_table_loaded_by_upsert_is_a_clear_error(warehouse_url: str) -> None:
    from etl_assets.sources.base import SourceDataError

    wh = Warehouse(warehouse_url)
    load(wh, FIRST, W1, "upsert")
    with pytest.raises(SourceDataError, match=r"mart\.t .*upsert.* scd2 needs valid_from"):
        load(wh, FIRST, W1, "scd2")


# --- append ---------------------------------------------------------------------------------


def test_append_inserts_each_key_once_with_its_partition(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    c = load(wh, FIRST, W1, "append")
    assert (c.inserted, c.updated, c.unchanged) == (3, 0, 0)
    before = snapshot(warehouse_url)
    rerun = load(wh, FIRST, W1, "append")
    assert (rerun.inserted, rerun.updated, rerun.unchanged) == (0, 0, 3)
    assert snapshot(warehouse_url) == before
    # An event never changes once loaded: a different value for a loaded key is not written.
    changed = load(wh, [(2, "bobby", at(4)), (4, "dee", at(6))], W1, "append")
    assert (changed.inserted, changed.updated, changed.unchanged, changed.deleted) == (1, 0, 1, 0)
    # A late older window inserts its new keys under its own partition.
    late = load(wh, [(0, "old", at(1)), (1, "ann", at(3))], dt.datetime(2025, 2, 23, tzinfo=UTC), "append")
    assert (late.inserted, late.unchanged) == (1, 1)
    assert query(warehouse_url, "SELECT id, name, _partition FROM mart.t ORDER BY id") == [
        (0, "old", "2025-02-23"), (1, "ann", "2025-03-02"), (2, "bob", "2025-03-02"),
        (3, "cy", "2025-03-02"), (4, "dee", "2025-03-02"),
    ]


def test_append_with_delete_missing_is_a_spec_error() -> None:
    source = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")["sources"][0]
    source.update(mode="full", load={"strategy": "append", "delete_missing": True})
    with pytest.raises(SpecError, match="append never deletes"):
        make_spec(sources=[source])


def test_append_and_scd2_on_clickhouse_are_spec_errors() -> None:
    for strategy in ("append", "scd2"):
        source = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")["sources"][0]
        source["load"] = {"strategy": strategy}
        with pytest.raises(SpecError, match=f"sources\\[0\\].load.strategy: {strategy} is not supported on a ClickHouse"):
            make_spec(sources=[source], warehouse={"kind": "clickhouse", "url": "chdb:///tmp/x"})


# --- delete_insert --------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["delete_insert", "replace_partition"])
def test_delete_insert_replaces_the_partitions_rows_as_a_set(warehouse_url: str, strategy: str) -> None:
    wh = Warehouse(warehouse_url)
    load(wh, FIRST, W1, strategy)
    load(wh, [(7, "gus", at(10))], W2, strategy)
    before = snapshot(warehouse_url)
    rerun = load(wh, FIRST, W1, strategy)
    assert (rerun.inserted, rerun.updated, rerun.deleted, rerun.unchanged) == (0, 0, 0, 3)
    assert snapshot(warehouse_url) == before
    c = load(wh, [(1, "ann", at(3)), (2, "bobby", at(4))], W1, strategy)  # 2 changed, 3 gone
    assert (c.inserted, c.updated, c.deleted, c.unchanged) == (0, 1, 1, 1)
    # A late older window touches only its own partition.
    late = load(wh, [(5, "eve", at(1))], dt.datetime(2025, 2, 23, tzinfo=UTC), strategy)
    assert (late.inserted, late.deleted) == (1, 0)
    assert query(warehouse_url, "SELECT id, name, _partition FROM mart.t ORDER BY id") == [
        (1, "ann", "2025-03-02"), (2, "bobby", "2025-03-02"), (5, "eve", "2025-02-23"), (7, "gus", "2025-03-09")
    ]


def test_delete_insert_without_a_key_reruns_without_churn(warehouse_url: str) -> None:
    """A source whose key is not stable loads as a multiset of rows per partition."""
    wh = Warehouse(warehouse_url)
    rows = [(1, "ann", at(3)), (1, "ann", at(3)), (2, "bob", at(4))]
    assert load(wh, rows, W1, "delete_insert", key=()).inserted == 3
    before = snapshot(warehouse_url)
    rerun = load(wh, rows, W1, "delete_insert", key=())
    assert (rerun.inserted, rerun.deleted, rerun.unchanged) == (0, 0, 3)
    assert snapshot(warehouse_url) == before
    c = load(wh, rows[1:], W1, "delete_insert", key=())
    assert (c.inserted, c.deleted) == (2, 3)
    assert query(warehouse_url, "SELECT id, name FROM mart.t ORDER BY id") == [(1, "ann"), (2, "bob")]


def test_delete_insert_with_delete_missing_deletes_what_the_full_source_lost(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    load(wh, FIRST, W1, "delete_insert", delete_missing=True)
    c = load(wh, FIRST[:2], W2, "delete_insert", delete_missing=True)
    assert c.deleted == 1
    assert query(warehouse_url, "SELECT id FROM mart.t ORDER BY id") == [(1,), (2,)]


# --- killed mid-load ------------------------------------------------------------------------


KILL_SCRIPT = """
import datetime as dt, sys
import pandas as pd
from etl_assets.transform.normalize import record_hashes
from etl_assets.warehouses.postgres import Warehouse
url, strategy, n, tag, offset = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
types = {"id": "integer", "payload": "string", "at": "timestamp"}
stamp = dt.datetime(2025, 3, 3, tzinfo=dt.timezone.utc) + dt.timedelta(hours=offset // 1000 + len(tag))
frame = pd.DataFrame({"id": pd.array(range(offset, offset + n), dtype="Int64"),
                      "payload": pd.array([tag + "x" * 200] * n, dtype="string"),
                      "at": pd.Series([stamp] * n, dtype="datetime64[us, UTC]")})
frame["record_hash"] = record_hashes(frame, types)
wh = Warehouse(url)
with wh.connect() as conn:
    conn.execute("SET application_name = 'etl_strategy_kill'")
    conn.commit()
    wh.ensure_table(conn, "mart.big", types, ["id"], strategy=strategy)
    print("loading", flush=True)
    c = wh.load_partition(conn, target="mart.big", frame=frame, types=types, key=["id"],
                          partition="2025-03-02", run_id=tag, strategy=strategy,
                          window_start=dt.datetime(2025, 3, 2, tzinfo=dt.timezone.utc), timestamp_column="at")
    print("done", c.inserted, c.updated, flush=True)
"""


def _loader(url: str, strategy: str, n: int, tag: str, offset: int = 0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, url, strategy, str(n), tag, str(offset)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )


@pytest.mark.parametrize("strategy", ["scd2", "append", "delete_insert"])
def test_sigkill_mid_load_leaves_all_or_nothing(warehouse_url: str, strategy: str) -> None:
    n = 20_000
    run_script_here(KILL_SCRIPT, warehouse_url, strategy, str(n), "v1", "0")
    before = snapshot(warehouse_url, "mart.big")
    # The second load changes every row (append: brings as many new keys). It is killed inside
    # its transaction, rows staged, its first write into the table waiting; the server runs that
    # write after the client is gone.
    offset = n if strategy == "append" else 0
    with writes_to_table_wait(warehouse_url, "mart.big"):
        proc = _loader(warehouse_url, strategy, n, "v22", offset)
        assert proc.stdout.readline().strip() == "loading"
        kill_when_it_waits_to_write(warehouse_url, proc, "etl_strategy_kill")
    wait_session_gone(warehouse_url, "etl_strategy_kill")
    assert snapshot(warehouse_url, "mart.big") == before  # none of the killed load's changes

    out = run_script_here(KILL_SCRIPT, warehouse_url, strategy, str(n), "v22", str(offset))
    expected = {"scd2": f"done {n} 0", "append": f"done {n} 0", "delete_insert": f"done 0 {n}"}[strategy]
    assert out[-1] == expected
    total = {"scd2": 2 * n, "append": 2 * n, "delete_insert": n}[strategy]
    assert query(warehouse_url, "SELECT count(*) FROM mart.big") == [(total,)]
