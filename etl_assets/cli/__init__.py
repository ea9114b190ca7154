"""`etl-assets`: validate specs, seed the demo, run pipelines in-process, open the UI.

Every command is registered here by name, as "module:attribute" and its help line, and its
module is imported only when the command runs: `etl-assets history` does not pay for
importing what `run` needs, and `--help` imports no command at all. Shared helpers are in
`group.py`. `test_startup.py` checks each help line here against the command's own.
"""

from __future__ import annotations

import click

from etl_assets.cli.group import LazyCommand, LazyGroup

COMMANDS: dict[str, LazyCommand] = {
    "api": LazyCommand("etl_assets.api.cli:api_group",
                       "The job API: pipelines, runs and the audit trail over HTTP, behind tokens."),
    "backfill": LazyCommand("etl_assets.cli.ops:backfill_command",
                            "Launch a range of partitions through the run queue, skipping what is loaded or in flight."),
    "demo": LazyCommand("etl_assets.cli.dev:demo", "The demo shop behind the demo_sales pipeline."),
    "dev": LazyCommand("etl_assets.cli.dev:dev",
                       "Open the Dagster UI with the embedded defaults; Ctrl-C stops everything it started."),
    "doctor": LazyCommand("etl_assets.cli.ops:doctor_command",
                          "Daemon, webserver, instance and warehouse: OK or DOWN with a reason; non-zero if any is down."),
    "history": LazyCommand("etl_assets.cli.history:history",
                           "List recorded runs, newest first (inserted/updated per source)."),
    "instance": LazyCommand("etl_assets.cli.dev:instance", "The Dagster instance's storage."),
    "jobs": LazyCommand("etl_assets.cli.jobs:jobs",
                        "List, run, pause and resume pipelines on a running Dagster webserver."),
    "prune": LazyCommand("etl_assets.cli.prune:prune",
                         "Delete runs, history and files past each pipeline's retention (never a latest success)."),
    "report": LazyCommand("etl_assets.cli.report:report_command",
                          "Render a pipeline's report from what is loaded: one partition, or a range as one report."),
    "run": LazyCommand("etl_assets.cli.run:run",
                       "Run a pipeline in-process against the configured instance (the manual, debugging mode)."),
    "schedule": LazyCommand("etl_assets.cli.schedule:schedule_command",
                            "Preview a pipeline's schedule: the next ticks, local and UTC, with their partitions."),
    "schema": LazyCommand("etl_assets.cli.validate:schema", "Print the JSON Schema of a pipeline spec, for editors."),
    "show": LazyCommand("etl_assets.cli.history:show",
                        "Explain one run: what ran, when, on which inputs, what changed, what failed, what it produced."),
    "validate": LazyCommand("etl_assets.cli.validate:validate",
                            "Validate pipeline specs: a file, or every file in a folder (default: the pipelines dir)."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.version_option(package_name="etl-assets", prog_name="etl-assets")
def main() -> None:
    """YAML-declared ETL pipelines as partitioned Dagster assets."""


__all__ = ["COMMANDS", "main"]
