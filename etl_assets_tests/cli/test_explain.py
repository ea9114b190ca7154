"""`etl-assets show`: only what this run did, in the order it did it."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from etl_assets.definitions import build_defs
from etl_assets.orchestration.runner import run_pipeline
from etl_assets_tests.helpers import create_orders, make_spec

NY = ZoneInfo("America/New_York")
WEEKS = ["2025-03-02", "2025-03-09"]


def section(text: str, heading: str) -> list[str]:
    lines = text.split(f"\n{heading}\n", 1)[1].split("\n\n", 1)[0]
    return lines.splitlines()


def test_show_lists_this_runs_steps_checks_and_files(etl_env, tmp_path: Path, etl_cli) -> None:
    folder = tmp_path / "csv"
    folder.mkdir()
    items = folder / "items.csv"
    items.write_text("sku,qty\nA,1\nB,2\n")
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["retries"] = {"max": 0}
    data["sources"][0]["checks"].append({"type": "not_null", "column": "customer", "severity": "warn"})
    data["sources"].append(
        {
            "name": "items", "kind": "csv", "path": str(folder / "*.csv"), "mode": "full",
            "primary_key": ["sku"], "columns": [{"name": "sku"}, {"name": "qty", "type": "integer"}],
            "load": {"target": "mart.items"},
        }
    )
    spec = type(make_spec()).model_validate(data)
    start = dt.datetime(2025, 3, 2, 1, tzinfo=NY)
    nulls = {3, 25, 30}  # one in the first week, two in the second
    create_orders(
        etl_env["TEST_SOURCE_URL"],
        [(i, None if i in nulls else f"c{i}", "1.00", start + i * dt.timedelta(hours=8)) for i in range(1, 41)],
    )
    with dg.instance_for_test() as instance:
        first = run_pipeline(build_defs([spec]), spec, WEEKS, instance=instance)
        assert first.status == "success"
        items.write_text("sku,qty\nA,1\nB,two\n")  # the items feed breaks
        second = run_pipeline(build_defs([spec]), spec, WEEKS, instance=instance)
        ran = [e.step_key for e in instance.all_logs(second.run_id, of_type=dg.DagsterEventType.STEP_START)]
    assert second.status == "partial"

    etl_cli.write_spec(spec)
    shown = etl_cli("show", second.run_id)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout

    # Steps in the order they ran, then the ones that did not, with the reason.
    steps = [line for line in section(text, "What ran") if line.startswith("  step ")]
    assert [line.split()[1].rstrip(":") for line in steps[: len(ran)]] == ran
    assert steps[len(ran):] == [
        "  step shop__validated__items: not run (skipped because upstream shop__normalized__items failed)",
        "  step shop__loaded__items: not run (skipped because upstream shop__normalized__items failed)",
        "  step shop__report: not run (skipped because upstream shop__normalized__items failed)",
    ]
    assert not any(": ?" in line for line in steps)

    # The warning once, with each partition it concerns.
    checks = section(text, "Checks and failures")
    warned = [i for i, line in enumerate(checks) if "orders.not_null_customer warned" in line]
    assert len(warned) == 1
    assert checks[warned[0]].endswith("— 3 unexpected in 2 of 2 partition(s)")
    assert checks[warned[0] + 1].startswith("    2025-03-02: 1 unexpected")
    assert checks[warned[0] + 2].startswith("    2025-03-09: 2 unexpected")

    # Values as written: nulls counted, not listed as None.
    assert checks[warned[0] + 2] == "    2025-03-09: 2 unexpected (e.g. 2 nulls)"

    # Times to the second, in the pipeline's timezone and in UTC.
    started = section(text, "When")[0]
    assert re.fullmatch(r"  started  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d E[SD]T \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)", started)

    # The query one clause a line, under its source.
    inputs = section(text, "Inputs")
    at = inputs.index("    query:")
    assert inputs[at + 1].startswith("      SELECT ")
    assert inputs[at + 2].startswith('      FROM "src"."orders"')
    assert inputs[at + 3].startswith('      WHERE "updated_at" >= ')

    # Steps name their partitions.
    assert steps[0].endswith(", partitions 2025-03-02 … 2025-03-09")

    # Produced, by default: per layer, how many files, their size and one of them.
    base = etl_env["ETL_STORAGE_DIR"]
    summary = section(text, "Produced")
    raw = next(line for line in summary if line.startswith("  raw: "))
    assert re.fullmatch(rf"  raw: 4 files, [\d.,]+ (bytes|KB), e\.g\. {re.escape(base)}/shop/raw/\w+/2025-03-0\d\.parquet", raw)
    assert not any(line.startswith("  normalized: ") and "items" in line for line in summary)

    # Produced, with --files: the files this run wrote, not what an earlier run left behind.
    listed = etl_cli("show", second.run_id, "--files")
    assert listed.returncode == 0, listed.stderr
    produced = section(listed.stdout, "Produced")
    for k in WEEKS:
        assert f"  {base}/shop/raw/items/{k}.parquet" in produced
        assert f"  {base}/shop/validated/orders/{k}.parquet" in produced
        assert Path(f"{base}/shop/normalized/items/{k}.parquet").exists()  # from the first run
    assert not any("/normalized/items/" in p or "/validated/items/" in p for p in produced)
    assert not any("/reports/" in p and "report:" not in p for p in produced)
