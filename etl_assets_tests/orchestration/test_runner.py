"""One interpretation of a run: the summary, history, `show`, alerts and the report agree."""

from __future__ import annotations

import datetime as dt
import json
import re
import resource
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg

from etl_assets.cli.summary import format_summary
from etl_assets.definitions import build_defs
from etl_assets.orchestration.runner import run_pipeline
from etl_assets.spec import PipelineSpec
from etl_assets_tests.helpers import create_orders, make_spec, query

NY = ZoneInfo("America/New_York")
WEEKS = ["2025-03-02", "2025-03-09", "2025-03-16"]
COUNTS = ("rows_extracted", "inserted", "updated", "unchanged", "deleted")


def two_source_spec(folder: Path, slack_url: str) -> PipelineSpec:
    (folder / "items.csv").write_text("sku,qty\nA,1\nB,2\nC,3\nD,4\n")
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["retries"] = {"max": 0}
    data["sources"].append(
        {
            "name": "items", "kind": "csv", "path": str(folder / "*.csv"), "mode": "full",
            "primary_key": ["sku"], "columns": [{"name": "sku"}, {"name": "qty", "type": "integer"}],
            "load": {"target": "mart.items"},
        }
    )
    data["notify"] = {
        "slack": {"channel": "#data", "on": ["success"], "api_url": slack_url},
        "email": {"to": ["data@example.com"], "on": ["success"]},
    }
    return type(make_spec()).model_validate(data)


def cpu_seconds() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def step_cpu(instance: dg.DagsterInstance, run_id: str) -> float:
    """Each step measures its CPU once, however many partitions its materializations name."""
    per_step: dict[str, float] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        value = entry.asset_materialization.metadata.get("etl/cpu_s")
        if value is not None:
            per_step[entry.step_key] = value.value
    return sum(per_step.values())


def test_summary_history_show_alerts_and_report_agree_over_three_weeks(
    etl_env, tmp_path: Path, slack_stub, smtp_stub, monkeypatch, etl_cli
) -> None:
    from etl_assets.ops.notify import EmailNotifier, SlackNotifier

    folder = tmp_path / "csv"
    folder.mkdir()
    spec = two_source_spec(folder, slack_stub.base_url)
    start = dt.datetime(2025, 3, 2, 1, tzinfo=NY)
    create_orders(
        etl_env["TEST_SOURCE_URL"],
        [(i, f"c{i % 5}", f"{i}.25", start + i * dt.timedelta(hours=8)) for i in range(1, 61)],
    )
    notifiers = {
        "slack": SlackNotifier(token="xoxb-outcome", base_url=slack_stub.base_url),
        "email": EmailNotifier(host=smtp_stub.host, port=smtp_stub.port, sender="etl@example.com"),
    }
    with dg.instance_for_test() as instance:
        before = cpu_seconds()
        summary = run_pipeline(build_defs([spec]), spec, WEEKS, instance=instance, notifiers=notifiers)
        process_cpu = cpu_seconds() - before
        measured_cpu = step_cpu(instance, summary.run_id)
    assert summary.status == "success"
    wh = etl_env["ETL_WAREHOUSE_URL"]

    # The truth, from the warehouse and the inputs: 60 orders over the three weeks; the full
    # source's 4 items read once per partition, inserted by the first.
    assert query(wh, "SELECT count(*) FROM mart.orders") == [(60,)]
    truth = {
        "orders": {"rows_extracted": 60, "inserted": 60, "updated": 0, "unchanged": 0, "deleted": 0},
        "items": {"rows_extracted": 12, "inserted": 4, "updated": 0, "unchanged": 8, "deleted": 0},
    }
    as_json = summary.as_dict()
    assert {n: {f: s[f] for f in COUNTS} for n, s in as_json["sources"].items()} == truth
    text = format_summary(summary)
    assert "orders           success  extracted 60  inserted 60  updated 0  unchanged 0" in text
    assert "items            success  extracted 12  inserted 4  updated 0  unchanged 8" in text

    with psycopg.connect(wh) as conn:
        stored = conn.execute(
            "SELECT source, rows_extracted, inserted, updated, unchanged, deleted FROM etl_meta.run_sources"
            " WHERE run_id = %s ORDER BY source", (summary.run_id,),
        ).fetchall()
        [(cpu_s,)] = conn.execute("SELECT cpu_s FROM etl_meta.runs WHERE run_id = %s", (summary.run_id,)).fetchall()
    assert {r[0]: dict(zip(COUNTS, r[1:])) for r in stored} == truth

    # CPU: each step once, never once per partition, and never more than the process spent.
    assert cpu_s == round(measured_cpu, 3)
    assert 0 < cpu_s <= process_cpu

    etl_cli.write_spec(spec)
    hist = etl_cli("history", "shop", "--json")
    assert hist.returncode == 0, hist.stderr
    [run] = json.loads(hist.stdout)
    assert run["run_id"] == summary.run_id and run["cpu_s"] == cpu_s
    assert {n: {f: s[f] for f in COUNTS} for n, s in run["sources"].items()} == truth

    shown = etl_cli("show", summary.run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert {n: {f: s[f] for f in COUNTS} for n, s in json.loads(shown.stdout)["sources"].items()} == truth
    explained = etl_cli("show", summary.run_id)
    assert "  orders: success; extracted 60, inserted 60, updated 0, unchanged 0, deleted 0" in explained.stdout
    assert "  items: success; extracted 12, inserted 4, updated 0, unchanged 8, deleted 0" in explained.stdout

    [post] = slack_stub.posts
    assert "*orders* success: 60 extracted, 60 inserted, 0 updated, 0 unchanged, 0 deleted" in post["text"]
    assert "*items* success: 12 extracted, 4 inserted, 0 updated, 8 unchanged, 0 deleted" in post["text"]
    [mail] = smtp_stub.messages
    body = mail.message.get_body(("plain",)).get_content()
    assert "orders (success): 60 extracted, 60 inserted, 0 updated, 0 unchanged, 0 deleted" in body
    assert "items (success): 12 extracted, 4 inserted, 0 updated, 8 unchanged, 0 deleted" in body

    # Each partition's report: its own counts, which add up to the run's.
    reports = [Path(etl_env["ETL_STORAGE_DIR"]) / "shop" / "reports" / f"{k}.md" for k in WEEKS]
    totals = {n: dict.fromkeys(COUNTS, 0) for n in truth}
    for path in reports:
        for name in truth:
            [row] = re.findall(rf"^\| {name} \| success \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|", path.read_text(), re.MULTILINE)
            for f, v in zip(COUNTS, row):
                totals[name][f] += int(v)
    assert totals == truth
