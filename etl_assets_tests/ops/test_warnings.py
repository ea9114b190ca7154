"""What goes quietly wrong is said: runs whose warn checks failed, and failed schedule or sensor ticks."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from etl_assets.dagster_internal import run_scheduler_iteration
from etl_assets.definitions import build_defs
from etl_assets.ops.notify import EmailNotifier, SlackNotifier
from etl_assets.orchestration.sensors import handle_run_finished
from etl_assets.orchestration.tick_alerts import alert_failed_ticks, build_tick_sensor
from etl_assets.spec import PipelineSpec
from etl_assets_tests.helpers import create_orders, make_spec
from etl_assets_tests.stubs import SlackStub, SmtpServer

NY = ZoneInfo("America/New_York")
UTC = dt.UTC
WEEK = "2025-03-09"
TOKEN = "xoxb-warnings-5d1c9e"


def warn_spec(slack_stub: SlackStub, on: list[str]) -> PipelineSpec:
    """`shop` with a warn-severity not-null check on customer, alerting Slack and email `on`."""
    spec = make_spec()
    data = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0]["checks"].append({"type": "not_null", "column": "customer", "severity": "warn"})
    data["notify"] = {
        "slack": {"channel": "#data", "on": on, "api_url": slack_stub.base_url},
        "email": {"to": ["data@example.com"], "on": on},
    }
    return make_spec(**{k: data[k] for k in ("sources", "notify")})


def run_week(instance: dg.DagsterInstance, spec: PipelineSpec, key: str = WEEK) -> str:
    job = build_defs([spec]).resolve_job_def("shop_job")
    return job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False).run_id


def orders_with_two_missing_customers(url: str) -> None:
    start = dt.datetime(2025, 3, 10, 9, tzinfo=NY)
    create_orders(url, [
        (i, None if i < 2 else f"cust{i}", "12.50", start + dt.timedelta(hours=i)) for i in range(5)
    ])


def texts(slack_stub: SlackStub) -> list[str]:
    return [json.dumps(p, ensure_ascii=False) for p in slack_stub.posts]


@pytest.mark.parametrize("on", [["warning"], ["success", "warning"]])
def test_a_run_whose_warn_check_failed_alerts_with_check_and_counts(
    on: list[str], etl_env: dict[str, str], slack_stub: SlackStub, smtp_stub: SmtpServer
) -> None:
    spec = warn_spec(slack_stub, on)
    orders_with_two_missing_customers(etl_env["TEST_SOURCE_URL"])
    slack = SlackNotifier(token=TOKEN, base_url=slack_stub.base_url)
    email = EmailNotifier(host=smtp_stub.host, port=smtp_stub.port)
    with dg.instance_for_test() as instance:
        record = handle_run_finished(
            instance, run_week(instance, spec), {"shop": spec},
            warehouse_url=etl_env["ETL_WAREHOUSE_URL"], slack=slack, email=email,
        )
    assert record["status"] == "success"
    assert record["sources"]["orders"]["checks_warned"] == ["not_null_customer"]
    [post] = slack_stub.posts  # one message, whichever of the channel's events matched
    assert "orders: not_null_customer (2 of 5 rows)" in post["text"]
    [mail] = smtp_stub.messages
    assert "  - orders: not_null_customer (2 of 5 rows)" in mail.message.get_body(("plain",)).get_content()


def test_without_warning_in_on_a_warned_success_alerts_nobody(
    etl_env: dict[str, str], slack_stub: SlackStub, smtp_stub: SmtpServer
) -> None:
    spec = warn_spec(slack_stub, ["failure", "partial"])
    orders_with_two_missing_customers(etl_env["TEST_SOURCE_URL"])
    slack = SlackNotifier(token=TOKEN, base_url=slack_stub.base_url)
    email = EmailNotifier(host=smtp_stub.host, port=smtp_stub.port)
    with dg.instance_for_test() as instance:
        record = handle_run_finished(
            instance, run_week(instance, spec), {"shop": spec},
            warehouse_url=etl_env["ETL_WAREHOUSE_URL"], slack=slack, email=email,
        )
    assert record["status"] == "success" and record["sources"]["orders"]["checks_warned"]
    assert slack_stub.posts == [] and smtp_stub.messages == []


def test_a_clean_run_does_not_alert_warning(etl_env: dict[str, str], slack_stub: SlackStub) -> None:
    spec = warn_spec(slack_stub, ["warning"])
    start = dt.datetime(2025, 3, 10, 9, tzinfo=NY)
    create_orders(etl_env["TEST_SOURCE_URL"], [(1, "ann", "1.00", start)])
    slack = SlackNotifier(token=TOKEN, base_url=slack_stub.base_url)
    with dg.instance_for_test() as instance:
        record = handle_run_finished(
            instance, run_week(instance, spec), {"shop": spec},
            warehouse_url=etl_env["ETL_WAREHOUSE_URL"], slack=slack,
        )
    assert record["status"] == "success" and slack_stub.posts == []


# --- failed ticks ---------------------------------------------------------------------------

BROKEN_DEFS = """
import dagster as dg

@dg.op
def export():
    pass

@dg.job
def export_job():
    export()

@dg.schedule(name="nightly_export", cron_schedule="0 6 * * *", job=export_job,
             default_status=dg.DefaultScheduleStatus.RUNNING)
def nightly_export(context):
    raise ValueError("export target warehouse-b is unreachable\\nconnection refused on port 5432")

defs = dg.Definitions(jobs=[export_job], schedules=[nightly_export])
"""


@pytest.fixture
def broken_schedule(tmp_path: Path) -> Path:
    path = tmp_path / "broken_defs.py"
    path.write_text(BROKEN_DEFS)
    return path


def tick_spec(slack_stub: SlackStub) -> PipelineSpec:
    return make_spec(notify={
        "slack": {"channel": "#ops", "on": ["failure"], "api_url": slack_stub.base_url},
        "email": {"to": ["ops@example.com"], "on": ["failure"]},
    })


def test_a_schedule_whose_evaluation_raises_alerts_once(
    broken_schedule: Path, slack_stub: SlackStub, smtp_stub: SmtpServer
) -> None:
    spec = tick_spec(slack_stub)
    slack = SlackNotifier(token=TOKEN, base_url=slack_stub.base_url)
    email = EmailNotifier(host=smtp_stub.host, port=smtp_stub.port)
    log = logging.getLogger("etl_assets.test")
    with dg.instance_for_test() as instance:
        run_scheduler_iteration(instance, broken_schedule, dt.datetime(2025, 3, 17, 5, 59, tzinfo=UTC))
        with pytest.raises(RuntimeError, match="unreachable"):  # the 06:00 tick fails
            run_scheduler_iteration(instance, broken_schedule, dt.datetime(2025, 3, 17, 6, 0, 30, tzinfo=UTC))
        cursor = alert_failed_ticks(instance, [spec], {}, slack=slack, email=email, log=log)
        assert alert_failed_ticks(instance, [spec], cursor, slack=slack, email=email, log=log) == cursor
        assert len(slack_stub.posts) == 1 and len(smtp_stub.messages) == 1
        with pytest.raises(RuntimeError):  # the next day's tick fails too: a new failure
            run_scheduler_iteration(instance, broken_schedule, dt.datetime(2025, 3, 18, 6, 0, 30, tzinfo=UTC))
        alert_failed_ticks(instance, [spec], cursor, slack=slack, email=email, log=log)
    first, second = slack_stub.posts
    assert first["channel"] == "#ops"
    assert first["text"] == (
        "🛑 TICK FAILED: schedule nightly_export\n"
        "The schedule nightly_export failed to evaluate at 2025-03-17 06:00:00 UTC: "
        "ValueError: export target warehouse-b is unreachable\n"
        "Nothing it would have started has run; see its tick history in the UI."
    )
    assert "at 2025-03-18 06:00:00 UTC" in second["text"]
    mail = smtp_stub.messages[0].message
    assert mail["Subject"] == "[etl] 🛑 TICK FAILED: schedule nightly_export"
    assert "ValueError: export target warehouse-b is unreachable" in mail.get_content()
    assert "connection refused" not in mail.get_content()


def test_the_tick_sensor_alerts_a_failed_tick_on_one_evaluation_only(
    broken_schedule: Path, slack_stub: SlackStub
) -> None:
    sensor = build_tick_sensor([tick_spec(slack_stub)])
    slack = SlackNotifier(token=TOKEN, base_url=slack_stub.base_url)
    with dg.instance_for_test() as instance:
        run_scheduler_iteration(instance, broken_schedule, dt.datetime(2025, 3, 17, 5, 59, tzinfo=UTC))
        with pytest.raises(RuntimeError):
            run_scheduler_iteration(instance, broken_schedule, dt.datetime(2025, 3, 17, 6, 0, 30, tzinfo=UTC))
        cursor = None
        for _ in range(2):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"slack": slack})
            cursor = sensor.evaluate_tick(context).cursor
    [post] = slack_stub.posts
    assert post["text"].startswith("🛑 TICK FAILED: schedule nightly_export\n")
