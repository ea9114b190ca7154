"""`etl-assets backfill` and `etl-assets doctor`: launching ranges safely, and checking health."""

from __future__ import annotations

import json
import sys
from typing import NoReturn

import click
import dagster as dg
from sqlalchemy.exc import SQLAlchemyError

from etl_assets.cli import backfill, doctor
from etl_assets.core import settings
from etl_assets.core.secrets import redact
from etl_assets.dev import embedded
from etl_assets.ops import jobcontrol as jobs_mod
from etl_assets.orchestration.runner import RunRequestError, resolve_partitions
from etl_assets.spec import PipelineSpec, SpecError, load_pipelines

WEBSERVER = click.option(
    "--url", default="http://127.0.0.1:3000", show_default=True, envvar="ETL_WEBSERVER_URL",
    help="The running Dagster webserver.",
)


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _spec(name: str) -> PipelineSpec:
    try:
        specs = load_pipelines(settings.pipelines_dir())
    except SpecError as e:
        _fail(str(e))
    for spec in specs:
        if spec.name == name:
            return spec
    _fail(f"unknown pipeline {name!r} (pipelines: {', '.join(s.name for s in specs) or 'none'})")


def _span(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]} … {keys[-1]}"


def _print_backfill(b: backfill.Backfill, url: str) -> None:
    mode = "dry run" if b.dry_run else f"backfill {b.backfill_id}"
    per = f", at most {b.max_concurrent} at once" if b.max_concurrent else ""
    click.echo(f"{b.pipeline} {_span([b.first, b.last])} ({len(b.partitions)} partitions), "
               f"reprocess {b.reprocess}{per}, {mode}")
    for p in b.partitions:
        run = f" (run {p.run_id[:8]})" if p.run_id else ""
        click.echo(f"  {p.partition}  {p.state:<12}  {p.action}{run}")
    if not b.runs:
        click.echo("nothing to launch")
    elif b.dry_run:
        n = len(b.runs)
        click.echo(f"would launch {n} run{'' if n == 1 else 's'}: " + "; ".join(_span(r.partitions) for r in b.runs))
    for r in b.runs:
        if r.run_id:
            click.echo(f"launched {r.run_id} for {_span(r.partitions)}: {url.rstrip('/')}/runs/{r.run_id}")


@click.command("backfill")
@click.argument("pipeline")
@click.option("--from", "first", required=True, help="First partition key of the range.")
@click.option("--to", "last", required=True, help="Last partition key of the range.")
@click.option("--reprocess", type=click.Choice(["missing", "failed", "all"]), default="missing", show_default=True,
              help="missing: every partition not loaded, failed ones included; failed: only those whose "
              "latest attempt failed (partial runs included); all: every partition. Never one in flight.")
@click.option("--dry-run", is_flag=True, help="List each partition's state and what would happen; launch nothing.")
@click.option("--max-concurrent", type=click.IntRange(1), help="One run per partition, at most N at once.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@WEBSERVER
def backfill_command(pipeline: str, first: str, last: str, reprocess: backfill.Reprocess, dry_run: bool,
                     max_concurrent: int | None, as_json: bool, url: str) -> None:
    """Launch a range of partitions through the run queue, skipping what is loaded or in flight."""
    # The plan reads the Dagster instance in this process; the setup keeps an embedded server up.
    setup = embedded.configure_process()  # noqa: F841
    spec = _spec(pipeline)
    try:
        keys = resolve_partitions(spec, first=first, last=last)
    except RunRequestError as e:
        _fail(str(e))
    plan = None
    try:
        if not dry_run:
            jobs_mod.server_info(url)  # before anything is launched
        plan = _plan(spec, keys, reprocess, max_concurrent, dry_run)
        if not dry_run:
            backfill.launch(url, plan)
    except (jobs_mod.JobControlError, backfill.BackfillError) as e:
        if plan is not None and any(r.run_id for r in plan.runs):
            _print_backfill(plan, url)  # what was launched before the failure
        _fail(str(e), 1)
    if as_json:
        click.echo(json.dumps(plan.as_dict()))
    else:
        _print_backfill(plan, url)


def _plan(spec: PipelineSpec, keys: list[str], reprocess: backfill.Reprocess, max_concurrent: int | None,
          dry_run: bool) -> backfill.Backfill:
    try:
        with dg.DagsterInstance.get() as instance:
            if max_concurrent and not dry_run:
                backfill.check_lanes(instance)
            return backfill.plan(instance, spec, keys, reprocess=reprocess,
                                 max_concurrent=max_concurrent, dry_run=dry_run)
    except SQLAlchemyError as e:
        reason = redact((str(e).strip().splitlines() or [type(e).__name__])[0])
        _fail(f"{spec.name}: cannot read partition states from the Dagster instance (ETL_INSTANCE_URL): {reason}", 1)


@click.command("doctor")
@click.option("--max-heartbeat-age", type=click.FloatRange(min=1), default=300, show_default=True,
              help="Seconds since a daemon's last heartbeat after which it counts as down.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@WEBSERVER
def doctor_command(max_heartbeat_age: float, as_json: bool, url: str) -> None:
    """Daemon, webserver, instance and warehouse: OK or DOWN with a reason; non-zero if any is down."""
    # Fills in the settings left unset; with no warehouse configured, the embedded one is it.
    # The checks open the Dagster instance in this process.
    setup = embedded.configure_process()  # noqa: F841
    checks = doctor.run_checks(url, max_heartbeat_age)
    ok = all(c.ok for c in checks)
    if as_json:
        click.echo(json.dumps({"ok": ok, "checks": [c.as_dict() for c in checks]}))
    else:
        for c in checks:
            click.echo(f"{c.name:<32} {'OK' if c.ok else 'DOWN':<4}  {c.reason}")
    sys.exit(0 if ok else 1)
