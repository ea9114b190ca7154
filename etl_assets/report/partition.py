"""A partition's report from what is loaded: per-source counts and checks from the event log
(each layer read once for all the partitions reported), KPIs from the warehouse; also the
PARTIAL/FAILED report the run-finished handler renders."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

from etl_assets import report as report_mod
from etl_assets.core.keys import asset_key
from etl_assets.core.outcome import RunOutcome, SourceOutcome, as_outcome
from etl_assets.core.partitions import partitions_def, window_for
from etl_assets.core.settings import storage_dir, webserver_url
from etl_assets.io.contract import CHECKS_BY_PARTITION, COUNTS_BY_PARTITION, ROWS_BY_PARTITION
from etl_assets.report import ChartStore, SourceSummary
from etl_assets.report.causes import check_cause
from etl_assets.report.range import range_name, render_range
from etl_assets.spec import KpiSpec, PipelineSpec, SourceSpec, check_name
from etl_assets.warehouses.base import BaseWarehouse
from etl_assets.warehouses.postgres import open_warehouse

# Records per event-log query. Reads page on with the cursor until every partition's newest
# materialization is found, so a partition materialized many times is never missed.
PAGE = 1000
TREND_PARTITIONS = 12  # the trend chart's window: this many partitions up to the report's


@dataclass
class Newest:
    """One asset's newest materialization per partition, as plain metadata: `any` is the newest
    at all, `having` the newest that records the key asked for (the counts the trend shows)."""

    any: dict[str, dict[str, Any]] = field(default_factory=dict)
    having: dict[str, dict[str, Any]] = field(default_factory=dict)


def newest_metadata(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: Collection[str], having: str | None = None
) -> Newest:
    """The newest materialization of `key` for each of `partitions`, read for all of them at once.

    Records come newest first; each further page asks only for the partitions still missing.
    """
    found = Newest()
    missing = set(partitions)
    cursor = None
    while missing:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=sorted(missing)), limit=PAGE, cursor=cursor
        )
        for r in result.records:
            k, mat = r.partition_key, r.asset_materialization
            if k is None or k not in missing:
                continue
            values = {n: getattr(v, "value", v) for n, v in (mat.metadata if mat else {}).items()}
            found.any.setdefault(k, values)
            if having is None or having in values:
                found.having.setdefault(k, values)
            if k in found.any and k in found.having:
                missing.discard(k)
        if not result.has_more:
            break
        cursor = result.cursor
    return found


@dataclass
class LayerReads:
    """What the report reads from the event log: per source, the newest raw, validated and
    loaded metadata of each partition, each layer read once for all partitions (issue 18)."""

    summaries: set[str]  # partitions whose summaries can be told
    trends: set[str]  # partitions whose loaded rows the trend can show
    layers: dict[tuple[str, str], Newest]  # (layer, source) -> newest per partition

    def covers(self, sources: list[SourceSpec], *, summaries: Collection[str] = (), trends: Collection[str] = ()) -> bool:
        """Whether these reads answer for `sources` over those partitions (else read again)."""
        return (self.summaries.issuperset(summaries) and self.trends.issuperset(trends)
                and all(("loaded", s.name) in self.layers for s in sources))


def read_layers(
    instance: dg.DagsterInstance, spec: PipelineSpec, summaries: Collection[str], trends: Collection[str] = (),
    sources: list[SourceSpec] | None = None,
) -> LayerReads:
    """One read per layer and source: raw and validated for `summaries`, loaded for both sets."""
    layers: dict[tuple[str, str], Newest] = {}
    for s in sources if sources is not None else spec.sources:
        for layer in ("raw", "validated"):
            if summaries:
                layers[layer, s.name] = newest_metadata(instance, asset_key(spec.name, layer, s.name), summaries)
        layers["loaded", s.name] = newest_metadata(
            instance, asset_key(spec.name, "loaded", s.name), {*summaries, *trends}, having=COUNTS_BY_PARTITION
        )
    return LayerReads(set(summaries), set(trends), layers)


def trend_keys(keys: Sequence[str], key: str, last: int = TREND_PARTITIONS) -> list[str]:
    """The last `last` partitions of `keys` up to `key` (just `key` when it is not one of them)."""
    if key not in keys:
        return [key]
    i = keys.index(key)
    return list(keys[max(0, i - last + 1): i + 1])


def trend_union(keys: Sequence[str], partitions: Collection[str], last: int = TREND_PARTITIONS) -> set[str]:
    """Every partition the trends of `partitions` show: what one read for all their reports needs."""
    return {t for k in partitions for t in trend_keys(keys, k, last)}


def source_summary(
    instance: dg.DagsterInstance, spec: PipelineSpec, source: SourceSpec, k: str, reads: LayerReads | None = None
) -> SourceSummary:
    """What `source` loaded for partition `k`, from the newest materialization of each layer
    (from `reads` when it holds `k`)."""
    if reads is None or not reads.covers([source], summaries=[k]):
        reads = read_layers(instance, spec, [k], sources=[source])

    def newest(layer: str) -> dict[str, Any]:
        found = reads.layers.get((layer, source.name))
        return (found.any.get(k) if found else None) or {}

    raw, val, load = newest("raw"), newest("validated"), newest("loaded")
    counts = (load.get(COUNTS_BY_PARTITION) or {}).get(k, {})
    return SourceSummary(
        name=source.name,
        status="success" if counts else "missing",
        rows_extracted=(raw.get(ROWS_BY_PARTITION) or {}).get(k),
        inserted=counts.get("inserted"),
        updated=counts.get("updated"),
        unchanged=counts.get("unchanged"),
        deleted=counts.get("deleted"),
        quarantined=counts.get("quarantined"),
        checks=(val.get(CHECKS_BY_PARTITION) or {}).get(k, []),
        versions_opened=counts.get("versions_opened"),
        versions_closed=counts.get("versions_closed"),
        failures_stored=counts.get("failures_stored"),
        drift=counts.get("drift") or [],
    )


def row_trend(
    instance: dg.DagsterInstance, spec: PipelineSpec, pdef: dg.TimeWindowPartitionsDefinition, key: str,
    last: int = TREND_PARTITIONS, reads: LayerReads | None = None, keys: Sequence[str] | None = None,
) -> dict[str, list[tuple[str, int]]]:
    """Rows each source loaded for each of the last `last` partitions up to `key`, full sources
    included, from the newest materialization of each partition that records its counts."""
    wanted = trend_keys(keys if keys is not None else pdef.get_partition_keys(), key, last)
    if reads is None or not reads.covers(spec.sources, trends=wanted):
        reads = read_layers(instance, spec, [], wanted)
    trend: dict[str, list[tuple[str, int]]] = {}
    for s in spec.sources:
        found = (reads.layers.get(("loaded", s.name)) or Newest()).having
        points = []
        for k in wanted:
            if k in found:
                c = (found[k][COUNTS_BY_PARTITION] or {}).get(k) or {}
                points.append((k, sum(int(c.get(f) or 0) for f in ("inserted", "updated", "unchanged"))))
        trend[s.name] = points
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
    reads: LayerReads | None = None, charts: ChartStore | None = None, keys: Sequence[str] | None = None,
) -> tuple[str, report_mod.RenderedReport]:
    """Render and write partition `k`'s report, its KPIs against the previous partition's.

    `reads` holds the event-log reads for the trend, `keys` the partition keys of `pdef`
    (both read here when not given). `charts` keeps the charts; without it the report's own
    store does, and prunes its old ones.
    """
    window = window_for(pdef, k)
    kpis = kpi_frames(wh, spec, window.start, window.end, strict=strict)
    every = keys if keys is not None else pdef.get_partition_keys()
    previous = None
    if k in every and every.index(k) > 0:
        before = window_for(pdef, every[every.index(k) - 1])
        previous = (before, kpi_frames(wh, spec, before.start, before.end, strict=False))
    trend = row_trend(instance, spec, pdef, k, reads=reads, keys=every)
    store = charts if charts is not None else report_mod.chart_store(storage_dir(), spec.name)
    md, page = report_mod.render(
        spec, window, kpis, summaries, status=status, status_reason=status_reason, trend=trend,
        previous=previous, run=run, charts=store,
    )
    written = report_mod.write(storage_dir(), spec.name, k, md, page)
    if charts is None:
        store.prune()
    return md, written


def render_range_report(
    instance: dg.DagsterInstance, spec: PipelineSpec, wh: BaseWarehouse, keys: list[str], run: report_mod.ReportRun,
    *, per_partition: dict[str, list[SourceSummary]] | None = None, charts: ChartStore | None = None,
) -> report_mod.RenderedReport:
    """One report over `keys` (consecutive partitions), written as `<first>_<last>`.

    `per_partition` holds the partitions' source summaries (read here when not given); `charts`
    as for `render_partition`.
    """
    pdef = partitions_def(spec)
    windows = [window_for(pdef, k) for k in keys]
    kpis = kpi_frames(wh, spec, windows[0].start, windows[-1].end)
    if per_partition is None:
        reads = read_layers(instance, spec, keys)
        per_partition = {k: [source_summary(instance, spec, s, k, reads) for s in spec.sources] for k in keys}
    store = charts if charts is not None else report_mod.chart_store(storage_dir(), spec.name)
    md, page = render_range(spec, windows, kpis, per_partition, run=run, charts=store)
    written = report_mod.write(storage_dir(), spec.name, range_name(keys[0], keys[-1]), md, page)
    if charts is None:
        store.prune()
    return written


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
    keys = pdef.get_partition_keys()
    reads = read_layers(instance, spec, outcome.partitions, trend_union(keys, outcome.partitions))
    charts = report_mod.chart_store(storage_dir(), spec.name)
    path = None
    for k in outcome.partitions:
        summaries = [
            _failed_summary(s.name, failed[s.name], k) if s.name in failed
            else source_summary(instance, spec, s, k, reads)
            for s in spec.sources
        ]
        _, written = render_partition(
            instance, spec, pdef, wh, k, page_run, summaries, status=outcome.status, status_reason=reason,
            strict=False, reads=reads, charts=charts, keys=keys,
        )
        path = written.html_path
    charts.prune()
    return path
