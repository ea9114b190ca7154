"""report: KPIs, per-source counts and check outcomes, rendered per window and over a range."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from etl_assets.io import contract
from etl_assets.ops.history import step_metrics, usage
from etl_assets.orchestration.steps import classified
from etl_assets.report.partition import (
    render_partition,
    render_range_report,
    report_run,
    source_summary,
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
    paths, last_md = {}, ""
    for k in keys:
        summaries = [source_summary(context.instance, spec, s, k) for s in spec.sources]
        with classified(context, pipeline=P, source=None, partitions=[k], policy=retry):
            last_md, written = render_partition(context.instance, spec, pdef, wh, k, run, summaries)
        paths[k] = {"html": written.html_path, "md": written.md_path}
    shown = paths[keys[-1]]
    if len(keys) > 1:  # a backfill's range, read as one report
        with classified(context, pipeline=P, source=None, partitions=keys, policy=retry):
            ranged = render_range_report(context.instance, spec, wh, keys, run)
        last_md, shown = ranged.markdown, {"html": ranged.html_path, "md": ranged.md_path}
    return dg.MaterializeResult(
        metadata={
            # The rendered report itself: a local path is nothing a browser can open.
            contract.REPORT: dg.MetadataValue.md(last_md),
            contract.REPORT_PATH: dg.MetadataValue.text(shown["html"]),
            contract.REPORT_PATHS: dg.MetadataValue.json(paths),
            **step_metrics(started),
        }
    )
