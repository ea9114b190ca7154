"""`etl-assets report P …`: render the report of a partition, or one report over a range."""

from __future__ import annotations

import click
import dagster as dg

from etl_assets.cli.group import _fail
from etl_assets.cli.specs import _spec
from etl_assets.core.partitions import partitions_def
from etl_assets.dev import embedded
from etl_assets.orchestration.runner import RunRequestError, resolve_partitions
from etl_assets.report.partition import (
    render_partition,
    render_range_report,
    report_run,
    source_summary,
)
from etl_assets.warehouses.postgres import open_warehouse


@click.command("report")
@click.argument("pipeline")
@click.option("--partition", help="One partition key, e.g. 2025-03-02.")
@click.option("--from", "first", help="First partition key of a range: one report over all of it.")
@click.option("--to", "last", help="Last partition key of a range.")
@click.option("--latest", is_flag=True, help="The latest complete partition.")
@click.option("--last", "last_n", type=click.IntRange(1), help="The latest N complete partitions, as one report.")
def report_command(pipeline: str, partition: str | None, first: str | None, last: str | None,
                   latest: bool, last_n: int | None) -> None:
    """Render a pipeline's report from what is loaded: one partition, or a range as one report."""
    setup = embedded.configure_process()  # the report reads the Dagster instance in this process
    spec = _spec(pipeline)
    try:
        keys = resolve_partitions(spec, partition=partition, first=first, last=last, latest=latest, last_n=last_n)
    except RunRequestError as e:
        _fail(str(e))
    wh = open_warehouse(spec.warehouse, setup.warehouse_url)
    with dg.DagsterInstance.get() as instance:
        run = report_run("")
        run.run_id = run.run_url = None  # made here, by no run
        if len(keys) == 1:
            summaries = [source_summary(instance, spec, s, keys[0]) for s in spec.sources]
            _, written = render_partition(instance, spec, partitions_def(spec), wh, keys[0], run, summaries)
        else:
            written = render_range_report(instance, spec, wh, keys, run)
    click.echo(f"report: {written.html_path}")
