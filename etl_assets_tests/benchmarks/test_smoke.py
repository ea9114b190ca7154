"""The benchmark suite's smoke profile runs end to end and writes RESULTS.md in the committed shape.

It writes to a temporary folder, never over benchmarks/RESULTS.md.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# The smoke profile's UI scenario runs a real Dagster webserver and daemon (`make test-fast` leaves it out).
pytestmark = pytest.mark.services

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
# Issue 18's machine-readable lines, each measured in the same run (dlt's only where dlt is installed).
HEADLINES = [
    "end_to_end_vs_sql_limit_1m", "dlt_vs_end_to_end_1m", "rerun_vs_sql_nochange_1m", "ui_run_vs_cli_run",
    "small_partitions_first_vs_sql", "small_partitions_rerun_vs_sql", "cli_history_wall_s", "tiny_run_wall_s",
    "peak_rss_mb_1m", "peak_rss_52w_vs_1w",
]
NEW_SECTIONS = [r"^## Small partitions: \d+ weeks × 5 sources", r"^## CLI and UI: what a user waits for$"]
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


def check_headlines(text: str) -> None:
    """Every headline once, near the top (before the setup), with a positive number."""
    top = text.split("## Setup", 1)[0]
    for name in HEADLINES:
        found = re.findall(rf"^{name}: (.+)$", top, re.MULTILINE)
        assert len(found) == 1, f"{name}: {found}"
        if name == "dlt_vs_end_to_end_1m" and importlib.util.find_spec("dlt") is None:
            assert found[0] == "–", found  # not measured without the bench extra
            continue
        assert re.fullmatch(r"\d+(?:\.\d+)?", found[0]) and float(found[0]) > 0, f"{name}: {found[0]}"
    for pattern in NEW_SECTIONS:
        assert re.search(pattern, text, re.MULTILINE), f"missing section {pattern!r}"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smoke_profile_writes_results(tmp_path: Path) -> None:
    before = COMMITTED.read_bytes() if COMMITTED.exists() else None
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    check_results_md(text)
    check_headlines(text)
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
    small = summary["small"]
    assert small["first"]["small_etl"]["counts"]["inserted"] == data["small"]["rows"]
    assert small["nochange"]["small_etl"]["counts"]["inserted"] == small["nochange"]["small_etl"]["counts"]["updated"] == 0
    assert small["nochange"]["small_sql"]["counts"] == {"inserted": 0, "updated": 0, "unchanged": data["small"]["rows"]}

    # The committed file is untouched, and (when present) has the same shape.
    assert (COMMITTED.read_bytes() if COMMITTED.exists() else None) == before
    if before is not None:
        check_results_md(before.decode())
