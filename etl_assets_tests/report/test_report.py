"""The report people read: numbers, the window in words, where it came from, the failure's
cause in full, and one report over a range of partitions."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from etl_assets import report
from etl_assets.core.partitions import partitions_def, window_for
from etl_assets.io.storage import ParquetIOManagerResource
from etl_assets.orchestration.assets import build_pipeline_assets
from etl_assets.orchestration.sensors import handle_run_finished
from etl_assets.report import ReportRun, SourceSummary
from etl_assets.warehouses.postgres import WarehouseResource
from etl_assets_tests.helpers import create_orders, make_spec

NY = dt.timezone(dt.timedelta(hours=-5))


def sao_paulo_spec():
    return make_spec(
        timezone="America/Sao_Paulo",
        report={
            "title": "Weekly sales",
            "kpis": [
                {
                    "name": "revenue_by_category",
                    "title": "Revenue by category",
                    "sql": "SELECT 1",
                    "chart": {"type": "bar", "x": "category", "y": "revenue"},
                }
            ],
        },
    )


def test_report_reads_like_a_memo() -> None:
    spec = sao_paulo_spec()
    pdef = partitions_def(spec)
    window, previous = window_for(pdef, "2026-11-22"), window_for(pdef, "2026-11-15")
    kpi = spec.report.kpis[0]
    now = pd.DataFrame(
        {"category": ["tea", "coffee"], "orders": [1200, 30], "revenue": [Decimal("13018.47"), Decimal("5.00")]}
    )
    before = pd.DataFrame({"category": ["tea"], "orders": [1000], "revenue": [Decimal("10000.00")]})
    orders = SourceSummary(
        "orders", rows_extracted=1230, inserted=1230, updated=0, unchanged=0, deleted=0, quarantined=0,
        checks=[{"name": "unique_pair", "severity": "warn", "passed": False, "unexpected_count": 2,
                 "samples": [{"customer_id": 3, "product_sku": "SKU-0001"}]}],
    )
    run = ReportRun(
        generated_at=dt.datetime(2026, 11, 30, 9, 5, tzinfo=dt.UTC),
        run_id="0123456789abcdef", run_url="http://127.0.0.1:3000/runs/0123456789abcdef",
    )
    md, page = report.render(
        spec, window, [(kpi, now)], [orders], previous=(previous, [(kpi, before)]), run=run,
        trend={"orders": [("2026-11-15", 1000), ("2026-11-22", 1230)], "products": []},
    )
    for text in (md, page):
        assert "week of 22 Nov 2026, São Paulo time" in text
        assert "T00:00:00" not in text and "Partition" not in text
        assert "Generated 30 Nov 2026, 06:05 São Paulo time" in text
        assert "http://127.0.0.1:3000/runs/0123456789abcdef" in text
        # Headline totals against the week before: 13,023.47 vs 10,000.00.
        assert "13,023.47" in text and "10,000.00" in text and "+30.2%" in text
        assert "data:image/png;base64," in text
        assert "customer_id=3, product_sku=SKU-0001" in text and "{'" not in text
    assert "| tea | 1,200 | 13,018.47 |" in md
    assert "| category | orders | revenue |\n| --- | ---: | ---: |" in md
    assert '<td class="num">13,018.47</td>' in page and '<td class="num">1,200</td>' in page


def test_charts_start_at_zero_and_name_every_source() -> None:
    spec = sao_paulo_spec()
    kpi = spec.report.kpis[0]
    fig = report.kpi_figure(pd.DataFrame({"category": ["a", "b"], "revenue": [100.0, 110.0]}), kpi)
    assert fig.axes[0].get_ylim()[0] == 0
    fig = report.trend_figure({"orders": [("2026-11-15", 90), ("2026-11-22", 100)], "products": [], "customers": []})
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["orders", "products", "customers"]


def orders(n: int, start: dt.datetime, step: dt.timedelta) -> list[tuple]:
    return [(i, f"cust{i % 7}", f"{i}.50", start + i * step) for i in range(1, n + 1)]


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def test_failed_report_names_the_check_and_its_cause_and_lists_the_checks(etl_env, instance) -> None:
    spec = make_spec(retries={"max": 0})
    data = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0]["checks"].append(
        {"type": "in_set", "column": "customer", "values": [f"cust{i}" for i in range(6)], "severity": "error"}
    )
    spec = type(spec).model_validate(data)
    create_orders(etl_env["TEST_SOURCE_URL"], orders(20, dt.datetime(2025, 3, 9, 1, tzinfo=NY), dt.timedelta(hours=3)))
    result = dg.materialize(
        build_pipeline_assets(spec), instance=instance, partition_key="2025-03-09", raise_on_error=False,
        resources={
            "parquet_io": ParquetIOManagerResource(base_path=etl_env["ETL_STORAGE_DIR"]),
            "warehouse": WarehouseResource(url=etl_env["ETL_WAREHOUSE_URL"]),
        },
    )
    assert not result.success
    record = handle_run_finished(instance, result.run_id, {"shop": spec}, warehouse_url=etl_env["ETL_WAREHOUSE_URL"])
    assert record["status"] == "failed"
    md = Path(record["report_path"]).with_suffix(".md").read_text()
    banner = next(line for line in md.splitlines() if line.startswith("> **FAILED**"))
    assert "blocking check in_set_customer failed" in banner, banner
    assert "3 of 20 rows" in banner and "cust6" in banner, banner
    assert not banner.rstrip().endswith(":"), banner
    # The failed source's checks are still listed, the failing one marked.
    assert "| orders | in_set_customer | error | FAIL | 3 |" in md
    assert "| orders | unique_key | error | PASS | 0 |" in md


def test_range_report_rolls_up_kpis_rows_and_distinct_orphans(etl_cli, etl_env, tmp_path: Path) -> None:
    folder = tmp_path / "customers"
    folder.mkdir()
    (folder / "customers.csv").write_text("name\n" + "".join(f"cust{i}\n" for i in range(5)))
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0]["checks"].append(
        {"type": "relationship", "column": "customer", "to": {"source": "customers", "column": "name"},
         "severity": "warn"}
    )
    data["sources"].append({"name": "customers", "kind": "csv", "path": str(folder / "*.csv"), "mode": "full",
                            "primary_key": ["name"], "columns": [{"name": "name"}]})
    spec = type(make_spec()).model_validate(data)
    etl_cli.write_spec(spec)
    # 40 orders, 6 hours apart from 9 Mar 2025: the weeks of 9 and 16 March, cust5 and cust6
    # (never loaded as customers) in both.
    create_orders(etl_env["TEST_SOURCE_URL"], orders(40, dt.datetime(2025, 3, 9, 1, tzinfo=NY), dt.timedelta(hours=6)))
    ran = etl_cli("run", "shop", "--from", "2025-03-09", "--to", "2025-03-16", "--json")
    assert ran.returncode == 0 and json.loads(ran.stdout)["status"] == "success", ran.stdout + ran.stderr

    out = etl_cli("report", "shop", "--from", "2025-03-09", "--to", "2025-03-16")
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip().splitlines()[-1].split(": ", 1)[-1])
    assert path.name == "2025-03-09_2025-03-16.html", out.stdout
    md = path.with_suffix(".md").read_text()
    assert "weeks of 9 Mar 2025 to 16 Mar 2025, New York time" in md
    # KPIs over the whole range: every order, the sum of 1.50 … 40.50.
    assert "| 40 | 840.00 |" in md
    # Rows per partition, each week on its own row, for every source.
    assert "| week of 9 Mar 2025 | 27 | 5 |" in md and "| week of 16 Mar 2025 | 13 | 5 |" in md
    # The relationship check over both weeks: its orphan rows add up, its orphan keys do not.
    line = next(x for x in md.splitlines() if x.startswith("| orders | relationship_customer"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[3:7] == ["WARN", "2 of 2", "11", "2"], line
    assert "cust5, cust6" in line
