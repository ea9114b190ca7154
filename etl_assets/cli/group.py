"""The `etl-assets` click group and what its commands share: exit codes, the error style,
status colours, the pipeline specs, and the run history's connection."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import NoReturn, TextIO

import click
import psycopg

from etl_assets.core import settings
from etl_assets.dev import embedded
from etl_assets.ops import history
from etl_assets.spec import PipelineSpec, SpecError, json_schema, load_pipeline_file, load_pipelines

# Exit codes, the same for the same kind of error in every command.
USAGE = 2  # a bad option, an unknown pipeline or partition
FAILED = 1  # the command ran and what it did failed (a run, an invalid spec, an unreachable service)

STATUS_COLOURS = {"success": "green", "partial": "yellow", "failed": "red", "canceled": "red", "failure": "red"}


class CliError(click.ClickException):
    """One sentence in click's own `Error: …` style; exit code USAGE."""

    exit_code = USAGE


class CliFailure(CliError):
    """The same sentence for a command that ran and failed; exit code FAILED."""

    exit_code = FAILED


def _fail(message: str, code: int = USAGE) -> NoReturn:
    raise (CliFailure if code == FAILED else CliError)(message)


def colour_on(stream: TextIO | None = None) -> bool:
    """Colour on a terminal only, and never with NO_COLOR set (https://no-color.org)."""
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("NO_COLOR")


def status_word(word: str | None, width: int = 0, stream: TextIO | None = None) -> str:
    """A run status padded to `width`: green, yellow or red on a terminal, plain otherwise."""
    text = f"{word or '-':<{width}}"
    colour = STATUS_COLOURS.get((word or "").lower())
    return click.style(text, fg=colour) if colour and colour_on(stream) else text


class HelpGroup(click.Group):
    """Lists each command's whole first sentence in `--help`, not a 45-character stub."""

    group_class = type  # subgroups list their commands the same way

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=1_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _specs() -> list[PipelineSpec]:
    try:
        return load_pipelines(settings.pipelines_dir())
    except SpecError as e:
        _fail(str(e))


def _spec(name: str) -> PipelineSpec:
    for spec in _specs():
        if spec.name == name:
            return spec
    names = ", ".join(s.name for s in _specs()) or "none"
    _fail(f"unknown pipeline {name!r} (pipelines: {names})")


def warehouse_conn() -> tuple[embedded.Setup, psycopg.Connection]:
    """The run history's database, its schema up to date; keep the setup referenced while the
    connection is in use (it holds the embedded server, if that is the warehouse)."""
    setup = embedded.configure()
    conn = psycopg.connect(setup.warehouse_url, autocommit=True)
    history.migrate(conn)
    return setup, conn


@click.group(cls=HelpGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.version_option(package_name="etl-assets", prog_name="etl-assets")
def main() -> None:
    """YAML-declared ETL pipelines as partitioned Dagster assets."""


@main.command()
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


@main.command()
def schema() -> None:
    """Print the JSON Schema of a pipeline spec, for editors."""
    click.echo(json.dumps(json_schema(), indent=2))
