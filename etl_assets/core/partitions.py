"""Time-window partitions in a pipeline's own timezone, and the windows they stand for.

A partition key names the start of its window. The window comes from the key alone,
never from the wall clock, so a late or slow run extracts exactly the same rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import dagster as dg

from etl_assets.core.weekdays import WEEKDAYS, Weekday  # noqa: F401  (partition specs name them)

if TYPE_CHECKING:
    from etl_assets.spec import PipelineSpec


MINUTE_FMT = "%Y-%m-%d-%H:%M"
DATE_FMT = "%Y-%m-%d"
HOUR_FMT = "%Y-%m-%d-%H:%M"


@dataclass(frozen=True)
class Window:
    key: str
    start: dt.datetime  # aware, pipeline timezone
    end: dt.datetime

    @property
    def start_utc(self) -> dt.datetime:
        return self.start.astimezone(dt.timezone.utc)

    @property
    def end_utc(self) -> dt.datetime:
        return self.end.astimezone(dt.timezone.utc)


def partitions_def(spec: PipelineSpec) -> dg.TimeWindowPartitionsDefinition:
    p, tz = spec.partitions, spec.timezone
    start = dt.datetime.combine(p.start, dt.time())
    if p.cadence == "weekly":
        return dg.WeeklyPartitionsDefinition(
            start_date=start, timezone=tz, day_offset=WEEKDAYS.index(p.week_start)
        )
    if p.cadence == "daily":
        return dg.DailyPartitionsDefinition(start_date=start, timezone=tz)
    if p.cadence == "hourly":
        return dg.HourlyPartitionsDefinition(start_date=start, timezone=tz)
    if p.cadence == "monthly":
        return dg.MonthlyPartitionsDefinition(start_date=start, timezone=tz)
    if p.cadence == "cron":
        return dg.TimeWindowPartitionsDefinition(
            start=start, fmt=cron_key_format(p.cron), cron_schedule=p.cron, timezone=tz
        )
    minutes = {"15min": 15, "30min": 30}[p.cadence]
    return dg.TimeWindowPartitionsDefinition(
        start=start, fmt=MINUTE_FMT, cron_schedule=f"*/{minutes} * * * *", timezone=tz
    )


def cron_key_format(cron: str | None) -> str:
    """Keys carry the time of day unless every window starts at midnight."""
    minute, hour = (cron or "").split()[:2]
    return DATE_FMT if (minute, hour) == ("0", "0") else MINUTE_FMT


# Cadences of a fixed elapsed length, by their cron: such a window is always exactly this long.
ELAPSED = {
    "*/15 * * * *": dt.timedelta(minutes=15),
    "*/30 * * * *": dt.timedelta(minutes=30),
    "0 * * * *": dt.timedelta(hours=1),
}


def window_for(pdef: dg.TimeWindowPartitionsDefinition, key: str) -> Window:
    """The window a key names, with its bounds as instants (each carries its own UTC offset).

    Dagster lists fixed-length keys an elapsed interval apart, but reading a key back it
    snaps to the next cron tick, so in a zone with a 30-minute DST shift (Lord Howe) an
    hourly key would get a window that leaves a gap. Those keys are read here instead.
    """
    tz = ZoneInfo(pdef.timezone or "UTC")
    length = ELAPSED.get(pdef.cron_schedule)
    if length is None:
        tw = pdef.time_window_for_partition_key(key)
        return Window(key, tw.start.astimezone(tz), tw.end.astimezone(tz))
    start = _key_instant(key, tz)
    return Window(key, start, (start.astimezone(dt.timezone.utc) + length).astimezone(tz))


def _key_instant(key: str, tz: ZoneInfo) -> dt.datetime:
    """`2025-11-02-01:00` is the first 01:00 that day; `2025-11-02-01:00-0500` the one at -05:00."""
    local = dt.datetime.strptime(key[:16], MINUTE_FMT)
    if len(key) > 16:
        offset = dt.datetime.strptime(key[16:], "%z").tzinfo
        return local.replace(tzinfo=offset).astimezone(tz)
    return local.replace(tzinfo=tz).astimezone(dt.timezone.utc).astimezone(tz)


def latest_complete_keys(
    pdef: dg.TimeWindowPartitionsDefinition, n: int, now: dt.datetime | None = None
) -> list[str]:
    """The `n` most recent partitions whose windows had fully closed at `now`, oldest first.

    Walks back from `now` instead of listing every key since the start, so a 15-minute
    pipeline with years of history costs the same as a weekly one.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    first = pdef.start.timestamp()
    keys: list[str] = []
    window = pdef.get_prev_partition_window(now, respect_bounds=False)
    while window is not None and len(keys) < n and window.start.timestamp() >= first:
        if window.end.timestamp() <= now.timestamp():  # never a window still in progress
            keys.extend(pdef.get_partition_keys_in_time_window(window))
        window = pdef.get_prev_partition_window(window.start, respect_bounds=False)
    return keys[::-1]
