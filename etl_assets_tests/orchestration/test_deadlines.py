"""Deadline alerts: a partition not loaded by its deadline is alerted once, its recovery once."""

from __future__ import annotations

import datetime as dt
import json
import logging
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from etl_assets.core.partitions import partitions_def, window_for
from etl_assets.definitions import build_defs
from etl_assets.ops.notify import EmailNotifier, SlackNotifier
from etl_assets.orchestration.deadlines import alert_deadlines, build_deadline_sensors, deadline_of
from etl_assets.orchestration.sensors import handle_run_finished
from etl_assets.spec import PipelineSpec, SpecError
from etl_assets_tests.helpers import create_orders, make_spec, query
from etl_assets_tests.stubs import SlackStub, SmtpServer

NY = ZoneInfo("America/New_York")
UTC = dt.UTC
TOKEN = "xoxb-deadline-81c2aa"
LOG = logging.getLogger("etl_assets.test")


def deadline_spec(slack_stub: SlackStub, start: str, **deadline: str) -> PipelineSpec:
    """Weekly `shop` from `start`, due `deadline`, alerting #data and data@example.com."""
    return make_spec(
        partitions={"cadence": "weekly", "start": start},
        deadline=deadline or {"after_window_end": "9h"},
        notify={
            "slack": {"channel": "#data", "api_url": slack_stub.base_url},
            "email": {"to": ["data@example.com"]},
        },
    )


def run_week(instance: dg.DagsterInstance, spec: PipelineSpec, key: str) -> str:
    job = build_defs([spec]).resolve_job_def("shop_job")
    return job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False).run_id


def orders(url: str, *weeks: str) -> None:
    rows = []
    for w, key in enumerate(weeks):
        start = dt.datetime.fromisoformat(key).replace(tzinfo=NY) + dt.timedelta(days=1)
        rows += [(10 * w + i, f"c{i}", "9.50", start + dt.timedelta(hours=i)) for i in range(3)]
    create_orders(url, rows)


def texts(slack_stub: SlackStub) -> list[str]:
    return [p["text"] for p in slack_stub.posts]


def test_deadlines_are_instants_after_the_window_end() -> None:
    """Across the spring-forward night: elapsed hours for after_window_end, local time for at."""
    window = window_for(partitions_def(make_spec(partitions={"cadence": "weekly", "start": "2025-03-02"})), "2025-03-02")
    assert window.end_utc == dt.datetime(2025, 3, 9, 5, tzinfo=UTC)  # Sunday 00:00 EST
    nine_hours = make_spec(partitions={"cadence": "weekly", "start": "2025-03-02"}, deadline={"after_window_end": "9h"})
    assert deadline_of(nine_hours, window) == dt.datetime(2025, 3, 9, 14, tzinfo=UTC)  # 10:00 EDT
    monday = make_spec(partitions={"cadence": "weekly", "start": "2025-03-02"}, deadline={"at": "Mon 09:00"})
    assert deadline_of(monday, window) == dt.datetime(2025, 3, 10, 13, tzinfo=UTC)  # 09:00 EDT
    sunday_midnight = make_spec(partitions={"cadence": "weekly", "start": "2025-03-02"}, deadline={"at": "Sun 00:00"})
    assert deadline_of(sunday_midnight, window) == dt.datetime(2025, 3, 16, 4, tzinfo=UTC)  # the next one


def test_a_deadline_needs_one_of_its_forms() -> None:
    with pytest.raises(SpecError, match="exactly one of after_window_end"):
        make_spec(deadline={"after_window_end": "9h", "at": "Mon 09:00"})
    with pytest.raises(SpecError, match=r"deadline\.at.*'Monday at 9' is not a local time"):
        make_spec(deadline={"at": "Monday at 9"})


def test_a_missed_deadline_alerts_once_and_its_recovery_once(
    etl_env: dict[str, str], slack_stub: SlackStub, smtp_stub: SmtpServer
) -> None:
    spec = deadline_spec(slack_stub, "2025-03-02")  # weeks 03-02 and 03-09 are due by now
    orders(etl_env["TEST_SOURCE_URL"], "2025-03-02", "2025-03-09")
    wh = etl_env["ETL_WAREHOUSE_URL"]
    channels = {
        "slack": SlackNotifier(token=TOKEN, base_url=slack_stub.base_url),
        "email": EmailNotifier(host=smtp_stub.host, port=smtp_stub.port),
    }
    now = dt.datetime(2025, 3, 16, 9, 30, tzinfo=NY)  # 03-09 was due by 09:00
    with dg.instance_for_test() as instance:
        run_week(instance, spec, "2025-03-02")  # loaded in time: never alerted
        cursor = alert_deadlines(instance, [spec], {}, now, warehouse_url=wh, log=LOG, **channels)
        alert_deadlines(instance, [spec], cursor, now + dt.timedelta(minutes=1), warehouse_url=wh, log=LOG, **channels)
        alert_deadlines(instance, [spec], {}, now + dt.timedelta(minutes=2), warehouse_url=wh, log=LOG, **channels)
        assert texts(slack_stub) == [
            "⏰ DEADLINE MISSED: shop 2025-03-09\n"
            "shop partition 2025-03-09 was due by Sun 2025-03-16 09:00 EDT and is not loaded: "
            "no run has processed it yet.\n"
            "To load it, run `etl-assets run shop --partition 2025-03-09`."
        ]
        [mail] = smtp_stub.messages
        assert mail.message["Subject"] == "[etl] ⏰ DEADLINE MISSED: shop 2025-03-09"
        assert "`etl-assets run shop --partition 2025-03-09`" in mail.message.get_content()

        late = run_week(instance, spec, "2025-03-09")
        handle_run_finished(instance, late, {"shop": spec}, warehouse_url=wh)  # recorded, not alerted
        later = now + dt.timedelta(hours=3)
        cursor = alert_deadlines(instance, [spec], cursor, later, warehouse_url=wh, log=LOG, **channels)
        alert_deadlines(instance, [spec], cursor, later + dt.timedelta(minutes=1), warehouse_url=wh, log=LOG, **channels)
    recovered = texts(slack_stub)[1:]
    assert recovered == [
        "✅ RECOVERED: shop 2025-03-09\n"
        f"shop partition 2025-03-09 is loaded now (run {late[:8]} loaded it), after missing its "
        "deadline of Sun 2025-03-16 09:00 EDT."
    ]
    assert len(smtp_stub.messages) == 2
    assert query(wh, "SELECT partition, state, deadline, alerted_at, recovered_at FROM etl_meta.deadline_alerts") == [
        ("2025-03-09", "not loaded", dt.datetime(2025, 3, 16, 13, tzinfo=UTC), now, later)
    ]


def test_a_failed_partition_past_its_deadline_says_failed(etl_env: dict[str, str], slack_stub: SlackStub) -> None:
    spec = deadline_spec(slack_stub, "2025-03-09", at="Mon 09:00")
    wh = etl_env["ETL_WAREHOUSE_URL"]
    slack = SlackNotifier(token=TOKEN, base_url=slack_stub.base_url)
    with dg.instance_for_test() as instance:
        failed = run_week(instance, spec, "2025-03-09")  # src.orders does not exist
        assert handle_run_finished(instance, failed, {"shop": spec}, warehouse_url=wh)["status"] == "failed"
        before = dt.datetime(2025, 3, 17, 8, 59, tzinfo=NY)
        cursor = alert_deadlines(instance, [spec], {}, before, warehouse_url=wh, slack=slack, email=None, log=LOG)
        assert slack_stub.posts == []  # not due yet
        alert_deadlines(instance, [spec], cursor, before + dt.timedelta(minutes=2), warehouse_url=wh, slack=slack, email=None, log=LOG)
    [text] = texts(slack_stub)
    assert text == (
        "⏰ DEADLINE MISSED: shop 2025-03-09\n"
        "shop partition 2025-03-09 was due by Mon 2025-03-17 09:00 EDT and is not loaded: "
        f"its last run ({failed[:8]}) failed: shop/orders partition 2025-03-09: query failed: "
        'relation "src.orders" does not exist\n'
        "To load it, run `etl-assets run shop --partition 2025-03-09`."
    )
    assert query(wh, "SELECT state FROM etl_meta.deadline_alerts") == [("failed",)]


def test_the_deadline_sensor_keeps_a_cursor(etl_env: dict[str, str], slack_stub: SlackStub, monkeypatch) -> None:
    """Under the daemon: the sensor reads its clock, evaluates due partitions, stores its cursor."""
    from etl_assets.warehouses.postgres import WarehouseResource

    spec = deadline_spec(slack_stub, "2025-03-09")
    clock = [dt.datetime(2025, 3, 16, 9, 30, tzinfo=NY)]
    [sensor] = build_deadline_sensors([spec], clock=lambda: clock[0])
    resources = {
        "warehouse": WarehouseResource(url=etl_env["ETL_WAREHOUSE_URL"]),
        "slack": SlackNotifier(token=TOKEN, base_url=slack_stub.base_url),
    }
    cursor = None
    with dg.instance_for_test() as instance:
        for _ in range(2):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            cursor = sensor.evaluate_tick(context).cursor
            clock[0] += dt.timedelta(minutes=1)
    assert json.loads(cursor) == {"shop": "2025-03-16T13:31:00+00:00"}
    assert [t.splitlines()[0] for t in texts(slack_stub)] == ["⏰ DEADLINE MISSED: shop 2025-03-09"]
    assert build_deadline_sensors([make_spec()]) == []  # no pipeline has a deadline


def test_an_alert_no_channel_took_is_sent_on_the_next_tick(etl_env: dict[str, str], slack_stub: SlackStub) -> None:
    """Slack answering 500 must not mark the partition alerted: the next evaluation sends it."""
    spec = make_spec(
        partitions={"cadence": "weekly", "start": "2025-03-09"}, deadline={"at": "Mon 09:00"},
        notify={"slack": {"channel": "#data", "api_url": slack_stub.base_url}},
    )
    wh = etl_env["ETL_WAREHOUSE_URL"]
    slack = SlackNotifier(token=TOKEN, base_url=slack_stub.base_url)
    after = dt.datetime(2025, 3, 17, 9, 1, tzinfo=NY)
    with dg.instance_for_test() as instance:
        slack_stub.reply_http(500)
        cursor = alert_deadlines(instance, [spec], {}, after, warehouse_url=wh, slack=slack, email=None, log=LOG)
        assert query(wh, "SELECT count(*) FROM etl_meta.deadline_alerts") == [(0,)]
        slack_stub.reply_ok()
        failed_posts = len(slack_stub.posts)
        cursor = alert_deadlines(
            instance, [spec], cursor, after + dt.timedelta(minutes=1), warehouse_url=wh, slack=slack, email=None, log=LOG
        )
        alert_deadlines(
            instance, [spec], cursor, after + dt.timedelta(minutes=2), warehouse_url=wh, slack=slack, email=None, log=LOG
        )
    delivered = [t.splitlines()[0] for t in texts(slack_stub)[failed_posts:]]
    assert delivered == ["⏰ DEADLINE MISSED: shop 2025-03-09"]
    assert query(wh, "SELECT state FROM etl_meta.deadline_alerts") == [("not loaded",)]
