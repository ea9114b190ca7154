"""`etl-assets validate` and `schema`: pipeline specs checked, and their JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import click

from etl_assets.cli.group import _fail
from etl_assets.core import settings
from etl_assets.spec import SpecError, json_schema, load_pipeline_file, load_pipelines


@click.command("validate")
@click.argument("path", required=False, type=click.Path(path_type=Path))
def validate(path: Path | None) -> None:
    """Validate pipeline specs: a file, or every file in a folder (default: the pipelines dir)."""
    target = path or settings.pipelines_dir()
    try:
        specs = [load_pipeline_file(target)] if target.is_file() else load_pipelines(target)
    except SpecError as e:
        _fail(str(e), 1)
    for s in specs:
        click.echo(f"ok: {s.name} ({len(s.sources)} sources, {s.partitions.cadence}, {s.timezone})")


@click.command("schema")
def schema() -> None:
    """Print the JSON Schema of a pipeline spec, for editors."""
    click.echo(json.dumps(json_schema(), indent=2))
