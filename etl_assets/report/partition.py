"""A partition's report from what is loaded: per-source counts and checks from the event log,
KPIs from the warehouse; also the PARTIAL/FAILED report the run-finished handler renders."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd

from etl_assets import report as report_mod
from etl_assets.core.keys import asset_key
from etl_assets.core.outcome import RunOutcome, SourceOutcome, as_outcome
from etl_assets.core.partitions import partitions_def, window_for
from etl_assets.core.settings import storage_dir, webserver_url
from etl_assets.io.contract import latest_metadata
from etl_assets.report import SourceSummary
from etl_assets.report.causes import check_cause
from etl_assets.report.range import render_range
from etl_assets.spec import KpiSpec, PipelineSpec, SourceSpec, check_name
from etl_assets.warehouses.base import BaseWarehouse
from etl_assets.warehouses.postgres import open_warehouse


def source_summary(instance: dg.DagsterInstance, spec: PipelineSpec, source: SourceSpec, k: str) -> SourceSummary:
    """What `source` loaded for partition `k`, from the newest materialization of each layer."""
    raw = latest_metadata(instance, asset_key(spec.name, "raw", source.name), k)
    val = latest_metadata(instance, asset_key(spec.name, "validated", source.name), k)
    load = latest_metadata(instance, asset_key(spec.name, "loaded", source.name), k)
    counts = (load.get("counts_by_partition") or {}).get(k, {})
    return SourceSummary(
        name=source.name,
        status="success" if counts else "missing",
        rows_extracted=(raw.get("rows_by_partition") or {}).get(k),
        inserted=counts.get("inserted"),
        updated=counts.get("updated"),
        unchanged=counts.get("unchanged"),
        deleted=counts.get("deleted"),
        quarantined=counts.get("quarantined"),
        checks=(val.get("checks_by_partition") or {}).get(k, []),
        versions_opened=counts.get("versions_opened"),
        versions_closed=counts.get("versions_closed"),
        failures_stored=counts.get("failures_stored"),
        drift=counts.get("drift") or [],
    )


def row_trend(
    instance: dg.DagsterInstance, spec: PipelineSpec, pdef: dg.TimeWindowPartitionsDefinition, key: str,
    last: int = 12,
) -> dict[str, list[tuple[str, int]]]:
    """Rows each source loaded for each of the last `last` partitions up to `key`, full sources
    included, from the newest materialization of each partition."""
    keys = pdef.get_partition_keys()
    wanted = keys[max(0, keys.index(key) - last + 1): keys.index(key) + 1] if key in keys else [key]
    trend: dict[str, list[tuple[str, int]]] = {}
    for s in spec.sources:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key(spec.name, "loaded", s.name), asset_partitions=wanted),
            limit=len(wanted) * 20,
        ).records
        counts: dict[str, int] = {}
        for r in records:  # newest first: the first one seen for a partition is its latest
            k = r.partition_key
            mat = r.asset_materialization
            if k is None or k in counts or mat is None or "counts_by_partition" not in mat.metadata:
                continue
            c = (getattr(mat.metadata["counts_by_partition"], "value", {}) or {}).get(k) or {}
            counts[k] = sum(int(c.get(f) or 0) for f in ("inserted", "updated", "unchanged"))
        trend[s.name] = [(k, counts[k]) for k in wanted if k in counts]
    return trend


def warehouse_kind(spec: PipelineSpec) -> str:
    """`postgres` or `clickhouse`: where `spec`'s sources load."""
    return spec.warehouse.kind if spec.warehouse else "postgres"


def kpi_frames(
    wh: BaseWarehouse, spec: PipelineSpec, start: dt.datetime, end: dt.datetime, *, strict: bool = True
) -> list[tuple[KpiSpec, pd.DataFrame]]:
    """Each KPI over [start, end); `strict=False` leaves out a KPI that fails, so a failure
    report still renders."""
    out = []
    for kpi in spec.report.kpis:
        try:
            out.append((kpi, wh.query(kpi.sql, {"window_start": start, "window_end": end})))
        except Exception:
            if strict:
                raise
    return out


def report_run(run_id: str) -> report_mod.ReportRun:
    """When this report is made and the run's page in the UI (ETL_WEBSERVER_URL)."""
    return report_mod.ReportRun(
        generated_at=dt.datetime.now(dt.timezone.utc), run_id=run_id,
        run_url=f"{webserver_url().rstrip('/')}/runs/{run_id}",
    )


def render_partition(
    instance: dg.DagsterInstance, spec: PipelineSpec, pdef: dg.TimeWindowPartitionsDefinition, wh: BaseWarehouse,
    k: str, run: report_mod.ReportRun,
    summaries: list[SourceSummary], *, status: str = "success", status_reason: str = "", strict: bool = True,
) -> tuple[str, report_mod.RenderedReport]:
    """Render and write partition `k`'s report, its KPIs against the previous partition's."""
    window = window_for(pdef, k)
    kpis = kpi_frames(wh, spec, window.start, window.end, strict=strict)
    keys = pdef.get_partition_keys()
    previous = None
    if k in keys and keys.index(k) > 0:
        before = window_for(pdef, keys[keys.index(k) - 1])
        previous = (before, kpi_frames(wh, spec, before.start, before.end, strict=False))
    trend = row_trend(instance, spec, pdef, k)
    md, page = report_mod.render(
        spec, window, kpis, summaries, status=status, status_reason=status_reason, trend=trend,
        previous=previous, run=run,
    )
    return md, report_mod.write(storage_dir(), spec.name, k, md, page)


def render_range_report(
    instance: dg.DagsterInstance, spec: PipelineSpec, wh: BaseWarehouse, keys: list[str], run: report_mod.ReportRun
) -> report_mod.RenderedReport:
    """One report over `keys` (consecutive partitions), written as `<first>_<last>`."""
    pdef = partitions_def(spec)
    windows = [window_for(pdef, k) for k in keys]
    kpis = kpi_frames(wh, spec, windows[0].start, windows[-1].end)
    per_partition = {k: [source_summary(instance, spec, s, k) for s in spec.sources] for k in keys}
    md, page = render_range(spec, windows, kpis, per_partition, run=run)
    return report_mod.write(storage_dir(), spec.name, f"{keys[0]}_{keys[-1]}", md, page)


def _failure_reason(spec: PipelineSpec, outcome: RunOutcome) -> str:
    """Each failed source with the check or step that failed it and why, in full."""
    declared = {(s.name, check_name(c)): c for s in spec.sources for c in s.checks}
    parts = []
    for name, s in outcome.sources.items():
        if s.status == "success":
            continue
        blocking = [c for c in s.checks or [] if not c.get("passed") and c.get("severity") == "error"]
        for c in blocking:
            where = f" in {c['partition']}" if c.get("partition") else ""
            parts.append(f"{name}: blocking check {c['name']} failed{where}: {check_cause(c, declared.get((name, c['name'])))}")
        if not blocking:
            parts.append(f"{name} {s.status}" + (f": {s.error}" if s.error else ""))
    return "; ".join(parts) or (outcome.error_summary or "the run failed")


def _failed_summary(name: str, o: SourceOutcome, k: str) -> SourceSummary:
    """A failed source in partition `k`'s report: its status, error and that partition's checks."""
    checks = [c for c in o.checks or [] if c.get("partition") in (k, None)]
    return SourceSummary(name=name, status=o.status, error=o.error, checks=checks)


def render_status_report(
    instance: dg.DagsterInstance, spec: PipelineSpec, run: RunOutcome | Mapping[str, Any], warehouse_url: str
) -> str | None:
    """The report of a run that did not finish cleanly, marked PARTIAL or FAILED at the top.

    The `report` asset never runs after an upstream failure, so the run-finished handler
    renders this one; it names each failing check or step and its cause, and still lists the
    failed sources' checks. `run` is the run's outcome (or its record). `warehouse_url` is the
    PostgreSQL warehouse; a pipeline with its own `warehouse:` block reads its KPIs there.
    """
    outcome = as_outcome(run)
    pdef = partitions_def(spec)
    failed = {n: s for n, s in outcome.sources.items() if s.status != "success"}
    reason = _failure_reason(spec, outcome)
    wh = open_warehouse(spec.warehouse, warehouse_url)
    page_run = report_mod.ReportRun(dt.datetime.now(dt.timezone.utc), outcome.run_id, outcome.run_url)
    path = None
    for k in outcome.partitions:
        summaries = [
            _failed_summary(s.name, failed[s.name], k) if s.name in failed else source_summary(instance, spec, s, k)
            for s in spec.sources
        ]
        _, written = render_partition(
            instance, spec, pdef, wh, k, page_run, summaries, status=outcome.status, status_reason=reason,
            strict=False,
        )
        path = written.html_path
    return path
