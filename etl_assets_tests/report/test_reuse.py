"""A report re-renders only what changed (issue 18), on real PostgreSQL and a real instance.

A chart whose data did not change is reused as first drawn, and the report says so; the event
log is read once per layer for all the run's partitions, with the same answers as one read
per partition.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from upath import UPath

from etl_assets.core.keys import asset_key
from etl_assets.core.partitions import partitions_def
from etl_assets.io import contract
from etl_assets.report import charts, partition
from etl_assets.spec import PipelineSpec
from etl_assets_tests.helpers import create_orders, make_spec, materialize, meta, ny, orders_rows

WEEKS = ["2025-03-02", "2025-03-09"]
RANGE = {"dagster/asset_partition_range_start": WEEKS[0], "dagster/asset_partition_range_end": WEEKS[-1]}
REPORT = asset_key("shop", "report")
# 20 orders 12 hours apart from 2 Mar 2025: 13 in the week of 2 March, 7 in the week of 9 March.
ORDERS = orders_rows(20, ny(2025, 3, 2, 1), dt.timedelta(hours=12))


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def charted_spec() -> PipelineSpec:
    """The test pipeline with a charted KPI: two charts per partition (KPI, trend), one per range."""
    return make_spec(report={"kpis": [{
        "name": "revenue_by_customer", "title": "Revenue by customer",
        "sql": "SELECT customer, count(*) AS orders, sum(amount) AS revenue FROM mart.orders "
               "WHERE updated_at >= :window_start AND updated_at < :window_end GROUP BY customer ORDER BY customer",
        "chart": {"type": "bar", "x": "customer", "y": "revenue"},
    }]})


def add_order(url: str, order_id: int, at: dt.datetime) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO src.orders VALUES (%s, 'cust1', 1.00, %s)", (order_id, at))


def reports(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """Each partition's Markdown report as the step wrote it."""
    paths = meta(result, REPORT)[contract.REPORT_PATHS]
    return {k: Path(p["md"]).read_text() for k, p in paths.items()}


def figures(md: str) -> tuple[str, str]:
    """What a rerun of the same data must show again: the headline and KPIs (tables and chart),
    and the rows-per-partition chart, without the lines saying a chart was reused."""
    lines = [x for x in md.splitlines() if x and not x.startswith("_Chart unchanged since ")]
    kpis = "\n".join(lines[: lines.index("## Sources")])
    return kpis, next(x for x in lines if x.startswith("![Rows per partition]"))


def test_a_no_change_rerun_reuses_every_chart_and_a_change_redraws_only_its_own(
    etl_env, instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_orders(etl_env["TEST_SOURCE_URL"], ORDERS)
    spec = charted_spec()
    first = materialize(spec, etl_env, instance, tags=RANGE)
    assert first.success
    m = meta(first, REPORT)
    assert (m[contract.CHARTS_DRAWN], m[contract.CHARTS_REUSED]) == (5, 0)
    before = reports(first)
    assert "| orders | success | 13 | 13 | 0 | 0 | 0 | 0 |" in before["2025-03-02"]
    assert "Chart unchanged" not in before["2025-03-02"]

    # Nothing changed: no figure is drawn at all, and the reports read the same.
    def no_figure(height: float) -> Any:
        raise AssertionError("a chart was drawn on a no-change rerun")

    with monkeypatch.context() as patched:
        patched.setattr(charts, "_figure", no_figure)
        again = materialize(spec, etl_env, instance, tags=RANGE)
    assert again.success
    m = meta(again, REPORT)
    assert (m[contract.CHARTS_DRAWN], m[contract.CHARTS_REUSED]) == (0, 5)
    after = reports(again)
    for k in WEEKS:
        assert figures(after[k]) == figures(before[k])
        notes = [x for x in after[k].splitlines() if x.startswith("_Chart unchanged since ")]
        assert len(notes) == 2 and all(x.endswith(" New York time_") for x in notes), notes
    assert "| orders | success | 13 | 0 | 0 | 13 | 0 | 0 |" in after["2025-03-02"]
    page = Path(m[contract.REPORT_PATHS]["2025-03-09"]["html"]).read_text()
    assert page.count('<p class="meta">Chart unchanged since ') == 2
    assert "_Chart unchanged since " in m[contract.REPORT]  # the range's KPI chart, in the UI

    # One more order in the week of 9 March: that week's trend and KPI charts and the range's
    # KPI chart are drawn again; the week of 2 March keeps its charts.
    add_order(etl_env["TEST_SOURCE_URL"], 21, ny(2025, 3, 12, 9))
    changed = materialize(spec, etl_env, instance, tags=RANGE)
    assert changed.success
    m = meta(changed, REPORT)
    assert (m[contract.CHARTS_DRAWN], m[contract.CHARTS_REUSED]) == (3, 2)
    now = reports(changed)
    assert "Chart unchanged" not in now["2025-03-09"]
    assert now["2025-03-02"].count("_Chart unchanged since ") == 2
    assert "| orders | success | 8 | 1 | 0 | 7 | 0 | 0 |" in now["2025-03-09"]
    # The charts the old week-of-9-March reports showed are gone; every report keeps its own.
    kept = sorted(p.name.split(".")[0] for p in (Path(etl_env["ETL_STORAGE_DIR"]) / "shop" / "reports" / ".charts").iterdir())
    assert kept == ["2025-03-02", "2025-03-02", "2025-03-02_2025-03-09", "2025-03-09", "2025-03-09"]


def test_batched_reads_give_what_one_read_per_partition_gives(etl_env, instance, monkeypatch: pytest.MonkeyPatch) -> None:
    create_orders(etl_env["TEST_SOURCE_URL"], ORDERS)
    spec = make_spec()
    assert materialize(spec, etl_env, instance, tags=RANGE).success
    # The week of 9 March again, with one more order: its newer materializations must win.
    add_order(etl_env["TEST_SOURCE_URL"], 21, ny(2025, 3, 12, 9))
    assert materialize(spec, etl_env, instance, partition_key=WEEKS[1]).success
    assert materialize(spec, etl_env, instance, partition_key=WEEKS[1]).success

    source = spec.sources[0]
    keys = partitions_def(spec).get_partition_keys()
    reads = partition.read_layers(instance, spec, WEEKS, partition.trend_union(keys, WEEKS))
    batched = {k: partition.source_summary(instance, spec, source, k, reads) for k in WEEKS}
    assert {k: partition.source_summary(instance, spec, source, k) for k in WEEKS} == batched
    # The newest materialization of each layer, as `contract.recorded` reads it one at a time.
    for k in WEEKS:
        load = contract.recorded(instance, asset_key("shop", "loaded", "orders"), k)
        raw = contract.recorded(instance, asset_key("shop", "raw", "orders"), k)
        counts = load.for_partition(contract.COUNTS_BY_PARTITION, k)
        assert batched[k].rows_extracted == raw.for_partition(contract.ROWS_BY_PARTITION, k)
        assert (batched[k].inserted, batched[k].unchanged) == (counts["inserted"], counts["unchanged"])
    assert (batched["2025-03-09"].rows_extracted, batched["2025-03-09"].inserted, batched["2025-03-09"].unchanged) == (8, 0, 8)
    assert (batched["2025-03-02"].inserted, batched["2025-03-02"].unchanged) == (13, 0)

    trend = partition.row_trend(instance, spec, partitions_def(spec), WEEKS[1], reads=reads)
    assert trend == partition.row_trend(instance, spec, partitions_def(spec), WEEKS[1])
    assert trend == {"orders": [("2025-03-02", 13), ("2025-03-09", 8)]}

    # Pages of one record each: every partition's newest is still found, past the older ones.
    monkeypatch.setattr(partition, "PAGE", 1)
    paged = partition.read_layers(instance, spec, WEEKS, partition.trend_union(keys, WEEKS))
    assert {k: partition.source_summary(instance, spec, source, k, paged) for k in WEEKS} == batched
    assert partition.row_trend(instance, spec, partitions_def(spec), WEEKS[1], reads=paged) == trend


def test_a_damaged_kept_chart_is_drawn_again_not_shown(tmp_path: Path) -> None:
    trend = {"orders": [("2025-03-02", 13), ("2025-03-09", 7)]}
    first = charts.ChartStore(UPath(tmp_path))
    drawn = charts.trend_chart(first, WEEKS[1], trend)
    assert drawn is not None and not drawn.reused
    (kept,) = tmp_path.iterdir()
    kept.write_bytes(kept.read_bytes()[:200])  # cut short, as by a full disk
    again = charts.ChartStore(UPath(tmp_path))
    redrawn = charts.trend_chart(again, WEEKS[1], trend)
    assert redrawn is not None and not redrawn.reused and (again.drawn, again.reused) == (1, 0)
    third = charts.ChartStore(UPath(tmp_path))
    reused = charts.trend_chart(third, WEEKS[1], trend)
    assert reused is not None and reused.reused and reused.png == redrawn.png
