"""Week days as specs spell them, in a module without dependencies (specs load without Dagster).

In Dagster's `day_offset` order (Sunday is 0): the weekly partitions definition needs the order.
"""

from __future__ import annotations

from typing import Literal, get_args

Weekday = Literal["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
WEEKDAYS: tuple[str, ...] = get_args(Weekday)
