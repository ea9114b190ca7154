"""The Dagster UI as users use it: the demo_sales asset group in a real browser, against a
real dagster-webserver and dagster-daemon serving the seeded demo.

The tests share one set of services (starting them is the slow part) and run in file order:
the graph, the schedule toggle, then one launch of a single partition and one backfill, whose
results the last tests read.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import InstigatorType

from etl_assets import quality
from etl_assets.orchestration.assets import LAYERS, asset_key
from etl_assets_tests.dagster_services import DagsterServices

from .conftest import demo_spec, expect, instance_of, open_page, shoot, start_demo_services

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 420  # seconds; a run here is a few minutes of step subprocesses on two cores


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> Iterator[DagsterServices]:
    with start_demo_services(tmp_path_factory.mktemp("ui")) as s:
        yield s


def group_url(services: DagsterServices) -> str:
    return f"{services.url}/locations/etl_assets/asset-groups/demo_sales"


# --- the asset graph -------------------------------------------------------------------------


@dataclass
class Box:
    x: float
    y: float
    w: float
    h: float
    key: str = ""

    def right_edge_holds(self, px: float, py: float) -> bool:
        return abs(self.x + self.w - px) <= 3 and self.y <= py <= self.y + self.h

    def left_edge_holds(self, px: float, py: float) -> bool:
        return 0 <= self.x - px <= 12 and self.y <= py <= self.y + self.h


def graph_edges(page) -> tuple[list[Box], set[tuple[str, str]]]:
    """The boxes and arrows of the lineage graph, each box named by the asset key that the
    side panel shows when a user clicks it."""
    canvas = page.locator("svg[class*=svgContainer]")
    nodes = canvas.locator("foreignObject")
    boxes = [
        Box(*(float(v) for v in xywh))
        for xywh in nodes.evaluate_all(
            "fs => fs.map(f => ['x', 'y', 'width', 'height'].map(a => f.getAttribute(a)))"
        )
    ]
    # Arrows, read while the whole graph is in view: "M x1,y1 C … x2,y2" from box to box.
    arrows = []
    for d in canvas.locator("path").evaluate_all("ps => ps.map(p => p.getAttribute('d'))"):
        m = re.fullmatch(r"M([\d.]+),([\d.]+)C.*?([\d.]+),([\d.]+)", d or "")
        if m:
            arrows.append((d, *map(float, m.groups())))
    for box in boxes:
        canvas.locator(f"foreignObject[x='{box.x:g}'][y='{box.y:g}']").click()
        heading = page.get_by_text(re.compile(r"^demo_sales( / \w+)+$")).first
        expect(heading).to_be_visible()
        box.key = heading.inner_text().replace(" / ", "/")
        canvas.click(position={"x": 3, "y": 3})  # deselect: the side panel closes
        expect(heading).to_be_hidden()
    edges = set()
    for d, x1, y1, x2, y2 in arrows:
        src = [b.key for b in boxes if b.right_edge_holds(x1, y1)]
        dst = [b.key for b in boxes if b.left_edge_holds(x2, y2)]
        assert len(src) == 1 and len(dst) == 1, f"an arrow {d} that joins no two boxes"
        edges.add((src[0], dst[0]))
    return boxes, edges


def test_asset_group_graph_shows_every_layer_of_every_source(services: DagsterServices, page) -> None:
    spec = demo_spec()
    sources = [s.name for s in spec.sources]
    assert {"orders", "products"} <= set(sources)

    open_page(page, group_url(services))
    expect(page.get_by_role("tab", name="Lineage")).to_be_visible()
    canvas = page.locator("svg[class*=svgContainer]")
    expect(canvas.locator("foreignObject")).to_have_count(4 * len(sources) + 1, timeout=180_000)
    # Each source shows as four boxes named after it, and one box is the report.
    for name in sources:
        expect(canvas.get_by_text(name, exact=True)).to_have_count(4)
    expect(canvas.get_by_text("report", exact=True)).to_have_count(1)
    # The four boxes of a source are told apart by their layer, written on each box.
    boxes = canvas.locator("foreignObject")
    for name in sources:
        of_source = boxes.filter(has=page.get_by_text(name, exact=True))
        for layer in LAYERS:
            expect(of_source.filter(has=page.get_by_text(layer, exact=True))).to_have_count(1)
    shoot(page, "01-asset-graph")

    boxes, edges = graph_edges(page)
    keys = {b.key for b in boxes}
    expected_keys = {f"demo_sales/{layer}/{s}" for s in sources for layer in LAYERS} | {"demo_sales/report"}
    assert keys == expected_keys
    chains = set()
    for s in sources:
        chain = [f"demo_sales/{layer}/{s}" for layer in LAYERS] + ["demo_sales/report"]
        chains |= set(zip(chain, chain[1:]))
    # A blocking relationship check waits for the other source's load: one more arrow each
    # (a warn one reads what the warehouse holds and waits for nothing).
    related = {
        (f"demo_sales/loaded/{c.to.source}", f"demo_sales/validated/{s.name}")
        for s in spec.sources for c in s.checks
        if getattr(c, "type", None) == "relationship" and c.severity != "warn"
    }
    assert edges == chains | related
    # Left to right: raw, normalized, validated, loaded, report.
    column = {b.key: b.x for b in boxes}
    for s in sources:
        xs = [column[f"demo_sales/{layer}/{s}"] for layer in LAYERS] + [column["demo_sales/report"]]
        assert xs == sorted(xs) and len(set(xs)) == len(xs), xs


# --- the schedule toggle ----------------------------------------------------------------------


def schedule_status(services: DagsterServices, name: str) -> str | None:
    with instance_of(services) as instance:
        for state in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE):
            if state.name == name:
                return state.status.value
    return None


def switch(checkbox):
    """The switch a user clicks: the label drawn around the (hidden) checkbox."""
    return checkbox.locator("xpath=ancestor::label[1]")


def test_schedule_toggles_off_and_on_from_the_ui(services: DagsterServices, page) -> None:
    name = "demo_sales_schedule"
    open_page(page, f"{services.url}/automation")
    page.get_by_role("link", name=name).click()
    expect(page).to_have_url(re.compile(rf"/schedules/{name}$"))
    toggle = page.get_by_role("checkbox")
    expect(toggle).to_have_count(1)
    expect(toggle).to_be_checked()  # the spec's default: enabled
    assert schedule_status(services, name) in (None, "DECLARED_IN_CODE", "RUNNING")

    switch(toggle).click()
    expect(toggle).not_to_be_checked()
    deadline = time.monotonic() + 30
    while schedule_status(services, name) != "STOPPED" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert schedule_status(services, name) == "STOPPED"
    page.reload()
    expect(page.get_by_role("checkbox")).not_to_be_checked()
    shoot(page, "02-schedule-stopped")

    toggle = page.get_by_role("checkbox")
    switch(toggle).click()
    expect(toggle).to_be_checked()
    deadline = time.monotonic() + 30
    while schedule_status(services, name) != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert schedule_status(services, name) == "RUNNING"
    page.reload()
    expect(page.get_by_role("checkbox")).to_be_checked()
    shoot(page, "03-schedule-running")


# --- a run, a backfill, their checks and the report --------------------------------------------


def recent_keys(n: int) -> list[str]:
    """The latest n complete weekly partitions: the demo's seeded weeks."""
    from etl_assets.core.partitions import partitions_def

    return partitions_def(demo_spec()).get_partition_keys()[-n:]


def open_materialize_dialog(page, services: DagsterServices, selection: str):
    open_page(page, group_url(services))
    page.get_by_role("button", name=re.compile(r"Materialize all")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(re.compile(r"Launch runs to materialize \d+ assets"))).to_be_visible()
    partitions = dialog.get_by_role("textbox")
    partitions.fill(selection)
    partitions.press("Enter")
    return dialog


def wait_backfill(services: DagsterServices, backfill_id: str, timeout: float = RUN_TIMEOUT) -> str:
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        status = services.graphql(
            "query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }",
            {"id": backfill_id},
        )["partitionBackfillOrError"].get("status", "?")
        if status not in ("REQUESTED", "CANCELING"):
            return status
        time.sleep(2)
    raise TimeoutError(f"backfill {backfill_id} still {status}:\n{services.log_tail()}")


@dataclass
class Launched:
    run_id: str = ""
    partition: str = ""
    backfill_id: str = ""
    backfill_keys: tuple[str, ...] = ()


@pytest.fixture(scope="module")
def launched() -> Launched:
    return Launched()


def test_materialize_one_partition_and_backfill_four_weeks_from_the_ui(
    services: DagsterServices, page, launched: Launched
) -> None:
    *weeks, latest = recent_keys(5)
    assert len(weeks) == 4
    n_assets = 4 * len(demo_spec().sources) + 1

    # One partition: Materialize all… → type the partition → Launch 1 run.
    dialog = open_materialize_dialog(page, services, latest)
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    dialog.get_by_role("button", name="Launch 1 run").click()
    expect(page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}"))).to_be_visible()
    page.get_by_role("link", name="View", exact=True).click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    launched.run_id, launched.partition = page.url.rsplit("/", 1)[-1], latest
    expect(page.get_by_text(f"partition: {latest}").first).to_be_visible()

    # Four weeks at once: the preview says every asset backfills in a single run.
    selection = f"[{weeks[0]}...{weeks[-1]}]"
    dialog = open_materialize_dialog(page, services, selection)
    expect(dialog.get_by_text("4 partitions", exact=True)).to_be_visible()
    dialog.get_by_role("button", name="Preview").click()
    preview = page.get_by_role("dialog").filter(has_text="Backfill preview")
    expect(preview.get_by_text("Backfills all partitions in a single run")).to_have_count(n_assets)
    expect(preview.get_by_text(f"{weeks[0]}...{weeks[-1]}", exact=True)).to_have_count(n_assets)
    shoot(page, "04-backfill-preview")
    preview.get_by_role("button", name="OK").click()
    dialog.get_by_role("button", name="Launch backfill").click()
    created = page.get_by_text(re.compile(r"^Created backfill \w+"))
    expect(created).to_be_visible()
    page.get_by_role("link", name="View", exact=True).click()
    expect(page).to_have_url(re.compile(r"/runs/b/\w+$"))
    launched.backfill_id, launched.backfill_keys = page.url.rsplit("/", 1)[-1], tuple(weeks)

    # The run: the user watches its page turn to Success.
    assert services.wait_run(launched.run_id, timeout=RUN_TIMEOUT) == "SUCCESS", services.log_tail()
    open_page(page, f"{services.url}/runs/{launched.run_id}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    expect(page.get_by_text(f"{n_assets} assets", exact=True)).to_be_visible()
    expect(page.get_by_text(f"Succeeded ({n_assets})", exact=True)).to_be_visible()
    expect(page.get_by_text("Errored (0)", exact=True)).to_be_visible()
    expect(page.get_by_text("Loading run logs…")).to_have_count(0, timeout=180_000)
    shoot(page, "05-run-success")

    # The backfill: its page says Succeeded, every asset 4 of 4, and it made one run.
    assert wait_backfill(services, launched.backfill_id) == "COMPLETED_SUCCESS", services.log_tail()
    open_page(page, f"{services.url}/runs/b/{launched.backfill_id}")
    expect(page.get_by_text("Succeeded", exact=True).first).to_be_visible()
    expect(page.get_by_text(selection.strip("[]"), exact=True).first).to_be_visible()
    expect(page.get_by_text("100% completed", exact=True)).to_have_count(n_assets)
    shoot(page, "06-backfill-completed")
    with instance_of(services) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": launched.backfill_id}))
        assert len(runs) == 1, [r.run_id for r in runs]
        [run] = runs
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == (
            weeks[0], weeks[-1]
        )
        for source in demo_spec().sources:
            key = asset_key("demo_sales", "loaded", source.name)
            assert set(weeks) | {latest} <= instance.get_materialized_partitions(key), key
        assert set(weeks) | {latest} <= instance.get_materialized_partitions(asset_key("demo_sales", "report"))
    page.get_by_role("tab", name="Runs").click()
    run_links = page.locator("a[href^='/runs/']").filter(has_text=re.compile(r"^[0-9a-f]{8}$"))
    expect(run_links).to_have_count(1)
    expect(run_links).to_have_text(run.run_id[:8])
    shoot(page, "07-backfill-one-run")


def check_item(page, name: str):
    """A check in the asset's Checks list: its name, then its latest result."""
    return page.get_by_title(name, exact=True).locator("xpath=..")


def test_check_results_show_on_validated(services: DagsterServices, page, launched: Launched) -> None:
    assert launched.run_id, "needs the runs launched by the previous test"
    for source in demo_spec().sources:
        key = asset_key("demo_sales", "validated", source.name)
        names = [c.name for c in quality.check_specs(key, source)]
        if not names:
            continue
        open_page(page, f"{services.url}/assets/{'/'.join(key.path)}?view=checks")
        expect(page.get_by_text(f"Checks ({len(names)})", exact=True)).to_be_visible()
        for name in names:
            expect(check_item(page, name).get_by_text(re.compile(r"^(Succeeded|Failed)$"))).to_be_visible()
        shoot(page, f"08-checks-{source.name}")

    # The demo's orders lack a customer id here and there: a warning, which does not block.
    open_page(page, f"{services.url}/assets/demo_sales/validated/orders?view=checks")
    item = check_item(page, "not_null_customer_id")
    expect(item.get_by_text("Failed", exact=True)).to_be_visible()
    item.click()
    expect(page.get_by_text("This is a non-blocking asset check.")).to_be_visible()
    item = check_item(page, "unique_key")
    expect(item.get_by_text("Succeeded", exact=True)).to_be_visible()
    item.click()
    expect(page.get_by_text("This is a blocking asset check.")).to_be_visible()
    expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
    # Its execution history links each result to its run: the single-partition run is there.
    page.get_by_role("tab", name="Execution history").click()
    expect(page.locator(f"a[href^='/runs/{launched.run_id}']").first).to_be_visible()
    shoot(page, "09-check-history")


def test_report_markdown_renders_on_the_report_asset(services: DagsterServices, page, launched: Launched) -> None:
    assert launched.run_id, "needs the runs launched by a previous test"
    spec = demo_spec()
    open_page(page, f"{services.url}/assets/demo_sales/report")
    expect(page.get_by_text("Latest materialization")).to_be_visible()
    page.get_by_text("[Show Markdown]").first.click()
    report = page.get_by_role("dialog")
    expect(report.get_by_role("heading", name=spec.report.title)).to_be_visible()
    # The window in words, in the pipeline's time, when it was made and by which run.
    text = report.inner_text()
    assert re.search(r"weeks? of \d{1,2} \w{3} \d{4}.*, São Paulo time", text), text[:300]
    assert re.search(r"Generated \d{1,2} \w{3} \d{4}, \d\d:\d\d São Paulo time", text), text[-300:]
    run_link = report.get_by_role("link", name=re.compile(r"^run [0-9a-f]{8}$"))
    expect(run_link).to_have_count(1)
    assert re.search(r"/runs/[0-9a-f-]{36}$", run_link.get_attribute("href") or "")
    for kpi in spec.report.kpis:
        expect(report.get_by_role("heading", name=kpi.title or kpi.name)).to_be_visible()
    # The revenue-by-category KPI table, with a row per category.
    table = report.get_by_role("table").filter(has=page.get_by_role("columnheader", name="category"))
    expect(table).to_have_count(1)
    expect(table.get_by_role("columnheader", name="revenue")).to_be_visible()
    assert table.get_by_role("row").count() >= 2
    # Money as a reader writes it: thousands separated, two decimals.
    revenues = table.get_by_role("row").nth(1).get_by_role("cell").nth(2).inner_text()
    assert re.fullmatch(r"\d{1,3}(,\d{3})*\.\d\d", revenues), revenues
    # Top customers by name, not by ID.
    customers = report.get_by_role("table").filter(has=page.get_by_role("columnheader", name="customer", exact=True))
    expect(customers).to_have_count(1)
    # Each KPI chart: an embedded PNG the browser decoded, under the KPI's title.
    charts = [kpi for kpi in spec.report.kpis if kpi.chart]
    assert charts
    for kpi in charts:
        img = report.get_by_role("img", name=kpi.title or kpi.name)
        expect(img).to_be_visible()
        assert (img.get_attribute("src") or "").startswith("data:image/png;base64,")
        assert img.evaluate("e => e.complete && e.naturalWidth > 0 && e.naturalHeight > 0")
    report.get_by_role("heading", name=spec.report.title).scroll_into_view_if_needed()
    shoot(page, "10-report")  # title, the first KPI table and its chart
    report.get_by_role("heading", name="Quality").scroll_into_view_if_needed()
    shoot(page, "11-report-quality")
