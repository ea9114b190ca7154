"""Faults injected with real servers: a refusing proxy, bad data, a killed load, a race.

Every test asserts the run summary and the warehouse rows afterwards: nothing lost, nothing
duplicated.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from etl_assets.definitions import build_defs
from etl_assets.orchestration.runner import run_pipeline
from etl_assets.transform.normalize import record_hashes
from etl_assets.warehouses.postgres import Warehouse
from etl_assets_tests.helpers import (
    create_orders,
    kill_when_it_waits_to_write,
    make_spec,
    ny,
    orders_rows,
    query,
    run_script_here,
    wait_session_gone,
    writes_to_table_wait,
)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


class FlakyProxy:
    """A TCP proxy to PostgreSQL that slams the door on its first `refuse` connections."""

    def __init__(self, target_port: int = 5432, refuse: int = 1):
        self.refuse, self.accepted = refuse, 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.target = ("127.0.0.1", target_port)
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.refuse:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                client.close()  # RST: what a restarting server or a dropped route looks like
                continue
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def test_refused_source_connection_is_retried(etl_env, instance, monkeypatch) -> None:
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(25, ny(2025, 3, 9, 1), dt.timedelta(hours=2)))
    proxy = FlakyProxy(refuse=1)
    try:
        db = etl_env["TEST_SOURCE_URL"].rsplit("/", 1)[1]
        monkeypatch.setenv("PROXY_SOURCE_URL", f"postgresql://postgres@127.0.0.1:{proxy.port}/{db}")
        data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
        data["sources"][0]["connection"]["url"] = "${PROXY_SOURCE_URL}"
        data["retries"] = {"max": 3, "delay_seconds": 0}
        spec = type(make_spec()).model_validate(data)
        summary = run_pipeline(build_defs([spec]), spec, ["2025-03-09"], instance=instance)
    finally:
        proxy.close()
    assert summary.status == "success"
    assert summary.sources["orders"].inserted == 25
    assert summary.sources["orders"].error is None
    assert proxy.accepted == 2
    runs = query(etl_env["ETL_WAREHOUSE_URL"], "SELECT status, retries FROM etl_meta.runs")
    assert runs == [("success", 1)]
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT count(*) FROM mart.orders") == [(25,)]


def test_unparsable_csv_value_fails_fast_naming_row_and_column(etl_env, instance, tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.csv").write_text("sku,qty\nA,1\nB,2\nC,3x\nD,4\n")
    spec = make_spec(
        retries={"max": 3, "delay_seconds": 5},
        sources=[
            {
                "name": "items",
                "kind": "csv",
                "path": str(folder / "*.csv"),
                "mode": "full",
                "primary_key": ["sku"],
                "columns": [{"name": "sku"}, {"name": "qty", "type": "integer"}],
                "load": {"target": "mart.items"},
            }
        ],
        report={},
    )
    summary = run_pipeline(build_defs([spec]), spec, ["2025-03-09"], instance=instance)
    assert summary.status == "failed"
    assert summary.sources["items"].status == "failed"
    assert summary.sources["items"].error == (
        "shop/items partition 2025-03-09: column 'qty': 1 row(s) cannot be read as integer, "
        "e.g. '3x' (first at row 3)"
    )
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT status, retries, error_type FROM etl_meta.runs") == [
        ("failed", 0, "CastError")
    ]
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT to_regclass('mart.items')") == [(None,)]


def test_empty_window_loads_nothing_and_succeeds(etl_env, instance) -> None:
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(5, ny(2025, 3, 2, 1), dt.timedelta(hours=2)))
    spec = make_spec()
    summary = run_pipeline(build_defs([spec]), spec, ["2025-03-09"], instance=instance)
    assert summary.status == "success"
    o = summary.sources["orders"]
    assert (o.rows_extracted, o.inserted, o.updated) == (0, 0, 0)
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT count(*) FROM mart.orders") == [(0,)]

    data = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0]["checks"].append({"type": "row_count", "min": 1, "severity": "error"})
    strict = type(spec).model_validate(data)
    summary = run_pipeline(build_defs([strict]), strict, ["2025-03-09"], instance=instance)
    assert summary.status == "failed"
    assert summary.sources["orders"].status == "failed"
    assert "row_count" in summary.sources["orders"].error


def _frame(ids: range, tag: str) -> tuple[pd.DataFrame, dict[str, str]]:
    types = {"id": "integer", "tag": "string"}
    frame = pd.DataFrame({"id": pd.array(list(ids), dtype="Int64"), "tag": pd.array([tag] * len(ids), dtype="string")})
    frame["record_hash"] = record_hashes(frame, types)
    return frame, types


def test_concurrent_loads_of_one_partition_never_interleave(warehouse_url) -> None:
    wh = Warehouse(warehouse_url)
    a, types = _frame(range(1, 20_001), "a")
    b, _ = _frame(range(10_001, 30_001), "b")
    with wh.connect() as conn:
        wh.ensure_table(conn, "mart.race", types, ["id"])
    errors: list[BaseException] = []

    def load(frame: pd.DataFrame) -> None:
        try:
            with wh.connect() as conn:
                wh.load_partition(conn, target="mart.race", frame=frame, types=types, key=["id"],
                                  partition="2025-03-09", run_id="r", strategy="replace_partition")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=load, args=(f,)) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = query(warehouse_url, "SELECT min(id), max(id), count(*), array_agg(DISTINCT tag) FROM mart.race")
    assert rows in ([(1, 20_000, 20_000, ["a"])], [(10_001, 30_000, 20_000, ["b"])])


def test_tables_of_one_new_schema_are_created_at_once(warehouse_url) -> None:
    """Loads of many tables into a schema nobody created yet all start together (parallel steps)."""
    wh = Warehouse(warehouse_url)
    types = {"id": "integer", "tag": "string"}
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def create(i: int) -> None:
        try:
            with wh.connect() as conn:
                barrier.wait()
                wh.ensure_table(conn, f"fresh.t{i}", types, ["id"], quarantine=i % 2 == 0)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    tables = query(warehouse_url, "SELECT table_name FROM information_schema.tables "
                   "WHERE table_schema = 'fresh' ORDER BY table_name")
    assert [t for (t,) in tables] == sorted(
        [f"t{i}" for i in range(8)] + [f"t{i}__quarantine" for i in range(0, 8, 2)]
    )


KILLED_LOADER = "etl_killed_loader"
SIGKILL_SCRIPT = """
import os, sys
import pandas as pd
from etl_assets.transform.normalize import record_hashes
from etl_assets.warehouses.postgres import Warehouse
n, tag = int(sys.argv[2]), sys.argv[3]
types = {"id": "integer", "payload": "string"}
frame = pd.DataFrame({"id": pd.array(range(n), dtype="Int64"),
                      "payload": pd.array([tag + "x" * 200] * n, dtype="string")})
frame["record_hash"] = record_hashes(frame, types)
wh = Warehouse(sys.argv[1])
with wh.connect() as conn:
    conn.execute("SET application_name = 'etl_killed_loader'")
    conn.commit()
    wh.ensure_table(conn, "mart.big", types, ["id"])
    print("loading", flush=True)
    c = wh.load_partition(conn, target="mart.big", frame=frame, types=types, key=["id"],
                          partition="2025-03-09", run_id=tag, strategy="upsert")
    print("done", c.inserted, c.updated, flush=True)
"""


def _loader(url: str, n: int, tag: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SIGKILL_SCRIPT, url, str(n), tag],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )


def test_sigkill_mid_load_leaves_all_or_nothing(warehouse_url) -> None:
    n = 20_000
    run_script_here(SIGKILL_SCRIPT, warehouse_url, str(n), "v1")
    assert query(warehouse_url, "SELECT count(*), count(*) FILTER (WHERE _run_id = 'v1') FROM mart.big") == [(n, n)]

    # A second load changes every row; it is killed inside its transaction, with its rows staged
    # and its write into the table waiting. The server runs that write after the client is gone.
    with writes_to_table_wait(warehouse_url, "mart.big"):
        proc = _loader(warehouse_url, n, "v2")
        assert proc.stdout.readline().strip() == "loading"
        kill_when_it_waits_to_write(warehouse_url, proc, KILLED_LOADER)
    wait_session_gone(warehouse_url, KILLED_LOADER)
    rows = query(warehouse_url, "SELECT _run_id, count(*) FROM mart.big GROUP BY 1")
    assert rows == [("v1", n)]  # none of the killed load's changes

    assert run_script_here(SIGKILL_SCRIPT, warehouse_url, str(n), "v2")[-1] == f"done 0 {n}"
    assert query(warehouse_url, "SELECT _run_id, count(*), count(DISTINCT id) FROM mart.big GROUP BY 1") == [("v2", n, n)]
