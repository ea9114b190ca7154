"""`etl-assets run`: a pipeline in-process against the configured instance, with live progress
and a summary of a few lines."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import TextIO

import click
import dagster as dg

from etl_assets.cli.group import FAILED, _fail, status_word
from etl_assets.cli.progress import Progress
from etl_assets.cli.specs import _spec
from etl_assets.cli.summary import format_summary, write_run_log
from etl_assets.core.outcome import RunOutcome
from etl_assets.definitions import build_defs
from etl_assets.dev import embedded
from etl_assets.orchestration.runner import RunRequestError, resolve_partitions, run_pipeline
from etl_assets.orchestration.sensors import notifier_resources
from etl_assets.spec import PipelineSpec


@click.command("run")
@click.argument("pipeline")
@click.option("--partition", help="One partition key, e.g. 2025-03-02.")
@click.option("--from", "first", help="First partition key of a range (one single run).")
@click.option("--to", "last", help="Last partition key of a range.")
@click.option("--latest", is_flag=True, help="The latest complete partition.")
@click.option("--last", "last_n", type=click.IntRange(1), help="The latest N complete partitions.")
@click.option("--step", type=click.Choice(["raw", "normalized", "validated", "loaded", "report"]),
              help="Run one layer alone; its upstream must already exist.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the summary) and nothing else on stdout.")
@click.option("--progress/--no-progress", default=None,
              help="Print each step as it starts and ends (default: on a terminal; with --json, on stderr).")
@click.option("-v", "--verbose", count=True, help="Show Dagster's step log, stack traces included (-v info, -vv debug).")
def run(pipeline: str, partition: str | None, first: str | None, last: str | None, latest: bool,
        last_n: int | None, step: str | None, as_json: bool, progress: bool | None, verbose: int) -> None:
    """Run a pipeline in-process against the configured instance (the manual, debugging mode)."""
    setup = embedded.configure_process()  # noqa: F841  (keeps an embedded server up while in use)
    spec = _spec(pipeline)
    stream = sys.stderr if as_json else sys.stdout
    show_progress = progress if progress is not None else (not as_json and sys.stdout.isatty())
    try:
        keys = resolve_partitions(
            spec, partition=partition, first=first, last=last, latest=latest, last_n=last_n
        )
        summary, log_path = _execute(spec, keys, step, verbose, stream if show_progress else None)
    except RunRequestError as e:
        _fail(str(e))
    _print_summary(summary, spec, log_path, as_json)
    sys.exit(0 if summary.status == "success" else FAILED)


def _execute(spec: PipelineSpec, keys: list[str], step: str | None, verbose: int,
             progress_to: TextIO | None) -> tuple[RunOutcome, str]:
    """Run `keys`, with progress on `progress_to` (None: none); the outcome and its log file."""
    with dg.DagsterInstance.get() as instance:
        with contextlib.ExitStack() as stack:
            listener = None
            if progress_to is not None:
                listener = stack.enter_context(Progress(spec, keys, step, progress_to))
            summary = run_pipeline(
                build_defs([spec]), spec, keys, step=step, instance=instance,
                # Without -v Dagster's log stays in the run's log file: a failure is then one
                # sentence in the summary, not its ERROR lines and stack traces.
                log_level=["CRITICAL", "INFO", "DEBUG"][min(verbose, 2)],
                # Unresolved EnvVar settings: the senders read them when they send.
                notifiers=notifier_resources([spec]),
                on_event=listener,
            )
        return summary, write_run_log(instance, summary.run_id, spec.name)


def _print_summary(summary: RunOutcome, spec: PipelineSpec, log_path: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({**summary.as_dict(), "log_path": log_path}, default=str))
        return
    head, _, rest = format_summary(summary, spec, log_path).partition("\n")
    word = summary.status.upper()
    click.echo(head.removesuffix(word) + status_word(word))
    if rest:
        click.echo(rest)
