"""Run history: what ran, when, on which inputs, what changed, what failed, what was produced.

A run's record is built from Dagster's event log, so a run launched by the daemon, from the UI
or by `etl-assets run` is described the same way. It is stored in the warehouse schema
`etl_meta` (versioned, idempotent migrations) and as a JSON log per run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import graphlib
import json
import resource
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from upath import UPath

from etl_assets.core.secrets import redact
from etl_assets.warehouses.postgres import lock_key

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
    # Each source's counts per partition, as the run recorded them.
    "ALTER TABLE etl_meta.run_sources ADD COLUMN partitions jsonb NOT NULL DEFAULT '{}'",
    # Partitions alerted for missing their deadline: each is alerted once, its recovery once.
    """
    CREATE TABLE IF NOT EXISTS etl_meta.deadline_alerts (
        pipeline     text NOT NULL,
        partition    text NOT NULL,
        deadline     timestamptz NOT NULL,
        state        text NOT NULL,
        detail       text NOT NULL,
        alerted_at   timestamptz NOT NULL,
        recovered_at timestamptz,
        PRIMARY KEY (pipeline, partition)
    );
    """,
    # Who started a run through the job API or its UI (the `etl/started_by` tag).
    "ALTER TABLE etl_meta.runs ADD COLUMN started_by text",
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


STARTED_BY_TAG = "etl/started_by"


def trigger_of(tags: dict[str, str]) -> str:
    if tags.get("dagster/parent_run_id") or tags.get("dagster/retry_number"):
        return "retry"
    if tags.get("dagster/schedule_name") or tags.get("etl/trigger") == "schedule":
        return "schedule"
    if tags.get("dagster/backfill") or tags.get("etl/trigger") == "backfill":
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
    from etl_assets.core.partitions import partitions_def

    tags = run.tags
    if tags.get("dagster/partition"):
        return [tags["dagster/partition"]]
    first, last = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if first and last:
        pdef = partitions_def(spec)
        return list(pdef.get_partition_keys_in_range(dg.PartitionKeyRange(first, last)))
    return []


# --- one run's outcome, read from its event log ---------------------------------------------
#
# The only interpretation of a run: the CLI summary, history rows, `show`, alerts and the
# failure report all read a RunOutcome, so they cannot disagree.

SOURCE_LAYERS = ("raw", "normalized", "validated", "loaded")
LOAD_COUNTS = ("inserted", "updated", "unchanged", "deleted")
TOTALS = ("rows_extracted", "rows_normalized", "duplicates_dropped", "rows_quarantined", *LOAD_COUNTS)


@dataclass
class PartitionOutcome:
    """One source's counts for one partition, as its steps recorded them."""

    rows_extracted: int | None = None
    rows_normalized: int | None = None
    duplicates_dropped: int | None = None
    rows_quarantined: int | None = None
    inserted: int | None = None
    updated: int | None = None
    unchanged: int | None = None
    deleted: int | None = None
    # scd2 versions opened and closed, rows stored in <table>__failures, schema drift events.
    versions_opened: int | None = None
    versions_closed: int | None = None
    failures_stored: int | None = None
    drift: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SourceOutcome:
    status: str = "skipped"  # success | failed | skipped
    rows_extracted: int | None = None
    # What normalize kept and dropped: a `--step normalized` run's whole story.
    rows_normalized: int | None = None
    duplicates_dropped: int | None = None
    rows_quarantined: int | None = None
    inserted: int | None = None
    updated: int | None = None
    unchanged: int | None = None
    deleted: int | None = None
    checks_passed: int | None = None
    checks_warned: list[str] = field(default_factory=list)
    checks_failed: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)  # one per check and partition
    drift: list[dict[str, Any]] = field(default_factory=list)  # schema drift events, with their partition
    inputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    partitions: dict[str, PartitionOutcome] = field(default_factory=dict)


@dataclass
class StepOutcome:
    status: str  # success | failed | did not finish | not run
    order: int  # position in the run: jsonb does not keep key order
    started_at: str | None = None
    duration_s: float | None = None
    cpu_s: float | None = None
    reason: str | None = None  # why a step did not run
    produced: list[str] = field(default_factory=list)


@dataclass
class RunOutcome:
    run_id: str
    pipeline: str
    partitions: list[str]
    trigger: str
    status: str  # success | failed | partial | canceled
    dagster_status: str
    started_by: str | None = None  # the API token's name, when a run came through the job API
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    will_retry: bool = False
    error_type: str | None = None
    error_summary: str | None = None
    failing_source: str | None = None
    peak_rss_mb: float | None = None
    cpu_s: float | None = None
    retries: int = 0
    report_path: str | None = None
    webserver_url: str | None = None
    run_url: str | None = None
    steps: dict[str, StepOutcome] = field(default_factory=dict)
    sources: dict[str, SourceOutcome] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_record(self) -> dict[str, Any]:
        """The full record: history rows, the JSON run log and the alerts' input."""
        return dataclasses.asdict(self)

    def as_dict(self) -> dict[str, Any]:
        """`etl-assets run --json`: its documented keys."""
        fields = ("status", "rows_extracted", "rows_normalized", "rows_quarantined", *LOAD_COUNTS, "error")
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "partitions": self.partitions,
            "status": self.status,
            "sources": {n: {f: getattr(s, f) for f in fields} for n, s in self.sources.items()},
            "report_path": self.report_path,
            "error": self.error_summary,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "notes": self.notes,
        }


def _one_line(message: str, cls_name: str) -> str:
    """An exception's message as one line, without the exception's module path."""
    text = " ".join(line.strip() for line in message.strip().splitlines() if line.strip())
    head, sep, rest = text.partition(": ")
    if sep and head.rsplit(".", 1)[-1] == cls_name:
        text = rest
    return text[:500]


def _failure_text(data: Any) -> tuple[str, str | None]:
    """A failed step's one-sentence message (secrets masked) and its error type."""
    if data.user_failure_data and data.user_failure_data.description:
        desc = data.user_failure_data.description
    else:
        desc = _one_line(data.error.message, data.error.cls_name) if data.error else "step failed"
    err_type = _value(data.user_failure_data.metadata.get("error_type")) if data.user_failure_data else None
    if err_type is None and data.error:
        err_type = data.error.cls_name
    return redact(desc), err_type


class _EventReader:
    """Reads one run's event log once; every materialization counts for its own partition."""

    def __init__(self, spec: Any) -> None:
        self.P = spec.name
        self.source_names = [s.name for s in spec.sources]
        self.started: dict[str, float] = {}
        self.finished: dict[str, tuple[float, str]] = {}
        self.step_cpu: dict[str, float] = {}
        self.produced: dict[str, list[str]] = {}
        self.mats: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.failures: list[tuple[str | None, str, str | None]] = []
        self.messages: list[str] = []
        self.retries, self.peak = 0, 0.0
        self.report_path: str | None = None

    def read(self, entry: Any) -> None:
        event = entry.dagster_event
        if event is None:
            return
        et, step = event.event_type, entry.step_key
        if et in (dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED) and event.message:
            self.messages.append(event.message)
        elif et == dg.DagsterEventType.STEP_START and step:
            self.started.setdefault(step, entry.timestamp)
        elif et == dg.DagsterEventType.STEP_SUCCESS and step:
            self.finished[step] = (entry.timestamp, "success")
        elif et == dg.DagsterEventType.STEP_FAILURE and step:
            self.finished[step] = (entry.timestamp, "failed")
            desc, err_type = _failure_text(event.step_failure_data)
            parts = step.split("__")
            src = parts[2] if len(parts) == 3 and parts[2] in self.source_names else None
            self.failures.append((src, desc, err_type))
        elif et == dg.DagsterEventType.STEP_UP_FOR_RETRY:
            self.retries += 1
        elif et == dg.DagsterEventType.ASSET_MATERIALIZATION:
            self._materialization(step, entry.asset_materialization)

    def _materialization(self, step: str | None, mat: dg.AssetMaterialization) -> None:
        meta = {k: _value(v) for k, v in mat.metadata.items()}
        k = mat.partition or ""
        self.peak = max(self.peak, float(meta.get("etl/peak_rss_mb") or 0))
        if step and meta.get("etl/cpu_s") is not None:
            # A step's metrics repeat on each partition's materialization: count them once.
            self.step_cpu[step] = float(meta["etl/cpu_s"])
        produced = self.produced.setdefault(step or "", [])
        key = mat.asset_key.path
        if key == [self.P, "report"]:
            self.report_path = meta.get("report_path") or self.report_path
            paths = (meta.get("report_paths") or {}).get(k) or {}
            produced.extend(str(paths[ext]) for ext in ("html", "md") if paths.get(ext))
            return
        if len(key) != 3 or key[2] not in self.source_names:
            return
        self.mats.setdefault((key[1], key[2]), {})[k] = meta
        if meta.get("path") and key[1] != "loaded":
            produced.append(f"{str(meta['path']).rstrip('/')}/{k}.parquet")

    def source(self, name: str, final_layer: str | None) -> SourceOutcome:
        o = SourceOutcome()

        def part(k: str) -> PartitionOutcome:
            return o.partitions.setdefault(k, PartitionOutcome())

        for k, meta in self.mats.get(("raw", name), {}).items():
            part(k).rows_extracted = int((meta.get("rows_by_partition") or {}).get(k) or 0)
            o.inputs.update(meta.get("inputs") or {})
        for k, meta in self.mats.get(("normalized", name), {}).items():
            stats = (meta.get("normalize_stats") or {}).get(k) or {}
            if "rows_out" in stats:
                part(k).rows_normalized = int(stats["rows_out"])
                part(k).duplicates_dropped = int(stats.get("exact_duplicates_dropped") or 0) + int(
                    stats.get("key_duplicates_collapsed") or 0
                )
        for k, meta in self.mats.get(("validated", name), {}).items():
            o.checks_passed = meta.get("checks_passed")
            o.checks += [{**c, "partition": k} for c in (meta.get("checks_by_partition") or {}).get(k) or []]
            part(k).rows_quarantined = int((meta.get("quarantined_by_partition") or {}).get(k) or 0)
        for k, meta in self.mats.get(("loaded", name), {}).items():
            counts = (meta.get("counts_by_partition") or {}).get(k) or {}
            for f in LOAD_COUNTS:
                setattr(part(k), f, int(counts.get(f) or 0))
            for f in ("versions_opened", "versions_closed", "failures_stored"):
                if f in counts:
                    setattr(part(k), f, int(counts[f] or 0))
            part(k).drift = list(counts.get("drift") or [])
            o.drift += [{"partition": k, **e} for e in part(k).drift]
        for f in TOTALS:
            values = [getattr(p, f) for p in o.partitions.values() if getattr(p, f) is not None]
            setattr(o, f, sum(values) if values else None)
        failing = [c for c in o.checks if not c.get("passed")]
        o.checks_warned = sorted({c["name"] for c in failing if c.get("severity") == "warn"})
        o.checks_failed = sorted({c["name"] for c in failing if c.get("severity") == "error"})
        errors = [desc for src, desc, _ in self.failures if src == name]
        if errors:
            o.status, o.error = "failed", errors[0]
        elif final_layer and self.mats.get((final_layer, name)):
            o.status = "success"
        return o

    def steps(self, plan: list[str], upstream: dict[str, list[str]]) -> dict[str, StepOutcome]:
        """Steps in the order they ran, then those that did not run and why."""
        steps: dict[str, StepOutcome] = {}
        for i, key in enumerate(sorted(self.started, key=self.started.__getitem__)):
            end, status = self.finished.get(key, (None, "did not finish"))
            steps[key] = StepOutcome(
                status=status, order=i, started_at=_iso(self.started[key]),
                duration_s=round(end - self.started[key], 3) if end else None,
                cpu_s=self.step_cpu.get(key), produced=self.produced.get(key, []),
            )
        for key in plan:
            if key not in steps:
                steps[key] = StepOutcome(status="not run", order=len(steps), reason=_why_not_run(key, steps, upstream))
        return steps


def _why_not_run(key: str, steps: dict[str, StepOutcome], upstream: dict[str, list[str]]) -> str:
    seen, todo = set(), list(upstream.get(key, []))
    while todo:
        up = todo.pop(0)
        if up in seen:
            continue
        seen.add(up)
        if up in steps and steps[up].status == "failed":
            return f"skipped because upstream {up} failed"
        todo.extend(upstream.get(up, []))
    return "the run ended before it started"


def _plan(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[list[str], dict[str, list[str]]]:
    """The run's planned steps, upstream first, and each step's upstream steps."""
    if not run.execution_plan_snapshot_id:
        return [], {}
    snap = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    upstream = {
        s.key: [h.step_key for i in s.inputs for h in i.upstream_output_handles] for s in snap.steps
    }
    return list(graphlib.TopologicalSorter(upstream).static_order()), upstream


def _final_layers(run: dg.DagsterRun, spec: Any) -> dict[str, str | None]:
    """Per source, the last layer this run was asked to build (None: none of its layers)."""
    if not run.asset_selection:
        return {s.name: "loaded" for s in spec.sources}
    chosen = {tuple(k.path) for k in run.asset_selection}
    return {
        s.name: next((la for la in reversed(SOURCE_LAYERS) if (spec.name, la, s.name) in chosen), None)
        for s in spec.sources
    }


def _run_status(run: dg.DagsterRun, sources: dict[str, SourceOutcome]) -> str:
    statuses = [s.status for s in sources.values()]
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return "success"
    if run.status == dg.DagsterRunStatus.CANCELED:
        return "canceled"
    if "success" in statuses and any(x != "success" for x in statuses):
        return "partial"
    return "failed"


def _run_error(
    reader: _EventReader, status: str, steps: dict[str, StepOutcome]
) -> tuple[str | None, str | None, str | None]:
    """(error type, one-sentence summary, failing source) of a run that did not succeed."""
    if reader.failures:
        source, summary, error_type = reader.failures[0]
        if source and not summary.startswith(f"{reader.P}/"):
            summary = f"{source}: {summary}"
        return error_type, summary, source
    if status not in ("failed", "canceled"):
        return None, None, None
    # No step failed, yet the run did: it was canceled, timed out, or its worker died
    # (SIGKILL, out of memory, a lost host), whoever noticed first marked it.
    messages = reader.messages
    lost = [m for m in messages if "run worker" in m.lower()]
    timed_out = [m for m in messages if "maximum runtime" in m.lower() or "max_runtime" in m.lower()]
    cut_short = [k for k, st in steps.items() if st.status == "did not finish"]
    if status == "canceled":
        error_type = "canceled"
    elif timed_out:
        error_type, lost = "timeout", timed_out
    else:
        error_type = "worker_lost"
        if not lost:
            during = f" during step {cut_short[0]}" if cut_short else ""
            lost = [f"the run worker stopped{during} without reporting why (killed, out of memory or lost)"]
    summary = (lost or messages or ["the run ended without a step failure"])[-1].strip().splitlines()[0][:500]
    return error_type, redact(summary), None


def build_outcome(
    instance: dg.DagsterInstance, run_id: str, spec: Any, *, webserver_url: str | None = None
) -> RunOutcome:
    """What one finished run did, read from its event log: the one interpretation of a run."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise KeyError(f"no run {run_id}")
    reader = _EventReader(spec)
    for entry in instance.all_logs(run_id):
        reader.read(entry)
    steps = reader.steps(*_plan(instance, run))
    finals = _final_layers(run, spec)
    sources = {s.name: reader.source(s.name, finals[s.name]) for s in spec.sources}
    status = _run_status(run, sources)
    error_type, error_summary, failing_source = _run_error(reader, status, steps)
    rec = instance.get_run_record_by_id(run_id)
    started, finished = (rec.start_time, rec.end_time) if rec else (None, None)
    cpu = sum(reader.step_cpu.values())
    return RunOutcome(
        run_id=run_id,
        pipeline=spec.name,
        partitions=partitions_of(run, spec),
        trigger=trigger_of(run.tags),
        status=status,
        dagster_status=run.status.value,
        started_by=run.tags.get(STARTED_BY_TAG),
        started_at=_iso(started),
        finished_at=_iso(finished),
        duration_s=round(finished - started, 3) if started and finished else None,
        will_retry=run.tags.get("dagster/will_retry") == "true",
        error_type=error_type,
        error_summary=error_summary,
        failing_source=failing_source,
        peak_rss_mb=reader.peak or None,
        cpu_s=round(cpu, 3) if cpu else None,
        retries=reader.retries,
        report_path=reader.report_path,
        webserver_url=webserver_url,
        run_url=f"{webserver_url.rstrip('/')}/runs/{run_id}" if webserver_url else None,
        steps=steps,
        sources=sources,
        notes=_drift_notes(spec, sources),
    )


def _drift_notes(spec: Any, sources: dict[str, SourceOutcome]) -> list[str]:
    """Schema drift as sentences: alerts, the summary and `show` print the run's notes."""
    from etl_assets.warehouses.postgres import DriftEvent

    return [
        f"{spec.name} {name} {e['partition']}: schema drift: "
        + DriftEvent(e["column"], e["change"], e.get("before"), e.get("after")).sentence(spec.target(spec.source(name)))
        for name, o in sources.items() for e in o.drift
    ]


def _iso(ts: float | None) -> str | None:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat() if ts else None


# --- writing and reading ---------------------------------------------------------------------


def write_record(conn: psycopg.Connection, record: dict[str, Any]) -> None:
    """Idempotent: recording the same run twice leaves one row per run and per source."""
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
            {"started_by": None, **record, "steps": Jsonb(record["steps"]), "notes": Jsonb(record["notes"])},
        )
        conn.execute("DELETE FROM etl_meta.run_sources WHERE run_id = %s", (record["run_id"],))
        for name, s in record["sources"].items():
            conn.execute(
                """
                INSERT INTO etl_meta.run_sources (run_id, source, status, rows_extracted,
                    rows_quarantined, inserted, updated, unchanged, deleted, checks_passed,
                    checks_warned, checks_failed, checks, inputs, error, partitions)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                (
                    record["run_id"], name, s["status"], s["rows_extracted"], s["rows_quarantined"],
                    s["inserted"], s["updated"], s["unchanged"], s["deleted"], s["checks_passed"],
                    len(s["checks_warned"]), len(s["checks_failed"]), Jsonb(s["checks"]), Jsonb(s["inputs"]),
                    s["error"], Jsonb(s.get("partitions") or {}),
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
    """Recorded runs, newest first. `status="failed"` includes partial runs: they failed too."""
    where, params = [sql.SQL("true")], []
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
    cur = conn.execute(stmt, [*params, limit, offset])
    names = [d.name for d in cur.description]
    runs = [dict(zip(names, r)) for r in cur.fetchall()]
    for run in runs:
        cur = conn.execute("SELECT * FROM etl_meta.run_sources WHERE run_id = %s ORDER BY source", (run["run_id"],))
        cols = [d.name for d in cur.description]
        run["sources"] = {r[1]: dict(zip(cols, r)) for r in cur.fetchall()}
    return runs


def count_runs(conn: psycopg.Connection, pipeline: str | None = None) -> int:
    """How many runs are recorded, for one pipeline or all."""
    if pipeline:
        return conn.execute("SELECT count(*) FROM etl_meta.runs WHERE pipeline = %s", (pipeline,)).fetchone()[0]
    return conn.execute("SELECT count(*) FROM etl_meta.runs").fetchone()[0]


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



def statuses(conn: psycopg.Connection, run_ids: list[str]) -> dict[str, str]:
    """The recorded status word (success, failed, partial, canceled) of each of these runs."""
    rows = conn.execute("SELECT run_id, status FROM etl_meta.runs WHERE run_id = ANY(%s)", (run_ids,)).fetchall()
    return dict(rows)
