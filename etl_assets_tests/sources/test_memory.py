"""`batch_size` bounds memory: a million-row read measured in separate processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pyarrow.parquet as pq

# Runs in a fresh interpreter. The peak is VmHWM, the high-water mark of this process's own
# memory: on Linux, ru_maxrss carries over the parent's peak through fork and exec, so under
# a large pytest process it would measure pytest.
READER = r"""
import json, resource, sys


def peak_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: the nearest thing

import pyarrow as pa
import pyarrow.parquet as pq
from etl_assets.sources import postgres
from etl_assets.sources.base import ExtractRequest
from etl_assets.spec import PostgresSource
from etl_assets_tests.sources.conftest import WEEK

batch_size = json.loads(sys.argv[1])
src = PostgresSource.model_validate({
    "name": "events", "kind": "postgres", "connection": {"url": "${SRC_URL}"},
    "table": "events", "mode": "full", "load": {"strategy": "replace_partition"},
    "batch_size": batch_size,
})
before = peak_kb()
ex = postgres.extract(src, ExtractRequest("mem", WEEK))
frames = ex.frame if batch_size else [ex.frame]
writer, rows, largest, total = None, 0, 0, 0
for frame in frames:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if writer is None:
        writer = pq.ParquetWriter(sys.argv[2], table.schema)
    writer.write_table(table)
    rows += len(frame)
    largest = max(largest, len(frame))
    total += int(frame["n"].sum())
    del frame, table
writer.close()
peak = peak_kb()
print(json.dumps({"before_kb": before, "peak_kb": peak, "rows": rows, "largest": largest,
                  "sum": total, "inputs_rows": ex.inputs["rows"]}))
"""


def _read(batch_size: int | None, out: Path, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", READER, json.dumps(batch_size), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_batched_read_needs_a_fraction_of_the_memory(
    pg: str, tmp_path: Path, monkeypatch
) -> None:
    with psycopg.connect(pg) as conn:
        # About 200 bytes a row, like a typical fact table: a million rows is ~200 MB of CSV.
        conn.execute(
            "CREATE TABLE events AS SELECT g AS n, md5(g::text) || md5((g + 1)::text) || "
            "md5((g + 2)::text) AS payload, 'customer ' || (g % 1000) AS customer, "
            "g * 0.25 AS amount, g % 3 = 0 AS flagged, "
            "timestamptz '2025-01-06' + g * interval '1 second' AS at, "
            "timestamp '2025-01-06' + g * interval '1 second' AS local_at "
            "FROM generate_series(1, 1000000) AS g"
        )
    env = {**os.environ, "SRC_URL": pg, "PYTHONPATH": str(Path(__file__).parents[2])}
    batched = _read(100_000, tmp_path / "batched.parquet", env)
    whole = _read(None, tmp_path / "whole.parquet", env)
    print(
        f"\npeak RSS: batched {batched['peak_kb'] / 1024:.0f} MiB, "
        f"unbatched {whole['peak_kb'] / 1024:.0f} MiB "
        f"(after imports {batched['before_kb'] / 1024:.0f} MiB)"
    )
    expected_sum = 1_000_000 * 1_000_001 // 2
    for result in (batched, whole):
        assert result["rows"] == result["inputs_rows"] == 1_000_000
        assert result["sum"] == expected_sum
    assert batched["largest"] == 100_000
    assert whole["largest"] == 1_000_000
    assert batched["peak_kb"] < 0.6 * whole["peak_kb"]
    # What the read itself added, beyond the interpreter and its imports.
    assert batched["peak_kb"] - batched["before_kb"] < 0.5 * (whole["peak_kb"] - whole["before_kb"])
    assert pq.read_metadata(tmp_path / "batched.parquet").num_rows == 1_000_000
    assert pq.read_metadata(tmp_path / "batched.parquet").num_row_groups == 10
