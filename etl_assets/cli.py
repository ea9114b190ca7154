"""`etl-assets`: validate specs, seed the demo, run pipelines in-process, open the UI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import click

from etl_assets import settings
from etl_assets.spec import SpecError, json_schema, load_pipeline_file, load_pipelines


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _specs():
    try:
        return load_pipelines(settings.pipelines_dir())
    except SpecError as e:
        _fail(str(e))


def _spec(name: str):
    for spec in _specs():
        if spec.name == name:
            return spec
    names = ", ".join(s.name for s in _specs()) or "none"
    _fail(f"unknown pipeline {name!r} (pipelines: {names})")


@click.group()
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


@main.group()
def demo() -> None:
    """The demo shop behind the demo_sales pipeline."""


@demo.command("seed")
def demo_seed() -> None:
    """Create or refresh the demo source database and products folder, deterministically."""
    from etl_assets import demo as demo_mod
    from etl_assets import embedded

    server = embedded.configure()  # noqa: F841  (keeps the embedded server up while seeding)
    counts = demo_mod.seed(
        os.environ["ETL_DEMO_SOURCE_URL"], Path(os.environ["ETL_HOME"]) / "demo",
        mysql_url=os.environ.get("ETL_DEMO_MYSQL_URL") or None,
    )
    click.echo(
        f"seeded demo: {counts['orders']} orders over {counts['weeks']} weeks, "
        f"{counts['products']} products in {Path(os.environ['ETL_HOME']) / 'demo' / 'products'}, "
        + (f"{counts['customers']} customers in MariaDB" if counts["customers"] else "no MariaDB (customers skipped)")
    )


@main.command()
@click.argument("pipeline")
@click.option("--partition", help="One partition key, e.g. 2025-03-02.")
@click.option("--from", "first", help="First partition key of a range (one single run).")
@click.option("--to", "last", help="Last partition key of a range.")
@click.option("--latest", is_flag=True, help="The latest complete partition.")
@click.option("--last", "last_n", type=click.IntRange(1), help="The latest N complete partitions.")
@click.option("--step", type=click.Choice(["raw", "normalized", "validated", "loaded", "report"]),
              help="Run one layer alone; its upstream must already exist.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("-v", "--verbose", count=True, help="Show Dagster's step log (-v info, -vv debug).")
def run(pipeline, partition, first, last, latest, last_n, step, as_json, verbose) -> None:
    """Run a pipeline in-process against the configured instance (the manual, debugging mode)."""
    from etl_assets import embedded

    server = embedded.configure()  # noqa: F841
    import dagster as dg

    from etl_assets.definitions import build_defs
    from etl_assets.runner import RunRequestError, format_summary, resolve_partitions, run_pipeline
    from etl_assets.sensors import notifier_resources

    spec = _spec(pipeline)
    try:
        keys = resolve_partitions(
            spec, partition=partition, first=first, last=last, latest=latest, last_n=last_n
        )
        with dg.DagsterInstance.get() as instance:
            summary = run_pipeline(
                build_defs([spec]), spec, keys, step=step, instance=instance,
                log_level=["WARNING", "INFO", "DEBUG"][min(verbose, 2)],
                # Unresolved EnvVar settings: the senders read them when they send.
                notifiers=notifier_resources([spec]),
            )
    except RunRequestError as e:
        _fail(str(e))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), default=str))
    else:
        click.echo(format_summary(summary))
    sys.exit(0 if summary.status == "success" else 1)


def _warehouse_conn():
    import psycopg

    from etl_assets import embedded, history

    server = embedded.configure()
    conn = psycopg.connect(os.environ["ETL_WAREHOUSE_URL"], autocommit=True)
    history.migrate(conn)
    return server, conn


def _fmt_run(r: dict) -> str:
    started = r["started_at"].strftime("%Y-%m-%d %H:%M:%S") if r["started_at"] else "-"
    parts = r["partitions"][0] if len(r["partitions"]) == 1 else f"{r['partitions'][0]}…{r['partitions'][-1]}"
    dur = f"{r['duration_s']:.1f}s" if r["duration_s"] is not None else "-"
    counts = " ".join(
        f"{name}:{s['inserted'] if s['inserted'] is not None else '-'}/{s['updated'] if s['updated'] is not None else '-'}"
        for name, s in r["sources"].items()
    )
    line = f"{r['run_id'][:8]}  {started}  {r['pipeline']:<14} {parts:<23} {r['status']:<8} {r['trigger']:<8} {dur:>7}  {counts}"
    if r["error_summary"]:
        line += f"\n          error: {r['error_summary']}"
    return line


@main.command()
@click.argument("pipeline", required=False)
@click.option("--status", type=click.Choice(["success", "failed", "partial", "canceled"]),
              help="failed: every run that failed, partial ones included (some sources loaded, "
              "others did not); partial: only those.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="Runs started on or after this date.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--last-success", is_flag=True, help="Only the latest successful run.")
@click.option("--json", "as_json", is_flag=True)
def history(pipeline, status, since, limit, last_success, as_json) -> None:
    """List recorded runs, newest first (inserted/updated per source)."""
    from etl_assets import history as hist

    if pipeline:
        _spec(pipeline)  # an unknown pipeline is an error, as for `run`
    if last_success:
        if not pipeline:
            _fail("--last-success needs a PIPELINE")
        status, limit = "success", 1
    server, conn = _warehouse_conn()  # noqa: F841
    with conn:
        runs = hist.list_runs(
            conn, pipeline=pipeline, status=status,
            since=since.replace(tzinfo=None) if since else None, limit=limit,
        )
        total = hist.count_runs(conn, pipeline) if not runs else len(runs)
    if as_json:
        click.echo(json.dumps(runs[0] if last_success and runs else runs, default=str))
    elif not runs:
        where = f" for {pipeline}" if pipeline else ""
        if not total:
            click.echo(f"no runs recorded{where}")
        else:
            what = {"success": "successful runs", None: "runs"}.get(status, f"{status} runs")
            after = f" since {since:%Y-%m-%d}" if since else ""
            click.echo(f"no {what}{where}{after} ({total} run{'' if total == 1 else 's'} recorded)")
    else:
        click.echo("run       started              pipeline       partitions              status   trigger  duration  source:inserted/updated")
        for r in runs:
            click.echo(_fmt_run(r))
    if last_success and not runs:
        sys.exit(1)


@main.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
def show(run_id: str, as_json: bool) -> None:
    """Explain one run: what ran, when, on which inputs, what changed, what failed, what it produced."""
    from etl_assets import history as hist
    from etl_assets.explain import explain

    server, conn = _warehouse_conn()  # noqa: F841
    with conn:
        run = hist.get_run(conn, run_id)
    if run is None:
        _fail(f"no recorded run matches {run_id!r}")
    click.echo(json.dumps(run, default=str, indent=2) if as_json else explain(run, os.environ["ETL_STORAGE_DIR"]))


@main.command()
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True)
def prune(dry_run: bool, as_json: bool) -> None:
    """Delete runs, history and files past each pipeline's retention (never a latest success)."""
    import dagster as dg

    from etl_assets import embedded, retention

    server = embedded.configure()  # noqa: F841
    specs = _specs()
    with dg.DagsterInstance.get() as instance:
        items = retention.prune(
            instance, specs, warehouse_url=os.environ["ETL_WAREHOUSE_URL"],
            storage_dir=os.environ["ETL_STORAGE_DIR"], dry_run=dry_run,
        )
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "items": [i.as_dict() for i in items]}))
        return
    verb = "would delete" if dry_run else "deleted"
    for i in items:
        click.echo(f"{verb} {i.kind:<11} {i.pipeline:<14} {i.age_days:>6.1f}d  {i.what}")
    click.echo(f"{len(items)} item(s) {verb}" if items else "nothing is past its retention")


@main.group()
@click.option("--url", default="http://127.0.0.1:3000", show_default=True, envvar="ETL_WEBSERVER_URL",
              help="The running Dagster webserver.")
@click.pass_context
def jobs(ctx: click.Context, url: str) -> None:
    """List, run, pause and resume pipelines on a running Dagster webserver."""
    ctx.obj = {"url": url}


def _jobs_call(fn, *args, **kwargs):
    from etl_assets.jobs import JobControlError

    try:
        return fn(*args, **kwargs)
    except JobControlError as e:
        _fail(str(e), 1)


@jobs.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def jobs_list(obj: dict, as_json: bool) -> None:
    """Pipeline, schedule and timezone, state, last run, next tick, success rate (last 20)."""
    from etl_assets import jobs as jobs_mod

    rows = _jobs_call(jobs_mod.list_jobs, obj["url"], [s.name for s in _specs()])
    if as_json:
        click.echo(json.dumps(rows))
        return
    click.echo(f"{'pipeline':<16} {'schedule':<26} {'timezone':<20} {'state':<8} {'last run':<10} {'status':<9} {'next tick (UTC)':<26} success")
    for r in rows:
        rate = f"{r['success_rate']:.0%} of {r['runs_counted']}" if r["success_rate"] is not None else "-"
        click.echo(
            f"{r['pipeline']:<16} {r['schedule'] + ' ' + r['cron']:<26} {r['timezone'] or '-':<20} {r['state']:<8} "
            f"{(r['last_run'] or '-')[:8]:<10} {r['last_status'] or '-':<9} {r['next_tick'] or '-':<26} {rate}"
        )


@jobs.command("run")
@click.argument("pipeline")
@click.option("--partition", help="Partition key; default: the latest complete one.")
@click.pass_obj
def jobs_run(obj: dict, pipeline: str, partition: str | None) -> None:
    """Launch a run now (queued by the daemon like any other)."""
    from etl_assets import jobs as jobs_mod
    from etl_assets.partitions import partitions_def

    spec = _spec(pipeline)
    keys = partitions_def(spec).get_partition_keys()
    key = partition or (keys[-1] if keys else None)
    if key not in keys:
        _fail(f"{pipeline}: {key!r} is not a complete partition key")
    run_id = _jobs_call(jobs_mod.run_job, obj["url"], pipeline, key)
    click.echo(f"launched {run_id} for {pipeline} {key}: {obj['url'].rstrip('/')}/runs/{run_id}")


@jobs.command("enable")
@click.argument("pipeline")
@click.pass_obj
def jobs_enable(obj: dict, pipeline: str) -> None:
    """Resume the pipeline's schedule (also after an auto-pause)."""
    from etl_assets import jobs as jobs_mod

    _spec(pipeline)
    state = _jobs_call(jobs_mod.set_schedule, obj["url"], pipeline, True)
    _record_state(pipeline, "active", "resumed with etl-assets jobs enable")
    click.echo(f"{pipeline}_schedule: {state}")


@jobs.command("disable")
@click.argument("pipeline")
@click.pass_obj
def jobs_disable(obj: dict, pipeline: str) -> None:
    """Pause the pipeline's schedule."""
    from etl_assets import jobs as jobs_mod

    _spec(pipeline)
    state = _jobs_call(jobs_mod.set_schedule, obj["url"], pipeline, False)
    _record_state(pipeline, "paused", "paused with etl-assets jobs disable")
    click.echo(f"{pipeline}_schedule: {state}")


def _record_state(pipeline: str, status: str, reason: str) -> None:
    """Keep etl_meta.pipeline_state in step when the warehouse is reachable (audit trail)."""
    if not os.environ.get("ETL_WAREHOUSE_URL"):
        return
    from etl_assets import history as hist

    server, conn = _warehouse_conn()  # noqa: F841
    with conn:
        hist.set_pipeline_state(conn, pipeline, status, reason)


@jobs.command("logs")
@click.argument("pipeline")
@click.option("--status", type=click.Choice(["failed", "success", "canceled"]))
@click.option("--page", default=1, show_default=True, type=click.IntRange(1))
@click.option("--page-size", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def jobs_logs(obj: dict, pipeline: str, status: str | None, page: int, page_size: int, as_json: bool) -> None:
    """The pipeline's runs, newest first, a page at a time."""
    from etl_assets import jobs as jobs_mod

    _spec(pipeline)
    rows = _jobs_call(jobs_mod.logs, obj["url"], pipeline, status=status, page=page, page_size=page_size)
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        click.echo(f"{r['run_id'][:8]}  {r['status']:<9} {r['partition'] or '-':<18} {r['trigger']:<9} {r['started'] or '-'}")
    if not rows:
        click.echo("no runs on this page")


def _migrate_instance() -> None:
    """An unreachable instance database is one sentence, not a traceback."""
    import psycopg

    from etl_assets import embedded
    from etl_assets.secrets import redact

    try:
        embedded.migrate_instance()
    except psycopg.OperationalError as e:
        reason = redact((str(e).strip().splitlines() or [type(e).__name__])[0])
        _fail(f"cannot migrate the Dagster instance database (ETL_INSTANCE_URL): {reason}", 1)


@main.group()
def instance() -> None:
    """The Dagster instance's storage."""


@instance.command("migrate")
def instance_migrate() -> None:
    """Create or upgrade the instance schema; run it before the webserver and the daemon start."""
    from etl_assets import embedded

    server = embedded.configure()  # noqa: F841
    _migrate_instance()
    click.echo(f"Dagster instance up to date: {os.environ['DAGSTER_HOME']}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=3000, show_default=True, type=int)
def dev(host: str, port: int) -> None:
    """Open the Dagster UI with the embedded defaults; Ctrl-C stops everything it started."""
    from etl_assets import embedded

    server = embedded.configure()  # noqa: F841
    # Once, before `dagster dev` starts its webserver and daemon together.
    _migrate_instance()
    cmd = [
        sys.executable, "-m", "dagster", "dev",
        "-w", str(settings.PROJECT_ROOT / "workspace.yaml"),
        "-h", host, "-p", str(port),
    ]
    click.echo(f"Dagster UI: http://{host}:{port}  (Ctrl-C to stop)")
    # Its own session: a terminal's Ctrl-C reaches us alone, and we stop dagster dev once,
    # cleanly, instead of both of us interrupting its shutdown.
    proc = subprocess.Popen(cmd, cwd=settings.PROJECT_ROOT, start_new_session=True)

    def forward(signum, _frame):
        proc.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the webserver, daemon and code servers too
            code = proc.wait()
        else:
            code = 0 if code in (0, -signal.SIGINT, 130) else code
    sys.exit(0 if code in (0, -signal.SIGINT, 130) else code)


from etl_assets.schedule_cli import schedule_command  # noqa: E402  (registered below)

main.add_command(schedule_command)

if __name__ == "__main__":
    main()
