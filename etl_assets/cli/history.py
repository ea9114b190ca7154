"""`etl-assets history` and `show`: the recorded runs, and one run explained.

Read straight from the history store over psycopg: neither command needs Dagster.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

import click

from etl_assets.cli.explain import explain
from etl_assets.cli.group import _fail, status_word
from etl_assets.cli.specs import _spec, _specs
from etl_assets.cli.warehouse import warehouse_conn
from etl_assets.ops import history_store as hist


def _fmt_run(r: dict[str, Any]) -> str:
    started = r["started_at"].strftime("%Y-%m-%d %H:%M:%S") if r["started_at"] else "-"
    parts = r["partitions"][0] if len(r["partitions"]) == 1 else f"{r['partitions'][0]}…{r['partitions'][-1]}"
    dur = f"{r['duration_s']:.1f}s" if r["duration_s"] is not None else "-"
    counts = " ".join(
        f"{name}:{s['inserted'] if s['inserted'] is not None else '-'}/{s['updated'] if s['updated'] is not None else '-'}"
        for name, s in r["sources"].items()
    )
    line = f"{r['run_id'][:8]}  {started}  {r['pipeline']:<14} {parts:<23} {status_word(r['status'], 8)} {r['trigger']:<8} {dur:>7}  {counts}"
    if r["error_summary"]:
        line += f"\n          error: {r['error_summary']}"
    return line


def _print_none(pipeline: str | None, status: str | None, since: dt.datetime | None, total: int) -> None:
    """No run matches: say whether any is recorded at all."""
    where = f" for {pipeline}" if pipeline else ""
    if not total:
        click.echo(f"no runs recorded{where}")
    else:
        what = {"success": "successful runs", None: "runs"}.get(status, f"{status} runs")
        after = f" since {since:%Y-%m-%d}" if since else ""
        click.echo(f"no {what}{where}{after} ({total} run{'' if total == 1 else 's'} recorded)")


@click.command("history")
@click.argument("pipeline", required=False)
@click.option("--status", type=click.Choice(["success", "failed", "partial", "canceled"]),
              help="failed: every run that failed, partial ones included (some sources loaded, "
              "others did not); partial: only those.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="Runs started on or after this date.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000), help="At most this many runs.")
@click.option("--last-success", is_flag=True, help="Only the latest successful run.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of run records.")
def history(pipeline: str | None, status: str | None, since: dt.datetime | None, limit: int,
            last_success: bool, as_json: bool) -> None:
    """List recorded runs, newest first (inserted/updated per source)."""
    if pipeline:
        _spec(pipeline)  # an unknown pipeline is an error, as for `run`
    if last_success:
        if not pipeline:
            _fail("--last-success needs a PIPELINE")
        status, limit = "success", 1
    setup, conn = warehouse_conn()
    with conn:
        runs = hist.list_runs(
            conn, pipeline=pipeline, status=status,
            since=since.replace(tzinfo=None) if since else None, limit=limit,
        )
        total = hist.count_runs(conn, pipeline) if not runs else len(runs)
    if as_json:
        click.echo(json.dumps(runs[0] if last_success and runs else runs, default=str))
    elif not runs:
        _print_none(pipeline, status, since, total)
    else:
        click.echo("run       started              pipeline       partitions              status   trigger  duration  source:inserted/updated")
        for r in runs:
            click.echo(_fmt_run(r))
    if last_success and not runs:
        sys.exit(1)


@click.command("show")
@click.argument("run_id")
@click.option("--files", is_flag=True, help="List every file the run produced, not a summary per layer.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's full record as JSON.")
def show(run_id: str, files: bool, as_json: bool) -> None:
    """Explain one run: what ran, when, on which inputs, what changed, what failed, what it produced."""
    setup, conn = warehouse_conn()
    with conn:
        run = hist.get_run(conn, run_id)
    if run is None:
        _fail(f"no recorded run matches {run_id!r}")
    if as_json:
        click.echo(json.dumps(run, default=str, indent=2))
        return
    # Times in the pipeline's own timezone (and UTC); a pipeline since removed: UTC alone.
    tz = next((s.timezone for s in _specs() if s.name == run["pipeline"]), "UTC")
    click.echo(explain(run, setup.settings.storage_dir, timezone=tz, files=files))
