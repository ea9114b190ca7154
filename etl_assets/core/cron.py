"""Which cron expressions a spec may hold: exactly the ones Dagster's scheduler accepts.

The same rules as Dagster's `is_valid_cron_string` (croniter accepts it, five fields, never the
30th or 31st of February), without loading Dagster: specs are read by commands that need
nothing else of it. `etl_assets_tests/test_dagster_internal.py` checks both agree.
"""

from __future__ import annotations

from croniter import croniter


def is_valid_cron(expression: str) -> bool:
    fields = expression.split()
    # croniter 2+ knows `W` (nearest weekday) in the day of month; the croniter Dagster vendors,
    # which its scheduler runs, does not.
    if len(fields) == 5 and "w" in fields[2].lower():
        return False
    if not croniter.is_valid(expression):
        return False
    expanded, *_ = croniter.expand(expression)
    if len(expanded) != 5:  # seconds or years: the scheduler ticks in minutes
        return False
    day, month = expanded[2], expanded[3]
    return not (len(month) == 1 and month[0] == 2 and len(day) == 1 and day[0] in {30, 31})
