"""report: KPIs, per-source counts and check outcomes, rendered per window and over a range.

The event log is read once per layer and source for all the run's partitions, and a chart is
drawn only when its data changed (`report.charts`): a no-change rerun draws nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from etl_assets.core.settings import storage_dir
from etl_assets.io import contract
from etl_assets.ops.history import step_metrics, usage
from etl_assets.orchestration.steps import classified
from etl_assets.report import chart_store
from etl_assets.report.partition import (
    read_layers,
    render_partition,
    render_range_report,
    report_run,
    source_summary,
    trend_union,
)

if TYPE_CHECKING:
    from etl_assets.spec import PipelineSpec
    from etl_assets.warehouses.postgres import WarehouseResource


def report_partitions(
    spec: PipelineSpec,
    pdef: dg.TimeWindowPartitionsDefinition,
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    retry: dg.RetryPolicy | None,
) -> dg.MaterializeResult:
    """The report step: one report per partition of the run, and one over a backfill's range."""
    started = usage()
    P, keys = spec.name, list(context.partition_keys)
    run = report_run(context.run_id)
    with classified(context, pipeline=P, source=None, partitions=keys, policy=retry):
        wh = warehouse.for_pipeline(spec)
    all_keys = pdef.get_partition_keys()
    reads = read_layers(context.instance, spec, keys, trend_union(all_keys, keys))
    charts = chart_store(storage_dir(), P)
    paths, per_partition, last_md = {}, {}, ""
    for k in keys:
        per_partition[k] = [source_summary(context.instance, spec, s, k, reads) for s in spec.sources]
        with classified(context, pipeline=P, source=None, partitions=[k], policy=retry):
            last_md, written = render_partition(
                context.instance, spec, pdef, wh, k, run, per_partition[k], reads=reads, charts=charts,
                keys=all_keys,
            )
        paths[k] = {"html": written.html_path, "md": written.md_path}
    shown = paths[keys[-1]]
    if len(keys) > 1:  # a backfill's range, read as one report
        with classified(context, pipeline=P, source=None, partitions=keys, policy=retry):
            ranged = render_range_report(
                context.instance, spec, wh, keys, run, per_partition=per_partition, charts=charts
            )
        last_md, shown = ranged.markdown, {"html": ranged.html_path, "md": ranged.md_path}
    pruned = charts.prune()
    if pruned:
        context.log.info(f"{P} report: {pruned} chart(s) no report shows any more deleted")
    return dg.MaterializeResult(
        metadata={
            # The rendered report itself: a local path is nothing a browser can open.
            contract.REPORT: dg.MetadataValue.md(last_md),
            contract.REPORT_PATH: dg.MetadataValue.text(shown["html"]),
            contract.REPORT_PATHS: dg.MetadataValue.json(paths),
            # Charts drawn by this step, and those whose data had not changed, reused as kept.
            contract.CHARTS_DRAWN: dg.MetadataValue.int(charts.drawn),
            contract.CHARTS_REUSED: dg.MetadataValue.int(charts.reused),
            **step_metrics(started),
        }
    )
