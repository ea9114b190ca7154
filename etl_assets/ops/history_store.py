"""Run history in `etl_meta`: writing a run's record, the JSON run log, and reading them back.

Writing is idempotent: recording a run twice (the sensor and a retry of it) leaves one row
per run and per source.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from upath import UPath

from etl_assets.core import tags as tag
from etl_assets.core.outcome import RunOutcome
from etl_assets.spec import PipelineSpec

if TYPE_CHECKING:
    import dagster as dg


def write_record(conn: psycopg.Connection, outcome: RunOutcome) -> None:
    """Idempotent: recording the same run twice leaves one row per run and per source."""
    record = outcome.as_record()
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO etl_meta.runs (run_id, pipeline, partitions, trigger, started_by, started_at,
                finished_at, duration_s, status, error_type, error_summary, peak_rss_mb, cpu_s, retries,
                report_path, webserver_url, steps, notes)
            VALUES (%(run_id)s, %(pipeline)s, %(partitions)s, %(trigger)s, %(started_by)s, %(started_at)s,
                %(finished_at)s, %(duration_s)s, %(status)s, %(error_type)s, %(error_summary)s,
                %(peak_rss_mb)s, %(cpu_s)s, %(retries)s, %(report_path)s, %(webserver_url)s,
                %(steps)s, %(notes)s)
            ON CONFLICT (run_id) DO UPDATE SET
                pipeline = EXCLUDED.pipeline, partitions = EXCLUDED.partitions,
                trigger = EXCLUDED.trigger, started_by = EXCLUDED.started_by, started_at = EXCLUDED.started_at,
                finished_at = EXCLUDED.finished_at, duration_s = EXCLUDED.duration_s,
                status = EXCLUDED.status, error_type = EXCLUDED.error_type,
                error_summary = EXCLUDED.error_summary, peak_rss_mb = EXCLUDED.peak_rss_mb,
                cpu_s = EXCLUDED.cpu_s, retries = EXCLUDED.retries,
                report_path = EXCLUDED.report_path, webserver_url = EXCLUDED.webserver_url,
                steps = EXCLUDED.steps, notes = EXCLUDED.notes, recorded_at = now()
            """,
            {**record, "steps": Jsonb(record["steps"]), "notes": Jsonb(record["notes"])},
        )
        conn.execute("DELETE FROM etl_meta.run_sources WHERE run_id = %s", (outcome.run_id,))
        for name, s in outcome.sources.items():
            conn.execute(
                """
                INSERT INTO etl_meta.run_sources (run_id, source, status, rows_extracted,
                    rows_quarantined, inserted, updated, unchanged, deleted, checks_passed,
                    checks_warned, checks_failed, checks, inputs, error, partitions)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                (
                    outcome.run_id, name, s.status, s.rows_extracted, s.rows_quarantined,
                    s.inserted, s.updated, s.unchanged, s.deleted, s.checks_passed,
                    len(s.checks_warned), len(s.checks_failed), Jsonb(s.checks), Jsonb(s.inputs),
                    s.error, Jsonb(record["sources"][name]["partitions"]),
                ),
            )


def write_json_log(base: str, outcome: RunOutcome) -> str:
    """The run's full record as `<base>/<pipeline>/runs/<run_id>.json`, written atomically."""
    folder = UPath(base) / outcome.pipeline / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{outcome.run_id}.json"
    tmp = folder / f".{outcome.run_id}.json.tmp"
    tmp.write_text(json.dumps(outcome.as_record(), indent=2, default=str, sort_keys=True), encoding="utf-8")
    tmp.rename(path)
    return str(path)


UNITS = {"weekly": "week", "daily": "day", "hourly": "hour", "monthly": "month"}


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}{'' if n == 1 else 's'}"


def missed_tick_note(conn: psycopg.Connection, spec: PipelineSpec, run: dg.DagsterRun) -> str | None:
    """Record a catch-up tick once; the first of its runs to finish says so in its alert."""
    tags = run.tags
    tick = tags.get(tag.TICK)
    if not tick:
        return None
    caught = [k for k in tags.get(tag.CAUGHT_UP, "").split(",") if k]
    outside = [k for k in tags.get(tag.OUTSIDE_WINDOW, "").split(",") if k]
    conn.execute(
        "INSERT INTO etl_meta.missed_ticks (pipeline, tick, caught_up, outside_window) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (pipeline, tick) DO NOTHING",
        (spec.name, tick, caught, outside),
    )
    claimed = conn.execute(
        "UPDATE etl_meta.missed_ticks SET notified_run_id = %s WHERE pipeline = %s AND tick = %s "
        "AND (notified_run_id IS NULL OR notified_run_id = %s) RETURNING 1",
        (run.run_id, spec.name, tick, run.run_id),
    ).fetchone()
    if not claimed:
        return None
    unit = UNITS.get(spec.partitions.cadence, "partition")
    note = f"{_plural(len(caught), 'missed ' + unit)} {'was' if len(caught) == 1 else 'were'} caught up after downtime"
    if outside:
        how = (
            f"--partition {outside[0]}" if len(outside) == 1 else f"--from {outside[0]} --to {outside[-1]}"
        )
        note += (
            f"; {_plural(len(outside), 'older ' + unit)} {'is' if len(outside) == 1 else 'are'} outside the "
            f"catch-up window: run `etl-assets run {spec.name} {how}`"
        )
    return note


def set_pipeline_state(conn: psycopg.Connection, pipeline: str, status: str, reason: str | None) -> None:
    conn.execute(
        "INSERT INTO etl_meta.pipeline_state (pipeline, status, reason) VALUES (%s, %s, %s) "
        "ON CONFLICT (pipeline) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason, "
        "updated_at = now()",
        (pipeline, status, reason),
    )


def _dicts(cur: psycopg.Cursor[Any]) -> list[dict[str, Any]]:
    """A result's rows as dicts by column name."""
    names = [d.name for d in cur.description or []]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _with_sources(conn: psycopg.Connection, run: dict[str, Any]) -> dict[str, Any]:
    """A run's row with its per-source rows under "sources", by source name."""
    cur = conn.execute("SELECT * FROM etl_meta.run_sources WHERE run_id = %s ORDER BY source", (run["run_id"],))
    run["sources"] = {r["source"]: r for r in _dicts(cur)}
    return run


def list_runs(
    conn: psycopg.Connection,
    *,
    pipeline: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    limit: int = 20,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Recorded runs, newest first. `status="failed"` includes partial runs: they failed too."""
    where: list[sql.Composable] = [sql.SQL("true")]
    params: list[Any] = []
    if pipeline:
        where.append(sql.SQL("pipeline = %s"))
        params.append(pipeline)
    if status:
        where.append(sql.SQL("status = ANY(%s)"))
        params.append(["failed", "partial"] if status == "failed" else [status])
    if since:
        where.append(sql.SQL("started_at >= %s"))
        params.append(since)
    stmt = sql.SQL(
        "SELECT * FROM etl_meta.runs WHERE {} ORDER BY started_at DESC NULLS LAST, run_id LIMIT %s OFFSET %s"
    ).format(sql.SQL(" AND ").join(where))
    return [_with_sources(conn, run) for run in _dicts(conn.execute(stmt, [*params, limit, offset]))]


def _scalar(row: tuple[Any, ...] | None) -> Any:
    """The one value of an aggregate's one row."""
    assert row is not None, "an aggregate always returns a row"
    return row[0]


def count_runs(conn: psycopg.Connection, pipeline: str | None = None) -> int:
    """How many runs are recorded, for one pipeline or all."""
    if pipeline:
        return int(_scalar(conn.execute("SELECT count(*) FROM etl_meta.runs WHERE pipeline = %s", (pipeline,)).fetchone()))
    return int(_scalar(conn.execute("SELECT count(*) FROM etl_meta.runs").fetchone()))


def get_run(conn: psycopg.Connection, run_id: str) -> dict[str, Any] | None:
    """The run `run_id` names, in full or by a unique prefix; None when none or several match."""
    cur = conn.execute("SELECT run_id FROM etl_meta.runs WHERE run_id = %s OR run_id LIKE %s", (run_id, f"{run_id}%"))
    ids = [r[0] for r in cur.fetchall()]
    if len(ids) != 1:
        return None
    return _with_sources(conn, _dicts(conn.execute("SELECT * FROM etl_meta.runs WHERE run_id = %s", (ids[0],)))[0])


def statuses(conn: psycopg.Connection, run_ids: list[str]) -> dict[str, str]:
    """The recorded status word (success, failed, partial, canceled) of each of these runs."""
    rows = conn.execute("SELECT run_id, status FROM etl_meta.runs WHERE run_id = ANY(%s)", (run_ids,)).fetchall()
    return dict(rows)
