"""When things happen: partition windows, the schedule, catch-up and load deadlines."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from etl_assets.core.cron import is_valid_cron
from etl_assets.core.weekdays import WEEKDAYS, Weekday
from etl_assets.spec.base import Cadence, Strict, parse_duration
from etl_assets.spec.help import describe_fields


class PartitionSpec(Strict):
    """Time windows in the pipeline's timezone: a named cadence, or any 5-field cron."""

    cadence: Literal[Cadence, "cron"] = "weekly"
    week_start: Weekday = "sunday"
    # After cadence and week_start, so its validator can check the first window against them.
    start: dt.date
    # Validated even when absent, so `cadence: cron` without it is an error on this field.
    cron: str | None = Field(default=None, validate_default=True)

    @field_validator("start")
    @classmethod
    def _start_on_boundary(cls, v: dt.date, info: ValidationInfo) -> dt.date:
        """The first partition starts where a window starts, not part-way into one."""
        cadence, week_start = info.data.get("cadence"), info.data.get("week_start")
        if cadence == "weekly" and week_start and WEEKDAYS[(v.weekday() + 1) % 7] != week_start:
            raise ValueError(f"{v} is a {v.strftime('%A')}, but week_start is {week_start}")
        if cadence == "monthly" and v.day != 1:
            raise ValueError(f"{v} is not the 1st of a month, and monthly partitions start on the 1st")
        return v

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None, info: ValidationInfo) -> str | None:
        if "cadence" not in info.data:
            return v  # the cadence error already says what to fix
        cadence = info.data["cadence"]
        if v is None:
            if cadence == "cron":
                raise ValueError('cadence cron needs a cron expression, e.g. cron: "0 6 * * 1"')
            return None
        if cadence != "cron":
            raise ValueError(f"cron is only used with cadence: cron (cadence is {cadence})")
        expression = " ".join(v.split())
        if len(expression.split()) != 5 or not is_valid_cron(expression):
            raise ValueError(
                f"{v!r} is not a 5-field cron expression (minute hour day-of-month month "
                "day-of-week), e.g. \"0 6 * * 1\""
            )
        return expression


class ScheduleSpec(Strict):
    """When a partition is processed: at a local time after its window closes.

    `day_of_week` (weekly; default: week_start) and `day_of_month` (monthly; default 1)
    pick the day; hourly and shorter cadences use only the minutes of `at`.
    """

    at: str = "00:00"
    day_of_week: Weekday | None = None
    day_of_month: int | None = Field(default=None, ge=1, le=28)
    enabled: bool = True

    @field_validator("at")
    @classmethod
    def _at(cls, v: str) -> str:
        m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", v)
        if not m:
            raise ValueError(f"{v!r} is not a time of day HH:MM")
        return f"{int(m.group(1)):02d}:{m.group(2)}"

    def conflict(self, cadence: str) -> str | None:
        """What was written here that `cadence` cannot honour, or None; checked per pipeline."""
        given = self.model_fields_set
        if "day_of_week" in given and self.day_of_week and cadence != "weekly":
            return f"schedule.day_of_week applies to weekly partitions only (cadence is {cadence})"
        if "day_of_month" in given and self.day_of_month and cadence != "monthly":
            return (
                f"schedule.day_of_month applies to monthly partitions only (cadence is {cadence})"
            )
        if "at" in given and cadence == "cron":
            return "schedule.at does not apply to cadence: cron; the cron says when windows close"
        return None


class CatchupSpec(Strict):
    """Which missed partitions a schedule tick requests: at most `window` back, oldest first.

    `catchup: false` keeps a tick to the latest complete partition.
    """

    @staticmethod
    def _schema(schema: dict[str, Any]) -> None:
        # `catchup: false` is valid YAML for this model; editors should accept it too.
        describe_fields(schema, CatchupSpec)
        model = dict(schema)
        schema.clear()
        schema.update(anyOf=[model, {"type": "boolean"}], title=model.get("title"))

    model_config = ConfigDict(**{**Strict.model_config, "json_schema_extra": _schema})

    enabled: bool = True
    window: int = Field(default=8, ge=1, le=1000)
    max_runs_per_tick: int = Field(default=8, ge=1, le=100)

    @model_validator(mode="before")
    @classmethod
    def _bool(cls, v: Any) -> Any:
        return {"enabled": v} if isinstance(v, bool) else v

    @property
    def lookback(self) -> int:
        return self.window if self.enabled else 1

    @property
    def runs_per_tick(self) -> int:
        return self.max_runs_per_tick if self.enabled else 1


DEADLINE_AT = re.compile(r"^(?:(mon|tue|wed|thu|fri|sat|sun)(?:day|sday|nesday|rsday|urday)?\s+)?([01]?\d|2[0-3]):([0-5]\d)$", re.I)
DAY_ABBR = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index: datetime.weekday()


class DeadlineSpec(Strict):
    """When each partition must be loaded: `after_window_end` (elapsed time after its window
    ends) or `at`, the first such local time after it ("Mon 09:00", or "09:00" on any day).
    """

    after_window_end: str | None = Field(
        default=None, description="Elapsed time after the window ends, e.g. 9h, 30m, 2d."
    )
    at: str | None = Field(
        default=None,
        description='The first such local time after the window ends: "Mon 09:00", or "09:00" on any day.',
    )

    @field_validator("after_window_end")
    @classmethod
    def _after(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @field_validator("at")
    @classmethod
    def _at(cls, v: str | None) -> str | None:
        if v is not None and not DEADLINE_AT.match(v.strip()):
            raise ValueError(f'{v!r} is not a local time: use "09:00" or a day and time, "Mon 09:00"')
        return v

    @model_validator(mode="after")
    def _one(self) -> DeadlineSpec:
        if (self.after_window_end is None) == (self.at is None):
            raise ValueError('give exactly one of after_window_end (e.g. 9h) or at (e.g. "Mon 09:00")')
        return self

    @property
    def delay(self) -> dt.timedelta | None:
        return parse_duration(self.after_window_end) if self.after_window_end else None

    @property
    def local_time(self) -> tuple[int | None, dt.time] | None:
        """(weekday, Monday 0, or None for any day; time of day) of `at`."""
        m = DEADLINE_AT.match((self.at or "").strip())
        if not m:
            return None
        day = DAY_ABBR.index(m.group(1).lower()) if m.group(1) else None
        return day, dt.time(int(m.group(2)), int(m.group(3)))

