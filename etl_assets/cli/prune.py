"""`etl-assets prune`: runs, history and files past each pipeline's retention deleted."""

from __future__ import annotations

import json

import click
import dagster as dg

from etl_assets.cli.specs import _specs
from etl_assets.dev import embedded
from etl_assets.ops import retention


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print {dry_run, items} as JSON.")
def prune(dry_run: bool, as_json: bool) -> None:
    """Delete runs, history and files past each pipeline's retention (never a latest success)."""
    setup = embedded.configure_process()
    specs = _specs()
    with dg.DagsterInstance.get() as instance:
        items = retention.prune(
            instance, specs, warehouse_url=setup.warehouse_url,
            storage_dir=setup.settings.storage_dir, dry_run=dry_run,
        )
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "items": [i.as_dict() for i in items]}))
        return
    verb = "would delete" if dry_run else "deleted"
    for i in items:
        click.echo(f"{verb} {i.kind:<11} {i.pipeline:<14} {i.age_days:>6.1f}d  {i.what}")
    click.echo(f"{len(items)} item(s) {verb}" if items else "nothing is past its retention")
