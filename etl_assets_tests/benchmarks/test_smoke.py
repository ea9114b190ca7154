"""The benchmark suite's smoke profile runs end to end and writes RESULTS.md in the committed shape.

It writes to a temporary folder, never over benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "benchmarks" / "RESULTS.md"
RATIO_LINE = re.compile(r"^end_to_end_vs_sql_limit_1m: (\d+(?:\.\d+)?)$", re.MULTILINE)
SECTIONS = [
    r"^## Setup$",
    r"^## first load, [\d,]+ rows \(1 week, one run\)$",
    r"^## no-change rerun, [\d,]+ rows \(1 week, one run\)$",
    r"^## 10% changed, [\d,]+ rows \(1 week, one run\)$",
    r"^## first load, [\d,]+ rows \(\d+ weeks, one run\)$",
    r"^## no-change rerun, [\d,]+ rows \(\d+ weeks, one run\)$",
    r"^## 10% changed, [\d,]+ rows \(\d+ weeks, one run\)$",
    r"^## Memory: \d+-week single-run backfill",
    r"^## Dagster fixed overhead per run \(100-row partition, in-process\)$",
    r"^## `dagster definitions validate",
]
TABLE_HEADER = "| variant | wall s | rows/s | × SQL limit | peak RSS MB | inserted / updated / unchanged | runs |"


def check_results_md(text: str) -> None:
    assert len(RATIO_LINE.findall(text)) == 1, "exactly one machine-readable ratio line"
    for pattern in SECTIONS:
        assert re.search(pattern, text, re.MULTILINE), f"missing section {pattern!r}"
    assert text.count(TABLE_HEADER) == 6
    for variant in ("(a) binary COPY pipe", "(b) COPY → staging + SQL upsert", "(c) etl-assets end to end"):
        assert variant in text
    assert re.search(r"^rss_ratio_52w_vs_1w: \d+\.\d+$", text, re.MULTILINE)
    for phase in ("imports", "build_defs", "instance: dg.instance_for_test()", "step raw", "step normalized",
                  "step validated", "step loaded", "run overhead outside steps"):
        assert f"| {phase}" in text, phase


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_smoke_profile_writes_results(tmp_path: Path) -> None:
    before = COMMITTED.read_bytes() if COMMITTED.exists() else None
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    check_results_md(text)
    ratio = float(RATIO_LINE.search(text).group(1))
    assert ratio > 1  # Dagster, pandas and Parquet cannot beat the pure-SQL upsert

    data = json.loads((tmp_path / "results.json").read_text())
    summary = data["summary"]
    first = summary["table"]["1m"]["first"]
    assert first["etl_assets"]["counts"]["inserted"] == data["sizes"]["1m"]["rows"]
    assert summary["table"]["1w"]["nochange"]["etl_assets"]["counts"] == {
        "inserted": 0, "updated": 0, "unchanged": data["sizes"]["1w"]["rows"]
    }
    changed = summary["table"]["1w"]["changed"]
    for variant in ("sql_upsert", "etl_assets"):
        assert changed[variant]["counts"]["updated"] == data["sizes"]["1w"]["rows"] // 10, variant
    assert all(r["peak_rss_mb"] > 0 for r in data["runs"] if "peak_rss_mb" in r)
    assert summary["overhead"]["test"]["steps_s"].keys() == {"raw", "normalized", "validated", "loaded"}

    # The committed file is untouched, and (when present) has the same shape.
    assert (COMMITTED.read_bytes() if COMMITTED.exists() else None) == before
    if before is not None:
        check_results_md(before.decode())
