"""Deadline alerts: a partition not loaded by its pipeline's `deadline` is said once, with its
state and the command that loads it; a later load says "recovered", once.

Deadlines are instants computed from the window (`Window.end_utc`), never from a wall-clock
reading of the key. A sensor evaluates the partitions whose deadline passed since its cursor;
`etl_meta.deadline_alerts` records each alert, so nothing is alerted twice even if a cursor
is lost.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg

from etl_assets.core.partitions import Window, latest_complete_keys, partitions_def, window_for
from etl_assets.ops import history, notify
from etl_assets.orchestration.schedules import in_flight, materialized_partitions
from etl_assets.spec import PipelineSpec

SENSOR_NAME = "etl_deadline_sensor"
UTC = dt.timezone.utc


def _occurrence(spec: PipelineSpec, date: dt.date) -> dt.datetime | None:
    """`deadline.at` on `date` as an instant, or None when `date` is not its weekday."""
    local = spec.deadline.local_time if spec.deadline else None
    assert local is not None, "only a deadline with `at` has a local time"
    day, at = local
    if day is not None and date.weekday() != day:
        return None
    # A local time skipped by spring-forward reads with the offset before the jump (an hour later).
    return dt.datetime.combine(date, at, tzinfo=ZoneInfo(spec.timezone)).astimezone(UTC)


def deadline_of(spec: PipelineSpec, window: Window) -> dt.datetime:
    """When the partition of `window` must be loaded: elapsed time after its end, or the first
    `at` strictly after it."""
    assert spec.deadline is not None
    end = window.end_utc
    if spec.deadline.delay is not None:
        return end + spec.deadline.delay
    local_end = end.astimezone(ZoneInfo(spec.timezone)).date()
    for i in range(9):
        when = _occurrence(spec, local_end + dt.timedelta(days=i))
        if when is not None and when > end:
            return when
    raise AssertionError("a weekday recurs within 8 days")


def _ended_by(spec: PipelineSpec, now: dt.datetime) -> dt.datetime:
    """Windows ending at or before this instant are due by `now`; later ones are not."""
    assert spec.deadline is not None
    if spec.deadline.delay is not None:
        return now - spec.deadline.delay
    today = now.astimezone(ZoneInfo(spec.timezone)).date()
    for i in range(9):
        when = _occurrence(spec, today - dt.timedelta(days=i))
        if when is not None and when <= now:
            return when - dt.timedelta(microseconds=1)  # a window ending at `when` is due next time
    raise AssertionError("a weekday recurs within 8 days")


def due(spec: PipelineSpec, now: dt.datetime, since: dt.datetime | None) -> list[tuple[str, dt.datetime]]:
    """(partition, deadline) of the last `catchup.window` partitions due in (since, now]."""
    pdef = partitions_def(spec)
    out = []
    for key in latest_complete_keys(pdef, spec.catchup.window, _ended_by(spec, now)):
        deadline = deadline_of(spec, window_for(pdef, key))
        if deadline <= now and (since is None or deadline > since):
            out.append((key, deadline))
    return out


def _last_run(conn: psycopg.Connection, pipeline: str, key: str) -> tuple[str, str, str | None] | None:
    """(run id, status, error) of the newest recorded run that covered the partition."""
    return conn.execute(
        "SELECT run_id, status, error_summary FROM etl_meta.runs WHERE pipeline = %s AND %s = ANY(partitions) "
        "ORDER BY finished_at DESC NULLS LAST LIMIT 1",
        (pipeline, key),
    ).fetchone()


def state_of(instance: dg.DagsterInstance, conn: psycopg.Connection, spec: PipelineSpec, key: str) -> tuple[str, str]:
    """(state, one sentence) of a partition that is not loaded."""
    if in_flight(instance, spec, [key]):
        return "running", "a run covering it is still queued or running."
    last = _last_run(conn, spec.name, key)
    if last is None or last[1] == "success":
        return "not loaded", "no run has processed it yet."
    run_id, status, error = last
    return status, f"its last run ({run_id[:8]}) {status}" + (f": {error}" if error else ".")


def _claim(conn: psycopg.Connection, pipeline: str, key: str, deadline: dt.datetime, state: tuple[str, str], now: dt.datetime) -> bool:
    """Record the alert; False when this partition was alerted before."""
    return bool(conn.execute(
        "INSERT INTO etl_meta.deadline_alerts (pipeline, partition, deadline, state, detail, alerted_at) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (pipeline, partition) DO NOTHING RETURNING 1",
        (pipeline, key, deadline, state[0], state[1], now),
    ).fetchone())


def _recoveries(conn: psycopg.Connection, spec: PipelineSpec, loaded: set[str], now: dt.datetime) -> list[tuple[str, dt.datetime]]:
    """Alerted partitions loaded since, each marked recovered (and returned) once."""
    rows = conn.execute(
        "SELECT partition, deadline FROM etl_meta.deadline_alerts WHERE pipeline = %s AND recovered_at IS NULL",
        (spec.name,),
    ).fetchall()
    out = []
    for key, deadline in rows:
        if key in loaded and conn.execute(
            "UPDATE etl_meta.deadline_alerts SET recovered_at = %s WHERE pipeline = %s AND partition = %s "
            "AND recovered_at IS NULL RETURNING 1",
            (now, spec.name, key),
        ).fetchone():
            out.append((key, deadline))
    return out


def alert_deadlines(
    instance: dg.DagsterInstance,
    specs: Sequence[PipelineSpec],
    cursor: dict[str, str],
    now: dt.datetime,
    *,
    warehouse_url: str,
    slack: notify.SlackNotifier | None,
    email: notify.EmailNotifier | None,
    log: notify.Log,
) -> dict[str, str]:
    """Alert partitions due since each pipeline's cursor and not loaded, and recoveries; the new cursor."""
    now = now.astimezone(UTC)
    new_cursor = dict(cursor)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        history.migrate(conn)
        for spec in specs:
            if spec.deadline is None:
                continue
            since = dt.datetime.fromisoformat(cursor[spec.name]) if spec.name in cursor else None
            loaded = materialized_partitions(instance, spec)
            all_sent = True
            for key, deadline in due(spec, now, since):
                if key in loaded:
                    continue
                state = state_of(instance, conn, spec, key)
                if _claim(conn, spec.name, key, deadline, state, now):
                    command = f"etl-assets run {spec.name} --partition {key}"
                    alert = notify.deadline_missed_alert(spec.name, key, deadline, spec.timezone, state[1], command)
                    if not _went_out(notify.notify_alert(alert, [spec.notify], slack, email, log)):
                        # Nothing reached anyone: forget the claim, so the next tick tries again.
                        _release(conn, spec.name, key, "alerted_at")
                        all_sent = False
            for key, deadline in _recoveries(conn, spec, loaded, now):
                last = _last_run(conn, spec.name, key)
                how = f"run {last[0][:8]} loaded it" if last and last[1] == "success" else "it was loaded"
                alert = notify.deadline_recovered_alert(spec.name, key, deadline, spec.timezone, how)
                if not _went_out(notify.notify_alert(alert, [spec.notify], slack, email, log)):
                    _release(conn, spec.name, key, "recovered_at")
            if all_sent:  # else the cursor stays, so the unsent partitions are due again
                new_cursor[spec.name] = now.isoformat()
    return new_cursor


def _went_out(sent: dict[str, bool]) -> bool:
    """True when some channel took the alert, or the pipeline names no channel at all."""
    return not sent or any(sent.values())


def _release(conn: psycopg.Connection, pipeline: str, key: str, what: str) -> None:
    """Undo a claim whose alert reached no one: the row for a missed deadline, the mark of a recovery."""
    if what == "alerted_at":
        conn.execute(
            "DELETE FROM etl_meta.deadline_alerts WHERE pipeline = %s AND partition = %s", (pipeline, key)
        )
    else:
        conn.execute(
            "UPDATE etl_meta.deadline_alerts SET recovered_at = NULL WHERE pipeline = %s AND partition = %s",
            (pipeline, key),
        )


def build_deadline_sensors(
    specs: Sequence[PipelineSpec], clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC)
) -> list[dg.SensorDefinition]:
    """`etl_deadline_sensor` when some pipeline has a deadline; `clock` is its notion of now."""
    watched = [s for s in specs if s.deadline is not None]
    if not watched:
        return []
    channels = set(notify.notifier_resources(watched))

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={"warehouse", *channels},
        description="Alerts partitions not loaded by their pipeline's deadline, and their recovery.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        res = context.resources
        cursor = alert_deadlines(
            context.instance, watched, json.loads(context.cursor) if context.cursor else {}, clock(),
            warehouse_url=res.warehouse.url,
            slack=res.slack if "slack" in channels else None,
            email=res.email if "email" in channels else None,
            log=context.log,
        )
        context.update_cursor(json.dumps(cursor, sort_keys=True))
        return dg.SkipReason("deadlines evaluated; missed ones are alerted, not run")

    return [_sensor]
