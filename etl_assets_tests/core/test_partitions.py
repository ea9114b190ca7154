"""Partitions: every cadence including raw cron, windows across DST, and the look-back keys."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from etl_assets.core.partitions import Window, latest_complete_keys, partitions_def, window_for
from etl_assets.sources.base import ExtractRequest, window_bounds
from etl_assets.spec import PipelineSpec, SpecError, parse_pipeline

UTC = dt.UTC
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


# --- exact windows at every DST transition ----------------------------------------------------

# The two transition days of 2025 in zones with a one-hour and a 30-minute shift.
TRANSITIONS = {
    "America/New_York": (dt.date(2025, 3, 9), dt.date(2025, 11, 2)),
    "Europe/Berlin": (dt.date(2025, 3, 30), dt.date(2025, 10, 26)),
    "Australia/Lord_Howe": (dt.date(2025, 4, 6), dt.date(2025, 10, 5)),
}
ELAPSED = {"15min": 900, "30min": 1800, "hourly": 3600}


def _windows_around(timezone: str, cadence: str, day: dt.date) -> tuple[PipelineSpec, list[Window]]:
    """Every window from a little before `day` to a little after it, in key order."""
    if cadence in ELAPSED:
        start, until = day - dt.timedelta(days=1), day + dt.timedelta(days=2)
    else:
        start, until = dt.date(day.year - 1, 12, 1), dt.date(day.year + 1, 1, 31)
    if cadence == "weekly":
        start -= dt.timedelta(days=(start.weekday() + 1) % 7)  # a Sunday, the week_start
    s = spec({"cadence": cadence, "start": start.isoformat()}, timezone)
    pdef = partitions_def(s)
    keys = pdef.get_partition_keys(current_time=dt.datetime.combine(until, dt.time(), tzinfo=UTC))
    return s, [window_for(pdef, k) for k in keys]


@pytest.mark.parametrize("cadence", ["15min", "30min", "hourly", "daily", "weekly", "monthly"])
@pytest.mark.parametrize("timezone", sorted(TRANSITIONS))
def test_windows_tile_time_exactly_across_both_transitions(timezone: str, cadence: str) -> None:
    for day in TRANSITIONS[timezone]:
        _, windows = _windows_around(timezone, cadence, day)
        assert len(windows) > 3
        for w, following in zip(windows, windows[1:]):
            assert w.end_utc == following.start_utc, (w.key, following.key)
        for w in windows:
            assert w.start_utc < w.end_utc
            # The key names the window's local start, and the window is in the pipeline's zone.
            named = w.start.strftime("%Y-%m-%d-%H:%M" if cadence in ELAPSED else "%Y-%m-%d")
            assert w.key.startswith(named), (w.key, w.start.isoformat())
            assert w.start.tzinfo == ZoneInfo(timezone)
            seconds = (w.end_utc - w.start_utc).total_seconds()
            if cadence in ELAPSED:
                assert seconds == ELAPSED[cadence], (w.key, w.start.isoformat(), w.end.isoformat())
            else:
                assert (w.start.time(), w.end.time()) == (dt.time(), dt.time()), w.key
                wall_days = (w.end.date() - w.start.date()).days
                shift = (w.start.utcoffset() - w.end.utcoffset()).total_seconds()
                assert seconds == wall_days * 86400 + shift, w.key


@pytest.mark.parametrize(
    ("timezone", "key", "hours"),
    [
        ("America/New_York", "2025-11-02", 25),
        ("America/New_York", "2025-03-09", 23),
        ("Europe/Berlin", "2025-10-26", 25),
        ("Australia/Lord_Howe", "2025-04-06", 24.5),
        ("Australia/Lord_Howe", "2025-10-05", 23.5),
    ],
)
def test_transition_days_last_their_elapsed_hours(timezone: str, key: str, hours: float) -> None:
    w = window_for(partitions_def(spec({"cadence": "daily", "start": "2025-01-01"}, timezone)), key)
    assert (w.end_utc - w.start_utc) == dt.timedelta(hours=hours)


def test_the_repeated_hour_is_its_own_window() -> None:
    pdef = partitions_def(spec({"cadence": "hourly", "start": "2013-11-01"}))
    first, second = window_for(pdef, "2013-11-03-01:00"), window_for(pdef, "2013-11-03-01:00-0500")
    assert (first.start_utc.isoformat(), first.end_utc.isoformat()) == (
        "2013-11-03T05:00:00+00:00",
        "2013-11-03T06:00:00+00:00",
    )
    assert (second.start.isoformat(), second.end.isoformat()) == (
        "2013-11-03T01:00:00-05:00",
        "2013-11-03T02:00:00-05:00",
    )


def _source(lookback: str | None) -> Any:
    s = parse_pipeline(
        {
            "name": "shop",
            "timezone": "America/New_York",
            "partitions": {"cadence": "hourly", "start": "2025-01-01"},
            "sources": [{**SOURCE, **({"lookback": lookback} if lookback else {})}],
        },
        "shop.yaml",
    )
    return s.sources[0]


@pytest.mark.parametrize("lookback", [None, "30m", "1h", "2d"])
@pytest.mark.parametrize("cadence", ["15min", "30min", "hourly", "daily", "weekly", "monthly"])
@pytest.mark.parametrize("timezone", sorted(TRANSITIONS))
def test_lookback_is_elapsed_time_before_the_window_start(
    timezone: str, cadence: str, lookback: str | None
) -> None:
    source = _source(lookback)
    for day in TRANSITIONS[timezone]:
        _, windows = _windows_around(timezone, cadence, day)
        for w in windows:
            start, end = window_bounds(source, ExtractRequest("shop", w))
            assert start.astimezone(UTC) == w.start_utc - source.lookback_delta, w.key
            assert end.astimezone(UTC) == w.end_utc, w.key
            # Bound as the pipeline's local time, with the offset that instant has there.
            assert start.tzinfo == ZoneInfo(timezone)
            assert start.utcoffset() == start.astimezone(UTC).astimezone(ZoneInfo(timezone)).utcoffset()


def test_the_repeated_hour_is_extracted_once_without_lookback() -> None:
    pdef = partitions_def(spec({"cadence": "hourly", "start": "2013-11-01"}))
    w = window_for(pdef, "2013-11-03-01:00-0500")
    start, end = window_bounds(_source(None), ExtractRequest("shop", w))
    assert (start.isoformat(), end.isoformat()) == (
        "2013-11-03T01:00:00-05:00",
        "2013-11-03T02:00:00-05:00",
    )
