"""`etl-assets jobs`: list, run, pause and resume pipelines on a running Dagster webserver."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click
import psycopg

from etl_assets.cli.group import HelpGroup, _fail, status_word
from etl_assets.cli.specs import _spec, _specs
from etl_assets.cli.warehouse import warehouse_conn
from etl_assets.core import settings
from etl_assets.core.partitions import partitions_def
from etl_assets.ops import history as hist
from etl_assets.ops import jobcontrol as jobs_mod

T = TypeVar("T")

# Dagster's run statuses in the words `history` uses, for runs history has not recorded.
DAGSTER_WORDS = {"SUCCESS": "success", "FAILURE": "failed", "CANCELED": "canceled", "CANCELING": "running",
                 "STARTED": "running", "STARTING": "queued", "QUEUED": "queued", "NOT_STARTED": "queued"}


@click.group(cls=HelpGroup)
@click.option("--url", default="http://127.0.0.1:3000", show_default=True, envvar="ETL_WEBSERVER_URL",
              help="The running Dagster webserver.")
@click.pass_context
def jobs(ctx: click.Context, url: str) -> None:
    """List, run, pause and resume pipelines on a running Dagster webserver."""
    ctx.obj = {"url": url}


def _jobs_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    except jobs_mod.JobControlError as e:
        _fail(str(e), 1)


def _recorded(fn: Callable[..., T], *args: Any) -> T | None:
    """Ask the run history, when its warehouse is configured and answers; None otherwise."""
    if not settings.warehouse_url():
        return None
    try:
        setup, conn = warehouse_conn()
        with conn:
            return fn(conn, *args)
    except psycopg.Error:
        return None


def _table(header: list[str], rows: list[list[str]], status_col: int) -> None:
    """Columns as wide as their widest cell; the status word coloured on a terminal."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for n, r in enumerate([header, *rows]):
        cells = [
            status_word(c, w) if i == status_col and n else f"{c:<{w}}" for i, (c, w) in enumerate(zip(r, widths))
        ]
        click.echo("  ".join(cells).rstrip())


@jobs.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per pipeline.")
@click.pass_obj
def jobs_list(obj: dict[str, str], as_json: bool) -> None:
    """Pipeline, schedule and timezone, state, last run, next tick, success rate (last 20)."""
    rows = _jobs_call(jobs_mod.list_jobs, obj["url"], [s.name for s in _specs()])
    for r in rows:
        # The last run as `history` records it: the same run, the same status word.
        latest = _recorded(lambda conn, p: hist.list_runs(conn, pipeline=p, limit=1), r["pipeline"])
        if latest:
            last = latest[0]
            r.update(last_run=last["run_id"], last_status=last["status"],
                     last_started=last["started_at"].isoformat() if last["started_at"] else None)
        elif r["last_status"]:
            r["last_status"] = DAGSTER_WORDS.get(r["last_status"], r["last_status"].lower())
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = [
        [r["pipeline"], f"{r['schedule']} {r['cron']}", r["timezone"] or "-", r["state"].lower(),
         (r["last_run"] or "-")[:8], r["last_status"] or "-", r["next_tick"] or "-",
         f"{r['success_rate']:.0%} of {r['runs_counted']}" if r["success_rate"] is not None else "-"]
        for r in rows
    ]
    _table(["pipeline", "schedule", "timezone", "state", "last run", "status", "next tick (UTC)", "success"],
           table, status_col=5)


@jobs.command("run")
@click.argument("pipeline")
@click.option("--partition", help="Partition key; default: the latest complete one.")
@click.pass_obj
def jobs_run(obj: dict[str, str], pipeline: str, partition: str | None) -> None:
    """Launch a run now (queued by the daemon like any other)."""
    spec = _spec(pipeline)
    keys = partitions_def(spec).get_partition_keys()
    key = partition or (keys[-1] if keys else None)
    if key is None or key not in keys:
        _fail(f"{pipeline}: {key!r} is not a complete partition key")
    run_id = _jobs_call(jobs_mod.run_job, obj["url"], pipeline, key)
    click.echo(f"launched {run_id} for {pipeline} {key}: {obj['url'].rstrip('/')}/runs/{run_id}")


@jobs.command("enable")
@click.argument("pipeline")
@click.pass_obj
def jobs_enable(obj: dict[str, str], pipeline: str) -> None:
    """Resume the pipeline's schedule (also after an auto-pause)."""
    _spec(pipeline)
    state = _jobs_call(jobs_mod.set_schedule, obj["url"], pipeline, True)
    _record_state(pipeline, "active", "resumed with etl-assets jobs enable")
    click.echo(f"{pipeline}_schedule: {state}")


@jobs.command("disable")
@click.argument("pipeline")
@click.pass_obj
def jobs_disable(obj: dict[str, str], pipeline: str) -> None:
    """Pause the pipeline's schedule."""
    _spec(pipeline)
    state = _jobs_call(jobs_mod.set_schedule, obj["url"], pipeline, False)
    _record_state(pipeline, "paused", "paused with etl-assets jobs disable")
    click.echo(f"{pipeline}_schedule: {state}")


def _record_state(pipeline: str, status: str, reason: str) -> None:
    """Keep etl_meta.pipeline_state in step when the warehouse is reachable (audit trail)."""
    if not settings.warehouse_url():
        return
    setup, conn = warehouse_conn()
    with conn:
        hist.set_pipeline_state(conn, pipeline, status, reason)


@jobs.command("logs")
@click.argument("pipeline")
@click.option("--status", type=click.Choice(["success", "failed", "partial", "canceled", "queued", "running"]),
              help="Only runs with this status; failed includes partial runs, as in `history`.")
@click.option("--page", default=1, show_default=True, type=click.IntRange(1), help="Which page, 1 the newest.")
@click.option("--page-size", default=20, show_default=True, type=click.IntRange(1, 500), help="Runs per page.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of runs.")
@click.pass_obj
def jobs_logs(obj: dict[str, str], pipeline: str, status: str | None, page: int, page_size: int,
              as_json: bool) -> None:
    """The pipeline's runs, newest first, a page at a time."""
    _spec(pipeline)
    if status == "partial":  # a Dagster FAILURE that history records as partial: filter, then page
        rows = _jobs_call(jobs_mod.logs, obj["url"], pipeline, status="partial", page=1, page_size=1000)
    else:
        rows = _jobs_call(jobs_mod.logs, obj["url"], pipeline, status=status, page=page, page_size=page_size)
    recorded = _recorded(hist.statuses, [r["run_id"] for r in rows]) or {}
    for r in rows:
        r["status"] = recorded.get(r["run_id"]) or DAGSTER_WORDS.get(r["status"], r["status"].lower())
    if status == "partial":
        rows = [r for r in rows if r["status"] == "partial"][(page - 1) * page_size : page * page_size]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if rows:
        _table(["run", "status", "partition", "trigger", "started"],
               [[r["run_id"][:8], r["status"], r["partition"] or "-", r["trigger"], r["started"] or "-"] for r in rows],
               status_col=1)
    else:
        click.echo("no runs on this page")
