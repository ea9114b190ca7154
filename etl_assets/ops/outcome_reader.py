"""One run's outcome, read from its event log: the one interpretation of a run.

A run launched by the daemon, from the UI or by `etl-assets run` is read the same way, so the
CLI summary, history rows, `show`, alerts and the failure report cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import graphlib
from collections.abc import Mapping
from typing import Any

import dagster as dg

from etl_assets.core import tags as tag
from etl_assets.core.outcome import (
    LOAD_COUNTS,
    SOURCE_LAYERS,
    TOTALS,
    PartitionOutcome,
    RunOutcome,
    SourceOutcome,
    StepOutcome,
)
from etl_assets.core.partitions import partitions_def
from etl_assets.core.secrets import redact
from etl_assets.spec import PipelineSpec
from etl_assets.warehouses.postgres import DriftEvent


def _value(v: Any) -> Any:
    return getattr(v, "value", v)


def trigger_of(tags: Mapping[str, str]) -> str:
    if tags.get("dagster/parent_run_id") or tags.get("dagster/retry_number"):
        return "retry"
    if tags.get("dagster/schedule_name") or tags.get(tag.TRIGGER) == "schedule":
        return "schedule"
    if tags.get("dagster/backfill") or tags.get(tag.TRIGGER) == "backfill":
        return "backfill"
    if tags.get(tag.TRIGGER) == "cli":
        return "cli"
    return "manual"


def pipeline_of(run: dg.DagsterRun, instance: dg.DagsterInstance | None = None) -> str | None:
    """Which pipeline a run belongs to: its tag, its asset selection, its job or its steps."""
    if run.tags.get(tag.PIPELINE):
        return run.tags[tag.PIPELINE]
    for key in run.asset_selection or []:
        return key.path[0]
    if run.job_name.endswith("_job") and not run.job_name.startswith("__"):
        return run.job_name.removesuffix("_job")
    if instance is not None:  # ad-hoc asset runs: step keys are <pipeline>__<layer>__<source>
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START):
            if entry.step_key:
                return entry.step_key.split("__")[0]
    return None


def partitions_of(run: dg.DagsterRun, spec: PipelineSpec) -> list[str]:
    tags = run.tags
    if tags.get("dagster/partition"):
        return [tags["dagster/partition"]]
    first, last = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if first and last:
        pdef = partitions_def(spec)
        return list(pdef.get_partition_keys_in_range(dg.PartitionKeyRange(first, last)))
    return []


def _one_line(message: str, cls_name: str) -> str:
    """An exception's message as one line, without the exception's module path."""
    text = " ".join(line.strip() for line in message.strip().splitlines() if line.strip())
    head, sep, rest = text.partition(": ")
    if sep and head.rsplit(".", 1)[-1] == cls_name:
        text = rest
    return text[:500]


def _failure_text(data: Any) -> tuple[str, str | None]:
    """A failed step's one-sentence message (secrets masked) and its error type.

    `data` is Dagster's StepFailureData, which only its private modules name.
    """
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

    def __init__(self, spec: PipelineSpec) -> None:
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

    def read(self, entry: dg.EventLogEntry) -> None:
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
        elif et == dg.DagsterEventType.ASSET_MATERIALIZATION and entry.asset_materialization:
            self._materialization(step, entry.asset_materialization)

    def _materialization(self, step: str | None, mat: dg.AssetMaterialization) -> None:
        meta = {k: _value(v) for k, v in mat.metadata.items()}
        k = mat.partition or ""
        self.peak = max(self.peak, float(meta.get(tag.PEAK_RSS_MB) or 0))
        if step and meta.get(tag.CPU_S) is not None:
            # A step's metrics repeat on each partition's materialization: count them once.
            self.step_cpu[step] = float(meta[tag.CPU_S])
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


def _final_layers(run: dg.DagsterRun, spec: PipelineSpec) -> dict[str, str | None]:
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
    instance: dg.DagsterInstance, run_id: str, spec: PipelineSpec, *, webserver_url: str | None = None
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
        started_by=run.tags.get(tag.STARTED_BY),
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


def _drift_notes(spec: PipelineSpec, sources: dict[str, SourceOutcome]) -> list[str]:
    """Schema drift as sentences: alerts, the summary and `show` print the run's notes."""
    return [
        f"{spec.name} {name} {e['partition']}: schema drift: "
        + DriftEvent(e["column"], e["change"], e.get("before"), e.get("after")).sentence(spec.target(spec.source(name)))
        for name, o in sources.items() for e in o.drift
    ]


def _iso(ts: float | None) -> str | None:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat() if ts else None

