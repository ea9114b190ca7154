"""Partitions: every cadence including raw cron, windows across DST, and the look-back keys."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from etl_assets.partitions import latest_complete_keys, partitions_def, window_for
from etl_assets.spec import PipelineSpec, SpecError, parse_pipeline

UTC = dt.timezone.utc
NY = ZoneInfo("America/New_York")

SOURCE = {
    "name": "orders",
    "kind": "postgres",
    "connection": {"url": "${TEST_SOURCE_URL}"},
    "table": "src.orders",
    "timestamp_column": "updated_at",
    "primary_key": ["order_id"],
}


def spec(partitions: dict[str, Any], timezone: str = "America/New_York") -> PipelineSpec:
    return parse_pipeline(
        {"name": "shop", "timezone": timezone, "partitions": partitions, "sources": [SOURCE]},
        "shop.yaml",
    )


def spec_error(partitions: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as e:
        spec(partitions)
    return str(e.value)


# --- cron cadence in the spec -------------------------------------------------------------------


def test_cron_cadence_is_normalized() -> None:
    s = spec({"cadence": "cron", "cron": "  0  6 * *   1-5 ", "start": "2025-06-02"})
    assert s.partitions.cadence == "cron"
    assert s.partitions.cron == "0 6 * * 1-5"


@pytest.mark.parametrize(
    "cron",
    ["61 6 * * 1", "0 6 * *", "0 0 * * * *", "@daily", "0 0 30 2 *", "every monday"],
)
def test_invalid_cron_is_a_spec_error_naming_the_field(cron: str) -> None:
    message = spec_error({"cadence": "cron", "cron": cron, "start": "2025-06-02"})
    assert message.startswith("shop.yaml (pipeline shop): partitions.cron: ")
    assert f"{cron!r} is not a 5-field cron expression" in message


def test_cron_cadence_needs_a_cron() -> None:
    assert spec_error({"cadence": "cron", "start": "2025-06-02"}) == (
        "shop.yaml (pipeline shop): partitions.cron: cadence cron needs a cron expression, "
        'e.g. cron: "0 6 * * 1"'
    )


def test_cron_with_another_cadence_is_refused() -> None:
    assert spec_error({"cadence": "daily", "cron": "0 6 * * 1", "start": "2025-06-02"}) == (
        "shop.yaml (pipeline shop): partitions.cron: cron is only used with cadence: cron "
        "(cadence is daily)"
    )


def test_unknown_cadence_lists_every_choice() -> None:
    assert spec_error({"cadence": "yearly", "start": "2025-06-02"}) == (
        "shop.yaml (pipeline shop): partitions.cadence: must be one of "
        "15min, 30min, hourly, daily, weekly, monthly, cron"
    )


# --- partitions definitions -----------------------------------------------------------------------


def test_weekday_cron_partitions_carry_the_time_of_day() -> None:
    pdef = partitions_def(spec({"cadence": "cron", "cron": "0 6 * * 1-5", "start": "2025-06-02"}))
    keys = pdef.get_partition_keys(current_time=dt.datetime(2025, 6, 10, 6, tzinfo=NY))
    assert keys == [
        "2025-06-02-06:00",
        "2025-06-03-06:00",
        "2025-06-04-06:00",
        "2025-06-05-06:00",
        "2025-06-06-06:00",
        "2025-06-09-06:00",
    ]
    friday = window_for(pdef, "2025-06-06-06:00")
    assert (friday.start.isoformat(), friday.end.isoformat()) == (
        "2025-06-06T06:00:00-04:00",
        "2025-06-09T06:00:00-04:00",
    )


def test_midnight_cron_partitions_are_dates() -> None:
    pdef = partitions_def(spec({"cadence": "cron", "cron": "0 0 1,15 * *", "start": "2025-01-01"}))
    keys = pdef.get_partition_keys(current_time=dt.datetime(2025, 2, 16, tzinfo=NY))
    assert keys == ["2025-01-01", "2025-01-15", "2025-02-01"]
    w = window_for(pdef, "2025-01-15")
    assert (w.start.isoformat(), w.end.isoformat()) == (
        "2025-01-15T00:00:00-05:00",
        "2025-02-01T00:00:00-05:00",
    )


@pytest.mark.parametrize(
    ("timezone", "key", "hours"),
    [
        ("America/New_York", "2025-03-09", 23),
        ("America/New_York", "2025-11-02", 25),
        ("Europe/Berlin", "2025-03-30", 23),
        ("Europe/Berlin", "2025-10-26", 25),
        ("Asia/Kolkata", "2025-03-09", 24),
        ("America/Sao_Paulo", "2025-11-02", 24),
    ],
)
def test_daily_windows_follow_dst(timezone: str, key: str, hours: int) -> None:
    pdef = partitions_def(spec({"cadence": "daily", "start": "2025-01-01"}, timezone))
    w = window_for(pdef, key)
    assert w.end_utc - w.start_utc == dt.timedelta(hours=hours)
    assert (w.start.hour, w.end.hour) == (0, 0)


def test_kolkata_quarter_hours_are_local() -> None:
    pdef = partitions_def(spec({"cadence": "15min", "start": "2025-01-01"}, "Asia/Kolkata"))
    w = window_for(pdef, "2025-07-01-06:45")
    assert w.start_utc.isoformat() == "2025-07-01T01:15:00+00:00"
    assert w.end.isoformat() == "2025-07-01T07:00:00+05:30"


# --- look-back keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partitions", "timezone", "now"),
    [
        (
            {"cadence": "weekly", "start": "2025-01-05"},
            "America/New_York",
            dt.datetime(2025, 11, 8, 13, 15, tzinfo=UTC),
        ),
        (
            {"cadence": "daily", "start": "2025-03-01"},
            "Europe/Berlin",
            dt.datetime(2025, 3, 31, 1, tzinfo=UTC),
        ),
        (
            {"cadence": "hourly", "start": "2025-11-01"},
            "America/New_York",
            dt.datetime(2025, 11, 2, 7, 30, tzinfo=UTC),
        ),
        (
            {"cadence": "15min", "start": "2025-06-30"},
            "Asia/Kolkata",
            dt.datetime(2025, 7, 1, 1, 20, tzinfo=UTC),
        ),
        (
            {"cadence": "monthly", "start": "2024-01-01"},
            "America/Sao_Paulo",
            dt.datetime(2025, 3, 1, 3, tzinfo=UTC),
        ),
        (
            {"cadence": "cron", "cron": "0 6 * * 1-5", "start": "2025-06-02"},
            "America/New_York",
            dt.datetime(2025, 6, 16, 10, tzinfo=UTC),
        ),
    ],
)
def test_latest_complete_keys_match_dagsters_own_list(
    partitions: dict, timezone: str, now: dt.datetime
) -> None:
    pdef = partitions_def(spec(partitions, timezone))
    expected = list(pdef.get_partition_keys(current_time=now))[-5:]
    assert len(expected) == 5
    assert latest_complete_keys(pdef, 5, now) == expected


def test_latest_complete_keys_excludes_the_window_in_progress_and_stops_at_the_start() -> None:
    pdef = partitions_def(spec({"cadence": "weekly", "start": "2025-01-05"}))
    just_before = dt.datetime(2025, 1, 18, 23, 59, tzinfo=NY)
    assert latest_complete_keys(pdef, 8, just_before) == ["2025-01-05"]
    at_the_end = dt.datetime(2025, 1, 19, 0, 0, tzinfo=NY)
    assert latest_complete_keys(pdef, 8, at_the_end) == ["2025-01-05", "2025-01-12"]
    assert latest_complete_keys(pdef, 8, dt.datetime(2025, 1, 6, tzinfo=NY)) == []
