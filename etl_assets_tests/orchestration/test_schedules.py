"""Schedules: tick times in local time across DST, the catch-up rule, and the real scheduler path.

Every test passes its clock explicitly: `now` to `preview`/`catchup_partitions`, the scheduled
execution time to `evaluate_tick`, and a frozen clock to the scheduler daemon iteration.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner

from etl_assets.cli.schedule import schedule_command
from etl_assets.dagster_internal import run_scheduler_iteration
from etl_assets.definitions import build_defs
from etl_assets.orchestration.assets import asset_key
from etl_assets.orchestration.schedules import (
    build_schedule,
    catchup_partitions,
    preview,
    schedule_cron,
    schedule_name,
)
from etl_assets.spec import (
    PipelineSpec,
    SpecError,
    json_schema,
    load_pipeline_file,
    parse_pipeline,
)

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.UTC
NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")

# Weekly windows Saturday to Saturday, processed Saturday 08:15 New York time.
SHOP_YAML = """
name: shop
owners: ["team:data"]
timezone: America/New_York
partitions: {cadence: weekly, start: 2025-08-02, week_start: saturday}
schedule: {at: "08:15", day_of_week: saturday}
sources:
  - name: orders
    kind: postgres
    connection: {url: "${TEST_SOURCE_URL}"}
    table: src.orders
    timestamp_column: updated_at
    primary_key: [order_id]
  - name: refunds
    kind: postgres
    connection: {url: "${TEST_SOURCE_URL}"}
    table: src.refunds
    timestamp_column: updated_at
    primary_key: [refund_id]
"""

# Written next to the pipeline YAML: the code location the scheduler loads.
DEFS_PY = """
from pathlib import Path

import dagster as dg

from etl_assets.definitions import build_defs
from etl_assets.orchestration.schedules import build_schedule
from etl_assets.spec import load_pipeline_file

spec = load_pipeline_file(Path(__file__).with_name("pipeline.yaml"))
defs = build_defs([spec])
if not any(s.name == f"{spec.name}_schedule" for s in defs.schedules or []):
    defs = dg.Definitions.merge(defs, dg.Definitions(schedules=[build_schedule(spec)]))
"""


def shop_data(**overrides: Any) -> dict[str, Any]:
    data = yaml.safe_load(SHOP_YAML)
    data.update(overrides)
    return data


def shop(**overrides: Any) -> PipelineSpec:
    return parse_pipeline(shop_data(**overrides), "shop.yaml")


def pipeline(
    timezone: str, cadence: str, at: str, start: str = "2025-01-01", **schedule: Any
) -> PipelineSpec:
    return shop(
        timezone=timezone,
        partitions={"cadence": cadence, "start": start},
        schedule={"at": at, **schedule},
    )


def defs_for(spec: PipelineSpec) -> dg.Definitions:
    """The definitions the code location serves, with this pipeline's schedule in them."""
    defs = build_defs([spec])
    if any(s.name == schedule_name(spec) for s in defs.schedules or []):
        return defs
    return dg.Definitions.merge(defs, dg.Definitions(schedules=[build_schedule(spec)]))


def materialize(
    instance: dg.DagsterInstance, spec: PipelineSpec, keys: list[str], *, skip: tuple = ()
) -> None:
    """Record what a successful run leaves behind: every loaded table and the report."""
    assets = [asset_key(spec.name, "loaded", s.name) for s in spec.sources] + [
        asset_key(spec.name, "report")
    ]
    for k in keys:
        for a in assets:
            if a not in skip:
                instance.report_runless_asset_event(dg.AssetMaterialization(a, partition=k))


def add_run(
    instance: dg.DagsterInstance,
    spec: PipelineSpec,
    status: dg.DagsterRunStatus,
    tags: dict[str, str],
) -> dg.DagsterRun:
    return instance.add_run(
        dg.DagsterRun(
            job_name=f"{spec.name}_job", run_id=str(uuid.uuid4()), status=status, tags=tags
        )
    )


def tick(defs: dg.Definitions, spec: PipelineSpec, instance: dg.DagsterInstance, at: dt.datetime):
    ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=at)
    return defs.resolve_schedule_def(schedule_name(spec)).evaluate_tick(ctx)


def weeks(first: str, n: int) -> list[str]:
    d = dt.date.fromisoformat(first)
    return [(d + dt.timedelta(weeks=i)).isoformat() for i in range(n)]


# --- cron and definition ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cadence", "schedule", "cron"),
    [
        ("15min", {"at": "00:05"}, "5,20,35,50 * * * *"),
        ("30min", {"at": "00:40"}, "10,40 * * * *"),
        ("hourly", {"at": "00:15"}, "15 * * * *"),
        ("daily", {"at": "02:30"}, "30 2 * * *"),
        ("weekly", {"at": "08:15", "day_of_week": "saturday"}, "15 8 * * 6"),
        ("weekly", {"at": "06:00"}, "0 6 * * 0"),  # default: the day the week starts
        ("monthly", {"at": "07:00", "day_of_month": 3}, "0 7 3 * *"),
        ("monthly", {}, "0 0 1 * *"),
    ],
)
def test_tick_cron_per_cadence(cadence: str, schedule: dict, cron: str) -> None:
    start = "2025-01-01" if cadence == "monthly" else "2025-01-05"  # on a window boundary
    spec = shop(partitions={"cadence": cadence, "start": start}, schedule=schedule)
    assert schedule_cron(spec) == cron


def test_cron_cadence_ticks_on_its_own_cron() -> None:
    spec = shop(
        partitions={"cadence": "cron", "cron": "0 6 * * 1-5", "start": "2025-06-02"}, schedule={}
    )
    assert schedule_cron(spec) == "0 6 * * 1-5"


@pytest.mark.parametrize(
    ("partitions", "schedule", "message"),
    [
        (
            {"cadence": "daily"},
            {"day_of_week": "monday"},
            "schedule.day_of_week applies to weekly partitions only (cadence is daily)",
        ),
        (
            {"cadence": "weekly"},
            {"day_of_month": 2},
            "schedule.day_of_month applies to monthly partitions only (cadence is weekly)",
        ),
        (
            {"cadence": "cron", "cron": "0 6 * * 1"},
            {"at": "06:00"},
            "schedule.at does not apply to cadence: cron",
        ),
    ],
)
def test_schedule_fields_the_cadence_cannot_use_are_refused(
    partitions: dict, schedule: dict, message: str
) -> None:
    with pytest.raises(SpecError) as e:
        shop(partitions={"start": "2025-01-05", **partitions}, schedule=schedule)
    assert message in str(e.value)
    assert "pipeline shop" in str(e.value)


def test_schedule_definition_from_spec() -> None:
    spec = shop(timeout_minutes=90)
    defs = defs_for(spec)
    sched = defs.resolve_schedule_def("shop_schedule")
    assert sched.job_name == "shop_job"
    assert sched.cron_schedule == "15 8 * * 6"
    assert sched.execution_timezone == "America/New_York"
    assert sched.default_status == dg.DefaultScheduleStatus.RUNNING
    assert defs.resolve_job_def("shop_job").partitions_def is not None


def test_disabled_schedule_starts_stopped() -> None:
    spec = shop(schedule={"at": "08:15", "day_of_week": "saturday", "enabled": False})
    assert build_schedule(spec).default_status == dg.DefaultScheduleStatus.STOPPED


def test_catchup_and_timeout_in_the_spec() -> None:
    assert shop().catchup.model_dump() == {"enabled": True, "window": 8, "max_runs_per_tick": 8}
    off = shop(catchup=False).catchup
    assert (off.enabled, off.lookback, off.runs_per_tick) == (False, 1, 1)
    on = shop(catchup={"window": 12, "max_runs_per_tick": 3}).catchup
    assert (on.lookback, on.runs_per_tick) == (12, 3)
    assert shop(timeout_minutes=90).timeout_minutes == 90
    with pytest.raises(
        SpecError, match=r"catchup\.window: Input should be greater than or equal to 1"
    ):
        shop(catchup={"window": 0})
    with pytest.raises(SpecError, match=r"catchup\.max_runs: unknown field"):
        shop(catchup={"max_runs": 3})
    with pytest.raises(SpecError, match="timeout_minutes: Input should be greater than 0"):
        shop(timeout_minutes=0)
    # Editors using `etl-assets schema` accept `catchup: false` as well as the mapping.
    catchup_schema = json_schema()["$defs"]["CatchupSpec"]
    assert catchup_schema["anyOf"][1] == {"type": "boolean"}
    assert set(catchup_schema["anyOf"][0]["properties"]) == {
        "enabled",
        "window",
        "max_runs_per_tick",
    }


# --- preview: local times, UTC, DST ------------------------------------------------------------


def test_demo_preview_five_mondays_in_sao_paulo() -> None:
    spec = load_pipeline_file(ROOT / "pipelines" / "demo_sales.yaml")
    ticks = preview(spec, 5, now=dt.datetime(2025, 6, 1, tzinfo=UTC))
    assert [t["local"] for t in ticks] == [
        "2025-06-02T06:00:00-03:00",
        "2025-06-09T06:00:00-03:00",
        "2025-06-16T06:00:00-03:00",
        "2025-06-23T06:00:00-03:00",
        "2025-06-30T06:00:00-03:00",
    ]
    assert ticks[0]["utc"] == "2025-06-02T09:00:00+00:00"
    # Each Monday processes the Sunday-to-Sunday week that closed the day before.
    assert [t["partition"] for t in ticks] == [
        "2025-05-25",
        "2025-06-01",
        "2025-06-08",
        "2025-06-15",
        "2025-06-22",
    ]
    local = [dt.datetime.fromisoformat(t["local"]) for t in ticks]
    assert {b - a for a, b in zip(local, local[1:], strict=False)} == {dt.timedelta(days=7)}


def test_weekly_saturday_0815_new_york_keeps_local_time_across_fall_back() -> None:
    ticks = preview(shop(), 3, now=dt.datetime(2025, 10, 26, tzinfo=UTC))
    assert [(t["local"], t["utc"], t["partition"]) for t in ticks] == [
        ("2025-11-01T08:15:00-04:00", "2025-11-01T12:15:00+00:00", "2025-10-25"),
        ("2025-11-08T08:15:00-05:00", "2025-11-08T13:15:00+00:00", "2025-11-01"),
        ("2025-11-15T08:15:00-05:00", "2025-11-15T13:15:00+00:00", "2025-11-08"),
    ]


def test_new_york_spring_forward_daily_0230_fires_once_at_0300() -> None:
    spec = pipeline("America/New_York", "daily", "02:30")
    ticks = preview(spec, 3, now=dt.datetime(2025, 3, 7, 12, tzinfo=NY))
    assert [(t["local"], t["utc"], t["partition"]) for t in ticks] == [
        ("2025-03-08T02:30:00-05:00", "2025-03-08T07:30:00+00:00", "2025-03-07"),
        # 02:30 does not exist on 9 March: the tick fires at the first time after the gap.
        ("2025-03-09T03:00:00-04:00", "2025-03-09T07:00:00+00:00", "2025-03-08"),
        ("2025-03-10T02:30:00-04:00", "2025-03-10T06:30:00+00:00", "2025-03-09"),
    ]


def test_new_york_fall_back_daily_0130_fires_once() -> None:
    spec = pipeline("America/New_York", "daily", "01:30")
    ticks = preview(spec, 3, now=dt.datetime(2025, 11, 1, 12, tzinfo=NY))
    on_the_day = [t for t in ticks if t["local"].startswith("2025-11-02")]
    assert len(on_the_day) == 1  # 01:30 happens twice that night; the schedule fires once
    assert on_the_day[0]["local"] == "2025-11-02T01:30:00-05:00"
    assert on_the_day[0]["partition"] == "2025-11-01"
    assert [t["local"] for t in ticks[1:]] == [
        "2025-11-03T01:30:00-05:00",
        "2025-11-04T01:30:00-05:00",
    ]


def test_berlin_spring_forward_and_fall_back() -> None:
    spring = preview(
        pipeline("Europe/Berlin", "daily", "02:30"),
        2,
        now=dt.datetime(2025, 3, 29, 12, tzinfo=BERLIN),
    )
    assert [(t["local"], t["utc"]) for t in spring] == [
        ("2025-03-30T03:00:00+02:00", "2025-03-30T01:00:00+00:00"),
        ("2025-03-31T02:30:00+02:00", "2025-03-31T00:30:00+00:00"),
    ]
    autumn = preview(
        pipeline("Europe/Berlin", "daily", "02:30"),
        3,
        now=dt.datetime(2025, 10, 25, 12, tzinfo=BERLIN),
    )
    assert [t["local"] for t in autumn] == [
        "2025-10-26T02:30:00+01:00",
        "2025-10-27T02:30:00+01:00",
        "2025-10-28T02:30:00+01:00",
    ]
    # A weekly Monday 08:00 keeps 08:00 local while UTC moves by the hour.
    weekly = preview(
        pipeline("Europe/Berlin", "weekly", "08:00", start="2025-01-05", day_of_week="monday"),
        2,
        now=dt.datetime(2025, 10, 19, tzinfo=UTC),
    )
    assert [(t["local"], t["utc"]) for t in weekly] == [
        ("2025-10-20T08:00:00+02:00", "2025-10-20T06:00:00+00:00"),
        ("2025-10-27T08:00:00+01:00", "2025-10-27T07:00:00+00:00"),
    ]


def test_asia_kolkata_half_hour_offset() -> None:
    daily = preview(
        pipeline("Asia/Kolkata", "daily", "06:00"), 2, now=dt.datetime(2025, 7, 1, tzinfo=UTC)
    )
    assert [(t["local"], t["utc"], t["partition"]) for t in daily] == [
        ("2025-07-01T06:00:00+05:30", "2025-07-01T00:30:00+00:00", "2025-06-30"),
        ("2025-07-02T06:00:00+05:30", "2025-07-02T00:30:00+00:00", "2025-07-01"),
    ]
    hourly = preview(
        pipeline("Asia/Kolkata", "hourly", "00:10"), 2, now=dt.datetime(2025, 7, 1, tzinfo=UTC)
    )
    # Hourly windows start on the local hour, half past the hour in UTC.
    assert [(t["local"], t["utc"], t["partition"]) for t in hourly] == [
        ("2025-07-01T06:10:00+05:30", "2025-07-01T00:40:00+00:00", "2025-07-01-05:00"),
        ("2025-07-01T07:10:00+05:30", "2025-07-01T01:40:00+00:00", "2025-07-01-06:00"),
    ]


def test_sao_paulo_monthly() -> None:
    spec = pipeline("America/Sao_Paulo", "monthly", "07:00", day_of_month=3)
    ticks = preview(spec, 2, now=dt.datetime(2025, 1, 20, tzinfo=UTC))
    assert [(t["local"], t["utc"], t["partition"]) for t in ticks] == [
        ("2025-02-03T07:00:00-03:00", "2025-02-03T10:00:00+00:00", "2025-01-01"),
        ("2025-03-03T07:00:00-03:00", "2025-03-03T10:00:00+00:00", "2025-02-01"),
    ]


def test_quarter_hours_and_raw_cron() -> None:
    quarter = preview(
        pipeline("America/New_York", "15min", "00:05"),
        2,
        now=dt.datetime(2025, 7, 1, 9, 0, tzinfo=NY),
    )
    assert [(t["local"], t["partition"]) for t in quarter] == [
        ("2025-07-01T09:05:00-04:00", "2025-07-01-08:45"),
        ("2025-07-01T09:20:00-04:00", "2025-07-01-09:00"),
    ]
    weekdays = shop(
        partitions={"cadence": "cron", "cron": "0 6 * * 1-5", "start": "2025-06-02"}, schedule={}
    )
    ticks = preview(weekdays, 2, now=dt.datetime(2025, 6, 6, 7, tzinfo=NY))
    # Friday's window runs until Monday 06:00, so Monday's tick processes Friday.
    assert [(t["local"], t["partition"]) for t in ticks] == [
        ("2025-06-09T06:00:00-04:00", "2025-06-06-06:00"),
        ("2025-06-10T06:00:00-04:00", "2025-06-09-06:00"),
    ]


def test_preview_before_the_first_window_closes_has_no_partition() -> None:
    ticks = preview(shop(), 2, now=dt.datetime(2025, 8, 1, tzinfo=UTC))
    assert [(t["local"], t["partition"]) for t in ticks] == [
        ("2025-08-02T08:15:00-04:00", None),
        ("2025-08-09T08:15:00-04:00", "2025-08-02"),
    ]


# --- catch-up rule: evaluate_tick and catchup_partitions ----------------------------------------

TICK = dt.datetime(2025, 11, 1, 8, 15, tzinfo=NY)  # the week 2025-10-25 just closed
WINDOW = weeks("2025-09-06", 8)  # the 8 complete weeks at TICK, oldest first


def test_tick_requests_every_missing_partition_in_the_window_oldest_first() -> None:
    spec = shop(timeout_minutes=90)
    defs = defs_for(spec)
    with dg.instance_for_test() as instance:
        materialize(instance, spec, weeks("2025-08-02", 5))  # older than the window anyway
        result = tick(defs, spec, instance, TICK)
    assert [r.partition_key for r in result.run_requests] == WINDOW
    assert [r.run_key for r in result.run_requests] == WINDOW
    assert result.run_requests[0].tags == {
        "dagster/partition": "2025-09-06",
        "etl/partition_lock": "shop:2025-09-06",
        "etl/trigger": "schedule",
        "dagster/max_runtime": "5400",
        "dagster/schedule_name": "shop_schedule",
        # Eight partitions at once: seven ticks were missed. Everything older is loaded.
        "etl/caught_up": ",".join(WINDOW[:-1]),
        "etl/outside_window": "",
        "etl/tick": "2025-11-01T08:15:00-04:00",
    }


def test_a_catch_up_names_older_partitions_it_will_not_reach() -> None:
    spec = shop(partitions={"start": "2025-07-05", "week_start": "saturday"})
    defs = defs_for(spec)
    with dg.instance_for_test() as instance:
        materialize(instance, spec, weeks("2025-07-05", 3))
        result = tick(defs, spec, instance, TICK)
    assert [r.partition_key for r in result.run_requests] == WINDOW
    assert result.run_requests[-1].tags["etl/outside_window"] == ",".join(weeks("2025-07-26", 6))


def test_materialized_partitions_are_skipped_unless_a_source_is_missing() -> None:
    spec = shop()
    with dg.instance_for_test() as instance:
        materialize(instance, spec, WINDOW[:3] + WINDOW[4:6])
        # Week 3 has its report but not refunds: not done, so requested again.
        materialize(instance, spec, [WINDOW[3]], skip=(asset_key("shop", "loaded", "refunds"),))
        assert catchup_partitions(instance, spec, TICK) == [WINDOW[3], WINDOW[6], WINDOW[7]]


def test_in_flight_runs_from_any_trigger_are_skipped() -> None:
    spec = shop()
    with dg.instance_for_test() as instance:
        add_run(instance, spec, dg.DagsterRunStatus.STARTED, {"dagster/partition": WINDOW[0]})
        add_run(
            instance,
            spec,
            dg.DagsterRunStatus.NOT_STARTED,
            {
                "dagster/asset_partition_range_start": WINDOW[2],
                "dagster/asset_partition_range_end": WINDOW[4],
            },
        )
        # A finished manual run that failed does not stop the schedule from trying.
        add_run(
            instance,
            spec,
            dg.DagsterRunStatus.FAILURE,
            {"dagster/partition": WINDOW[5], "etl/trigger": "cli"},
        )
        assert catchup_partitions(instance, spec, TICK) == [
            WINDOW[1],
            WINDOW[5],
            WINDOW[6],
            WINDOW[7],
        ]


def test_partitions_this_schedule_launched_are_never_relaunched() -> None:
    spec = shop()
    defs = defs_for(spec)
    with dg.instance_for_test() as instance:
        materialize(instance, spec, WINDOW[:6])
        for k, status in [
            (WINDOW[6], dg.DagsterRunStatus.FAILURE),
            (WINDOW[7], dg.DagsterRunStatus.CANCELED),
        ]:
            add_run(
                instance,
                spec,
                status,
                {"dagster/schedule_name": "shop_schedule", "dagster/partition": k},
            )
        result = tick(defs, spec, instance, TICK)
        assert result.run_requests == []
        assert result.skip_message == (
            "shop: the last 8 partitions at 2025-11-01T08:15:00-04:00: each is materialized, "
            "running or already launched by this schedule"
        )
        # Another pipeline's schedule with the same partition key does not count.
        other = shop(name="other")
        assert catchup_partitions(instance, other, TICK) == WINDOW


def test_max_runs_per_tick_takes_the_oldest_first() -> None:
    spec = shop(catchup={"window": 6, "max_runs_per_tick": 2})
    with dg.instance_for_test() as instance:
        assert catchup_partitions(instance, spec, TICK) == WINDOW[2:4]


def test_catchup_false_only_the_latest_partition() -> None:
    spec = shop(catchup=False)
    defs = defs_for(spec)
    with dg.instance_for_test() as instance:
        result = tick(defs, spec, instance, TICK)
        assert [r.partition_key for r in result.run_requests] == ["2025-10-25"]
        materialize(instance, spec, ["2025-10-25"])
        assert tick(defs, spec, instance, TICK).run_requests == []


def test_window_is_bounded_by_the_first_partition() -> None:
    spec = shop()
    with dg.instance_for_test() as instance:
        assert catchup_partitions(instance, spec, dt.datetime(2025, 8, 16, 8, 15, tzinfo=NY)) == [
            "2025-08-02",
            "2025-08-09",
        ]
        assert catchup_partitions(instance, spec, dt.datetime(2025, 8, 2, 8, 15, tzinfo=NY)) == []


def test_a_tick_exactly_at_the_window_end_includes_that_window() -> None:
    spec = shop(
        partitions={"cadence": "daily", "start": "2025-03-01"}, schedule={}, catchup={"window": 2}
    )
    with dg.instance_for_test() as instance:
        # The 23-hour spring-forward day is complete at local midnight.
        assert catchup_partitions(instance, spec, dt.datetime(2025, 3, 10, tzinfo=NY)) == [
            "2025-03-08",
            "2025-03-09",
        ]


# --- the real scheduler daemon path ---------------------------------------------------------------


@pytest.fixture
def location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A code location serving a pipeline spec, as `dagster-daemon` would load it."""
    # Run config resolves these when a run is created; the runs only queue and never execute.
    monkeypatch.setenv("ETL_STORAGE_DIR", str(tmp_path / "storage"))
    monkeypatch.setenv("ETL_WAREHOUSE_URL", "postgresql://nobody@127.0.0.1:1/none")
    (tmp_path / "schedule_defs.py").write_text(DEFS_PY)

    def write(data: dict[str, Any]) -> Path:
        (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        return tmp_path / "schedule_defs.py"

    return write


def schedule_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Runs the schedule launched, oldest first."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/schedule_name": "shop_schedule"}))
    return list(reversed(runs))


def ticks_of(instance: dg.DagsterInstance) -> list[Any]:
    state = next(s for s in instance.all_instigator_state() if s.instigator_name == "shop_schedule")
    return list(reversed(instance.get_ticks(state.instigator_origin_id, state.selector_id)))


def test_daemon_catches_up_three_missed_weekly_ticks_then_launches_nothing_more(location) -> None:
    spec_data = shop_data()
    spec = parse_pipeline(spec_data, "shop.yaml")
    defs_file = location(spec_data)
    with dg.instance_for_test() as instance:
        materialize(instance, spec, weeks("2025-08-02", 10))  # up to the week of 2025-10-04

        # The daemon is up on Saturday 11 October after that day's tick: all caught up.
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 10, 11, 9, 0, tzinfo=NY))
        assert len(schedule_runs(instance)) == 0

        # It is down for the ticks of 18 and 25 October and 1 November, and back at 08:20.
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 11, 1, 8, 20, tzinfo=NY))
        runs = schedule_runs(instance)
        assert [r.tags["dagster/partition"] for r in runs] == [
            "2025-10-11",
            "2025-10-18",
            "2025-10-25",
        ]
        assert len(schedule_runs(instance)) == 3
        assert {r.status for r in runs} == {dg.DagsterRunStatus.QUEUED}
        assert {r.job_name for r in runs} == {"shop_job"}
        assert runs[0].tags["etl/partition_lock"] == "shop:2025-10-11"
        assert runs[0].tags["etl/trigger"] == "schedule"
        assert runs[0].tags["dagster/run_key"] == "2025-10-11"
        (first_tick,) = ticks_of(instance)  # Dagster itself evaluated only the latest tick
        assert first_tick.status.value == "SUCCESS"
        assert first_tick.timestamp == dt.datetime(2025, 11, 1, 12, 15, tzinfo=UTC).timestamp()
        assert sorted(first_tick.run_ids) == sorted(r.run_id for r in runs)

        # Minutes later: no tick is due, nothing new.
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 11, 1, 8, 25, tzinfo=NY))
        assert len(schedule_runs(instance)) == 3

        # The three runs fail; the next week was loaded by hand. The next tick (after the
        # fall-back, so 13:15 UTC) evaluates and launches nothing: failures are not retried.
        for r in runs:
            instance.report_run_failed(r)
        materialize(instance, spec, ["2025-11-01"])
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 11, 8, 8, 16, tzinfo=NY))
        assert len(schedule_runs(instance)) == 3
        second_tick = ticks_of(instance)[-1]
        assert second_tick.status.value == "SKIPPED"
        assert second_tick.timestamp == dt.datetime(2025, 11, 8, 13, 15, tzinfo=UTC).timestamp()

        # A week later only the new week runs.
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 11, 15, 8, 16, tzinfo=NY))
        assert [r.tags["dagster/partition"] for r in schedule_runs(instance)][3:] == ["2025-11-08"]
        assert len(schedule_runs(instance)) == 4


def test_daemon_skips_a_materialized_week_inside_the_window(location) -> None:
    spec_data = shop_data(timeout_minutes=45)
    spec = parse_pipeline(spec_data, "shop.yaml")
    defs_file = location(spec_data)
    with dg.instance_for_test() as instance:
        materialize(instance, spec, weeks("2025-08-02", 10))
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 10, 11, 9, 0, tzinfo=NY))
        # While the daemon is down, the week of 18 October is loaded from the CLI.
        materialize(instance, spec, ["2025-10-18"])
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 11, 1, 8, 20, tzinfo=NY))
        runs = schedule_runs(instance)
        assert [r.tags["dagster/partition"] for r in runs] == ["2025-10-11", "2025-10-25"]
        assert {r.tags["dagster/max_runtime"] for r in runs} == {"2700"}


def test_daemon_without_catchup_launches_only_the_latest_week(location) -> None:
    """What Dagster alone does after an outage: the missed weeks stay empty."""
    spec_data = shop_data(catchup=False)
    spec = parse_pipeline(spec_data, "shop.yaml")
    defs_file = location(spec_data)
    with dg.instance_for_test() as instance:
        materialize(instance, spec, weeks("2025-08-02", 10))
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 10, 11, 9, 0, tzinfo=NY))
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 11, 1, 8, 20, tzinfo=NY))
        assert [r.tags["dagster/partition"] for r in schedule_runs(instance)] == ["2025-10-25"]


def test_daemon_leaves_a_disabled_schedule_alone(location) -> None:
    data = shop_data(schedule={"at": "08:15", "day_of_week": "saturday", "enabled": False})
    defs_file = location(data)
    with dg.instance_for_test() as instance:
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 10, 11, 9, 0, tzinfo=NY))
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 11, 1, 8, 20, tzinfo=NY))
        assert len(schedule_runs(instance)) == 0


# --- CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def pipelines_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "demo_sales.yaml").write_text((ROOT / "pipelines" / "demo_sales.yaml").read_text())
    (folder / "shop.yaml").write_text(SHOP_YAML)
    monkeypatch.setenv("ETL_PIPELINES_DIR", str(folder))
    return folder


def test_cli_schedule_json(pipelines_dir: Path) -> None:
    out = CliRunner().invoke(
        schedule_command,
        ["demo_sales", "--next", "5", "--json", "--now", "2025-06-01T00:00:00+00:00"],
    )
    assert out.exit_code == 0, out.output
    ticks = json.loads(out.output)
    assert isinstance(ticks, list) and len(ticks) == 5
    assert all(set(t) == {"local", "utc", "partition"} for t in ticks)
    assert ticks[4] == {
        "local": "2025-06-30T06:00:00-03:00",
        "utc": "2025-06-30T09:00:00+00:00",
        "partition": "2025-06-22",
    }
    local = [dt.datetime.fromisoformat(t["local"]) for t in ticks]
    assert {(b - a) for a, b in zip(local, local[1:])} == {dt.timedelta(days=7)}
    # The schedule itself is described in the text form.
    text = CliRunner().invoke(
        schedule_command, ["demo_sales", "--next", "1", "--now", "2025-06-01T00:00:00+00:00"]
    )
    assert text.output.splitlines()[0].startswith(
        'demo_sales_schedule  cron "0 6 * * 1" in America/Sao_Paulo  enabled  '
        "catch-up: last 8 partitions, at most 8 runs a tick"
    )


def test_cli_schedule_text(pipelines_dir: Path) -> None:
    out = CliRunner().invoke(
        schedule_command, ["shop", "--next", "2", "--now", "2025-10-26T00:00:00Z"]
    )
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith('shop_schedule  cron "15 8 * * 6" in America/New_York  enabled')
    assert "catch-up: last 8 partitions, at most 8 runs a tick" in lines[0]
    assert lines[1].split() == [
        "Sat",
        "2025-11-01",
        "08:15",
        "-04:00",
        "2025-11-01",
        "12:15",
        "UTC",
        "partition",
        "2025-10-25",
    ]
    assert lines[2].split() == [
        "Sat",
        "2025-11-08",
        "08:15",
        "-05:00",
        "2025-11-08",
        "13:15",
        "UTC",
        "partition",
        "2025-11-01",
    ]


def test_cli_schedule_unknown_pipeline(pipelines_dir: Path) -> None:
    out = CliRunner().invoke(schedule_command, ["nope"])
    assert out.exit_code == 2
    assert "unknown pipeline 'nope' (pipelines: demo_sales, shop)" in out.output
