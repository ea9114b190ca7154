"""Run history: what ran, when, on which inputs, what changed, what failed, what was produced.

A run's record is built from Dagster's event log, so a run launched by the daemon, from the UI
or by `etl-assets run` is described the same way. It is stored in the warehouse schema
`etl_meta` (versioned, idempotent migrations) and as a JSON log per run.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
from typing import Any

import dagster as dg
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from upath import UPath

from etl_assets.warehouse import lock_key

SCHEMA = "etl_meta"

# Each entry upgrades the schema by one version; never edit a released entry, append one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE etl_meta.runs (
        run_id        text PRIMARY KEY,
        pipeline      text NOT NULL,
        partitions    text[] NOT NULL,
        trigger       text NOT NULL,
        started_at    timestamptz,
        finished_at   timestamptz,
        duration_s    double precision,
        status        text NOT NULL,
        error_type    text,
        error_summary text,
        peak_rss_mb   double precision,
        cpu_s         double precision,
        retries       integer NOT NULL DEFAULT 0,
        report_path   text,
        webserver_url text,
        steps         jsonb NOT NULL DEFAULT '{}',
        notes         jsonb NOT NULL DEFAULT '[]',
        recorded_at   timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX runs_pipeline_started_idx ON etl_meta.runs (pipeline, started_at DESC);
    CREATE TABLE etl_meta.run_sources (
        run_id           text NOT NULL REFERENCES etl_meta.runs (run_id) ON DELETE CASCADE,
        source           text NOT NULL,
        status           text NOT NULL,
        rows_extracted   bigint,
        rows_quarantined bigint,
        inserted         bigint,
        updated          bigint,
        unchanged        bigint,
        deleted          bigint,
        checks_passed    integer,
        checks_warned    integer,
        checks_failed    integer,
        checks           jsonb NOT NULL DEFAULT '[]',
        inputs           jsonb NOT NULL DEFAULT '{}',
        error            text,
        PRIMARY KEY (run_id, source)
    );
    CREATE TABLE etl_meta.pipeline_state (
        pipeline   text PRIMARY KEY,
        status     text NOT NULL,
        reason     text,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    """,
    """
    CREATE TABLE etl_meta.missed_ticks (
        pipeline        text NOT NULL,
        tick            text NOT NULL,
        caught_up       text[] NOT NULL,
        outside_window  text[] NOT NULL,
        recorded_at     timestamptz NOT NULL DEFAULT now(),
        notified_run_id text,
        PRIMARY KEY (pipeline, tick)
    );
    """,
]


def migrate(conn: psycopg.Connection) -> int:
    """Bring `etl_meta` to the latest version; safe to call from many processes at once."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("etl_meta", "migrate"),))
        conn.execute("CREATE SCHEMA IF NOT EXISTS etl_meta")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS etl_meta.schema_version ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = conn.execute("SELECT coalesce(max(version), 0) FROM etl_meta.schema_version").fetchone()[0]
        for version, statement in enumerate(MIGRATIONS, start=1):
            if version > current:
                conn.execute(statement)
                conn.execute("INSERT INTO etl_meta.schema_version (version) VALUES (%s)", (version,))
        return len(MIGRATIONS)


# --- step metrics ---------------------------------------------------------------------------


def usage() -> resource.struct_rusage:
    return resource.getrusage(resource.RUSAGE_SELF)


def step_metrics(start: resource.struct_rusage) -> dict[str, Any]:
    """CPU seconds of the step and peak RSS of its process, for the asset's metadata."""
    end = usage()
    cpu = (end.ru_utime + end.ru_stime) - (start.ru_utime + start.ru_stime)
    return {
        "etl/cpu_s": dg.MetadataValue.float(round(cpu, 3)),
        "etl/peak_rss_mb": dg.MetadataValue.float(round(end.ru_maxrss / 1024, 1)),
    }


# --- building a run record from the event log -----------------------------------------------


def _value(v: Any) -> Any:
    return getattr(v, "value", v)


def trigger_of(tags: dict[str, str]) -> str:
    if tags.get("dagster/parent_run_id") or tags.get("dagster/retry_number"):
        return "retry"
    if tags.get("dagster/schedule_name") or tags.get("etl/trigger") == "schedule":
        return "schedule"
    if tags.get("dagster/backfill"):
        return "backfill"
    if tags.get("etl/trigger") == "cli":
        return "cli"
    return "manual"


def pipeline_of(run: dg.DagsterRun, instance: dg.DagsterInstance | None = None) -> str | None:
    """Which pipeline a run belongs to: its tag, its asset selection, its job or its steps."""
    if run.tags.get("etl/pipeline"):
        return run.tags["etl/pipeline"]
    for key in run.asset_selection or []:
        return key.path[0]
    if run.job_name.endswith("_job") and not run.job_name.startswith("__"):
        return run.job_name.removesuffix("_job")
    if instance is not None:  # ad-hoc asset runs: step keys are <pipeline>__<layer>__<source>
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START):
            if entry.step_key:
                return entry.step_key.split("__")[0]
    return None


def partitions_of(run: dg.DagsterRun, spec: Any) -> list[str]:
    from etl_assets.partitions import partitions_def

    tags = run.tags
    if tags.get("dagster/partition"):
        return [tags["dagster/partition"]]
    first, last = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if first and last:
        pdef = partitions_def(spec)
        return list(pdef.get_partition_keys_in_range(dg.PartitionKeyRange(first, last)))
    return []


def build_record(
    instance: dg.DagsterInstance, run_id: str, spec: Any, *, webserver_url: str | None = None
) -> dict[str, Any]:
    """Everything history and notifications say about one finished run."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise KeyError(f"no run {run_id}")
    rec = instance.get_run_record_by_id(run_id)
    P = spec.name
    sources: dict[str, dict[str, Any]] = {
        s.name: {
            "status": "skipped", "rows_extracted": None, "rows_quarantined": None, "inserted": None,
            "updated": None, "unchanged": None, "deleted": None, "checks_passed": None,
            "checks_warned": [], "checks_failed": [], "checks": [], "inputs": {}, "error": None,
        }
        for s in spec.sources
    }
    steps: dict[str, dict[str, Any]] = {}
    failures: list[tuple[str | None, str, str | None]] = []
    retries = 0
    peak, cpu = 0.0, 0.0
    report_path = None
    messages: list[str] = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        et = event.event_type
        if et in (dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED) and event.message:
            messages.append(event.message)
        if entry.step_key:
            step = steps.setdefault(entry.step_key, {})
            if et == dg.DagsterEventType.STEP_START:
                step.setdefault("started", entry.timestamp)
            elif et in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                step["finished"] = entry.timestamp
                step["status"] = "success" if et == dg.DagsterEventType.STEP_SUCCESS else "failed"
        if et == dg.DagsterEventType.STEP_UP_FOR_RETRY:
            retries += 1
        elif et == dg.DagsterEventType.ASSET_MATERIALIZATION:
            mat = entry.asset_materialization
            meta = {k: _value(v) for k, v in mat.metadata.items()}
            peak = max(peak, float(meta.get("etl/peak_rss_mb") or 0))
            cpu += float(meta.get("etl/cpu_s") or 0)
            key = mat.asset_key.path
            if key == [P, "report"]:
                report_path = meta.get("report_path")
                continue
            if len(key) != 3 or key[2] not in sources:
                continue
            s = sources[key[2]]
            if key[1] == "raw":
                s["rows_extracted"] = _sum_partitioned(meta.get("rows_by_partition"), s["rows_extracted"])
                s["inputs"].update(meta.get("inputs") or {})
            elif key[1] == "validated":
                s["checks_passed"] = meta.get("checks_passed")
                by_part = meta.get("checks_by_partition") or {}
                s["checks"] = [c for part in by_part.values() for c in part]
                failing = [c for c in s["checks"] if not c["passed"]]
                s["checks_warned"] = sorted({c["name"] for c in failing if c["severity"] == "warn"})
                s["checks_failed"] = sorted({c["name"] for c in failing if c["severity"] == "error"})
                s["rows_quarantined"] = meta.get("rows_quarantined", s["rows_quarantined"])
            elif key[1] == "loaded":
                for f in ("inserted", "updated", "unchanged", "deleted"):
                    s[f] = int(meta.get(f) or 0)
                s["status"] = "success"
        elif et == dg.DagsterEventType.STEP_FAILURE:
            data = event.step_failure_data
            desc = (
                data.user_failure_data.description
                if data.user_failure_data and data.user_failure_data.description
                else (data.error.message.strip().splitlines()[0] if data.error else "step failed")
            )
            err_type = None
            if data.user_failure_data:
                err_type = _value(data.user_failure_data.metadata.get("error_type"))
            if err_type is None and data.error:
                err_type = data.error.cls_name
            parts = (entry.step_key or "").split("__")
            src = parts[2] if len(parts) == 3 and parts[2] in sources else None
            failures.append((src, desc, err_type))
            if src:
                sources[src]["status"] = "failed"
                sources[src]["error"] = sources[src]["error"] or desc
    for st in steps.values():
        if "started" in st and "finished" in st:
            st["duration_s"] = round(st["finished"] - st["started"], 3)

    statuses = [s["status"] for s in sources.values()]
    if run.status == dg.DagsterRunStatus.SUCCESS:
        status = "success"
    elif run.status == dg.DagsterRunStatus.CANCELED:
        status = "canceled"
    elif "success" in statuses and any(x != "success" for x in statuses):
        status = "partial"
    else:
        status = "failed"
    error_type = error_summary = failing_source = None
    if failures:
        failing_source, error_summary, error_type = failures[0]
        if failing_source:
            error_summary = error_summary if error_summary.startswith(f"{P}/") else f"{failing_source}: {error_summary}"
    elif status in ("failed", "canceled"):
        # No step failed: the run itself died (worker killed, OOM, lost) or was canceled.
        # No step failed, yet the run did: its worker process died (SIGKILL, out of memory,
        # a lost host), whoever noticed first (run monitoring, the code server) marked it.
        lost = [m for m in messages if "run worker" in m.lower()]
        timed_out = [m for m in messages if "maximum runtime" in m.lower() or "max_runtime" in m.lower()]
        cut_short = [k for k, st in steps.items() if "started" in st and "finished" not in st]
        if status == "canceled":
            error_type = "canceled"
        elif timed_out:
            error_type, lost = "timeout", timed_out
        else:
            error_type = "worker_lost"
            if not lost:
                during = f" during step {cut_short[0]}" if cut_short else ""
                lost = [f"the run worker stopped{during} without reporting why (killed, out of memory or lost)"]
        error_summary = (lost or messages or ["the run ended without a step failure"])[-1].strip().splitlines()[0][:500]
    started = rec.start_time if rec else None
    finished = rec.end_time if rec else None
    steps_json = {k: {kk: vv for kk, vv in v.items() if kk in ("status", "duration_s")} for k, v in steps.items()}
    return {
        "run_id": run_id,
        "pipeline": P,
        "partitions": partitions_of(run, spec),
        "trigger": trigger_of(run.tags),
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "duration_s": round(finished - started, 3) if started and finished else None,
        "status": status,
        "dagster_status": run.status.value,
        "will_retry": run.tags.get("dagster/will_retry") == "true",
        "error_type": error_type,
        "error_summary": error_summary,
        "failing_source": failing_source,
        "peak_rss_mb": peak or None,
        "cpu_s": round(cpu, 3) if cpu else None,
        "retries": retries,
        "report_path": report_path,
        "webserver_url": webserver_url,
        "run_url": f"{webserver_url.rstrip('/')}/runs/{run_id}" if webserver_url else None,
        "steps": steps_json,
        "sources": sources,
        "notes": [],
    }


def _sum_partitioned(by_partition: Any, current: Any) -> Any:
    if not isinstance(by_partition, dict):
        return current
    return (current or 0) + sum(int(v or 0) for v in by_partition.values())


def _iso(ts: float | None) -> str | None:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat() if ts else None


# --- writing and reading ---------------------------------------------------------------------


def write_record(conn: psycopg.Connection, record: dict[str, Any]) -> None:
    """Idempotent: recording the same run twice leaves one row per run and per source."""
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO etl_meta.runs (run_id, pipeline, partitions, trigger, started_at, finished_at,
                duration_s, status, error_type, error_summary, peak_rss_mb, cpu_s, retries,
                report_path, webserver_url, steps, notes)
            VALUES (%(run_id)s, %(pipeline)s, %(partitions)s, %(trigger)s, %(started_at)s,
                %(finished_at)s, %(duration_s)s, %(status)s, %(error_type)s, %(error_summary)s,
                %(peak_rss_mb)s, %(cpu_s)s, %(retries)s, %(report_path)s, %(webserver_url)s,
                %(steps)s, %(notes)s)
            ON CONFLICT (run_id) DO UPDATE SET
                pipeline = EXCLUDED.pipeline, partitions = EXCLUDED.partitions,
                trigger = EXCLUDED.trigger, started_at = EXCLUDED.started_at,
                finished_at = EXCLUDED.finished_at, duration_s = EXCLUDED.duration_s,
                status = EXCLUDED.status, error_type = EXCLUDED.error_type,
                error_summary = EXCLUDED.error_summary, peak_rss_mb = EXCLUDED.peak_rss_mb,
                cpu_s = EXCLUDED.cpu_s, retries = EXCLUDED.retries,
                report_path = EXCLUDED.report_path, webserver_url = EXCLUDED.webserver_url,
                steps = EXCLUDED.steps, notes = EXCLUDED.notes, recorded_at = now()
            """,
            {**record, "steps": Jsonb(record["steps"]), "notes": Jsonb(record["notes"])},
        )
        conn.execute("DELETE FROM etl_meta.run_sources WHERE run_id = %s", (record["run_id"],))
        for name, s in record["sources"].items():
            conn.execute(
                """
                INSERT INTO etl_meta.run_sources (run_id, source, status, rows_extracted,
                    rows_quarantined, inserted, updated, unchanged, deleted, checks_passed,
                    checks_warned, checks_failed, checks, inputs, error)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                (
                    record["run_id"], name, s["status"], s["rows_extracted"], s["rows_quarantined"],
                    s["inserted"], s["updated"], s["unchanged"], s["deleted"], s["checks_passed"],
                    len(s["checks_warned"]), len(s["checks_failed"]), Jsonb(s["checks"]), Jsonb(s["inputs"]),
                    s["error"],
                ),
            )


def write_json_log(base: str, record: dict[str, Any]) -> str:
    folder = UPath(base) / record["pipeline"] / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['run_id']}.json"
    tmp = folder / f".{record['run_id']}.json.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=str, sort_keys=True), encoding="utf-8")
    tmp.rename(path)
    return str(path)


UNITS = {"weekly": "week", "daily": "day", "hourly": "hour", "monthly": "month"}


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}{'' if n == 1 else 's'}"


def missed_tick_note(conn: psycopg.Connection, spec: Any, run: dg.DagsterRun) -> str | None:
    """Record a catch-up tick once; the first of its runs to finish says so in its alert."""
    tags = run.tags
    tick = tags.get("etl/tick")
    if not tick:
        return None
    caught = [k for k in tags.get("etl/caught_up", "").split(",") if k]
    outside = [k for k in tags.get("etl/outside_window", "").split(",") if k]
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


def list_runs(
    conn: psycopg.Connection,
    *,
    pipeline: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    limit: int = 20,
    offset: int = 0,
) -> list[dict[str, Any]]:
    where, params = [sql.SQL("true")], []
    for column, value in (("pipeline", pipeline), ("status", status)):
        if value:
            where.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if since:
        where.append(sql.SQL("started_at >= %s"))
        params.append(since)
    stmt = sql.SQL(
        "SELECT * FROM etl_meta.runs WHERE {} ORDER BY started_at DESC NULLS LAST, run_id LIMIT %s OFFSET %s"
    ).format(sql.SQL(" AND ").join(where))
    cur = conn.execute(stmt, [*params, limit, offset])
    names = [d.name for d in cur.description]
    runs = [dict(zip(names, r)) for r in cur.fetchall()]
    for run in runs:
        cur = conn.execute("SELECT * FROM etl_meta.run_sources WHERE run_id = %s ORDER BY source", (run["run_id"],))
        cols = [d.name for d in cur.description]
        run["sources"] = {r[1]: dict(zip(cols, r)) for r in cur.fetchall()}
    return runs


def get_run(conn: psycopg.Connection, run_id: str) -> dict[str, Any] | None:
    cur = conn.execute("SELECT run_id FROM etl_meta.runs WHERE run_id = %s OR run_id LIKE %s", (run_id, f"{run_id}%"))
    ids = [r[0] for r in cur.fetchall()]
    if len(ids) != 1:
        return None
    cur = conn.execute("SELECT * FROM etl_meta.runs WHERE run_id = %s", (ids[0],))
    names = [d.name for d in cur.description]
    run = dict(zip(names, cur.fetchone()))
    cur = conn.execute("SELECT * FROM etl_meta.run_sources WHERE run_id = %s ORDER BY source", (ids[0],))
    cols = [d.name for d in cur.description]
    run["sources"] = {r[1]: dict(zip(cols, r)) for r in cur.fetchall()}
    return run

