"""Failed schedule and sensor ticks are alerted: the daemon itself only logs them.

A schedule whose evaluation raises launches nothing and fails no run, so no run alert can
tell anyone. A sensor reads the instance's tick history and alerts each failure once; its
cursor holds, per schedule or sensor, the newest failed tick already alerted.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import dagster as dg

from etl_assets import dagster_internal
from etl_assets.ops import notify
from etl_assets.spec import NotifySpec, PipelineSpec

SENSOR_NAME = "etl_tick_failure_sensor"


def _channels(name: str, specs: Sequence[PipelineSpec]) -> list[NotifySpec]:
    """A pipeline's schedule alerts that pipeline's channels; anything else alerts them all."""
    own = [s.notify for s in specs if name == f"{s.name}_schedule"]
    return own or [s.notify for s in specs]


def alert_failed_ticks(
    instance: dg.DagsterInstance,
    specs: Sequence[PipelineSpec],
    cursor: dict[str, int],
    *,
    slack: notify.SlackNotifier | None,
    email: notify.EmailNotifier | None,
    log: notify.Log,
) -> dict[str, int]:
    """One alert per schedule or sensor with new failed ticks (the newest's error); the new cursor."""
    failures, seen = dagster_internal.tick_failures(instance, cursor)
    by_name: dict[tuple[str, str], list[dagster_internal.FailedTick]] = {}
    for f in failures:
        by_name.setdefault((f.kind, f.name), []).append(f)
    for (kind, name), ticks in by_name.items():
        newest = ticks[-1]
        at = dt.datetime.fromtimestamp(newest.timestamp, dt.timezone.utc)
        alert = notify.tick_failure_alert(kind, name, at, newest.error, count=len(ticks))
        notify.notify_alert(alert, _channels(name, specs), slack, email, log)
    return seen


def build_tick_sensor(specs: Sequence[PipelineSpec]) -> dg.SensorDefinition:
    """`etl_tick_failure_sensor`, sending through the Slack and email resources that exist."""
    keys = set(notify.notifier_resources(list(specs)))

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys=keys,
        description="Alerts each failed schedule or sensor tick once, naming it and its error.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        cursor: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
        resources = context.resources
        seen = alert_failed_ticks(
            context.instance, specs, cursor,
            slack=getattr(resources, "slack", None) if "slack" in keys else None,
            email=getattr(resources, "email", None) if "email" in keys else None,
            log=context.log,
        )
        context.update_cursor(json.dumps(seen, sort_keys=True))
        return dg.SkipReason("tick history read; failures are alerted, not run")

    return _sensor
