"""`etl-assets`: validate specs, seed the demo, run pipelines in-process, open the UI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import click

from etl_assets.core import settings
from etl_assets.spec import SpecError, json_schema, load_pipeline_file, load_pipelines

# Exit codes, the same for the same kind of error in every command.
USAGE = 2  # a bad option, an unknown pipeline or partition
FAILED = 1  # the command ran and what it did failed (a run, an invalid spec, an unreachable service)

STATUS_COLOURS = {"success": "green", "partial": "yellow", "failed": "red", "canceled": "red", "failure": "red"}


class CliError(click.ClickException):
    """One sentence in click's own `Error: …` style, with the exit code of its kind."""

    def __init__(self, message: str, exit_code: int = USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _fail(message: str, code: int = USAGE) -> NoReturn:
    raise CliError(message, code)


def colour_on(stream=None) -> bool:
    """Colour on a terminal only, and never with NO_COLOR set (https://no-color.org)."""
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("NO_COLOR")


def status_word(word: str | None, width: int = 0, stream=None) -> str:
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


@main.group()
def demo() -> None:
    """The demo shop behind the demo_sales pipeline."""


@demo.command("seed")
def demo_seed() -> None:
    """Create or refresh the demo source database and products folder, deterministically."""
    from etl_assets.dev import demo as demo_mod
    from etl_assets.dev import embedded

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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the summary) and nothing else on stdout.")
@click.option("--progress/--no-progress", default=None,
              help="Print each step as it starts and ends (default: on a terminal; with --json, on stderr).")
@click.option("-v", "--verbose", count=True, help="Show Dagster's step log, stack traces included (-v info, -vv debug).")
def run(pipeline, partition, first, last, latest, last_n, step, as_json, progress, verbose) -> None:
    """Run a pipeline in-process against the configured instance (the manual, debugging mode)."""
    from etl_assets.dev import embedded

    server = embedded.configure()  # noqa: F841
    import dagster as dg

    from etl_assets.cli.progress import Progress
    from etl_assets.cli.summary import format_summary, write_run_log
    from etl_assets.definitions import build_defs
    from etl_assets.orchestration.runner import RunRequestError, resolve_partitions, run_pipeline
    from etl_assets.orchestration.sensors import notifier_resources

    spec = _spec(pipeline)
    stream = sys.stderr if as_json else sys.stdout
    show_progress = progress if progress is not None else (not as_json and sys.stdout.isatty())
    try:
        keys = resolve_partitions(
            spec, partition=partition, first=first, last=last, latest=latest, last_n=last_n
        )
        with dg.DagsterInstance.get() as instance:
            progress_ctx = Progress(spec, keys, step, stream) if show_progress else contextlib.nullcontext()
            with progress_ctx as listener:
                summary = run_pipeline(
                    build_defs([spec]), spec, keys, step=step, instance=instance,
                    # Without -v Dagster's log stays in the run's log file: a failure is then one
                    # sentence in the summary, not its ERROR lines and stack traces.
                    log_level=["CRITICAL", "INFO", "DEBUG"][min(verbose, 2)],
                    # Unresolved EnvVar settings: the senders read them when they send.
                    notifiers=notifier_resources([spec]),
                    on_event=listener,
                )
                if isinstance(listener, Progress):
                    listener.finish(instance, summary.run_id)
            log_path = write_run_log(instance, summary.run_id, spec.name)
    except RunRequestError as e:
        _fail(str(e))
    if as_json:
        click.echo(json.dumps({**summary.as_dict(), "log_path": log_path}, default=str))
    else:
        head, _, rest = format_summary(summary, spec, log_path).partition("\n")
        word = summary.status.upper()
        click.echo(head.removesuffix(word) + status_word(word))
        if rest:
            click.echo(rest)
    sys.exit(0 if summary.status == "success" else FAILED)


def _warehouse_conn():
    import psycopg

    from etl_assets.dev import embedded
    from etl_assets.ops import history

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
    line = f"{r['run_id'][:8]}  {started}  {r['pipeline']:<14} {parts:<23} {status_word(r['status'], 8)} {r['trigger']:<8} {dur:>7}  {counts}"
    if r["error_summary"]:
        line += f"\n          error: {r['error_summary']}"
    return line


@main.command()
@click.argument("pipeline", required=False)
@click.option("--status", type=click.Choice(["success", "failed", "partial", "canceled"]),
              help="failed: every run that failed, partial ones included (some sources loaded, "
              "others did not); partial: only those.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="Runs started on or after this date.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000), help="At most this many runs.")
@click.option("--last-success", is_flag=True, help="Only the latest successful run.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of run records.")
def history(pipeline, status, since, limit, last_success, as_json) -> None:
    """List recorded runs, newest first (inserted/updated per source)."""
    from etl_assets.ops import history as hist

    if pipeline:
        _spec(pipeline)  # an unknown pipeline is an error, as for `run`
    if last_success:
        if not pipeline:
            _fail("--last-success needs a PIPELINE")
        status, limit = "success", 1
    server, conn = _warehouse_conn()
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
@click.option("--files", is_flag=True, help="List every file the run produced, not a summary per layer.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's full record as JSON.")
def show(run_id: str, files: bool, as_json: bool) -> None:
    """Explain one run: what ran, when, on which inputs, what changed, what failed, what it produced."""
    from etl_assets.cli.explain import explain
    from etl_assets.ops import history as hist

    server, conn = _warehouse_conn()
    with conn:
        run = hist.get_run(conn, run_id)
    if run is None:
        _fail(f"no recorded run matches {run_id!r}")
    if as_json:
        click.echo(json.dumps(run, default=str, indent=2))
        return
    # Times in the pipeline's own timezone (and UTC); a pipeline since removed: UTC alone.
    tz = next((s.timezone for s in _specs() if s.name == run["pipeline"]), "UTC")
    click.echo(explain(run, os.environ["ETL_STORAGE_DIR"], timezone=tz, files=files))


@main.command()
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print {dry_run, items} as JSON.")
def prune(dry_run: bool, as_json: bool) -> None:
    """Delete runs, history and files past each pipeline's retention (never a latest success)."""
    import dagster as dg

    from etl_assets.dev import embedded
    from etl_assets.ops import retention

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
    from etl_assets.ops.jobcontrol import JobControlError

    try:
        return fn(*args, **kwargs)
    except JobControlError as e:
        _fail(str(e), 1)


# Dagster's run statuses in the words `history` uses, for runs history has not recorded.
DAGSTER_WORDS = {"SUCCESS": "success", "FAILURE": "failed", "CANCELED": "canceled", "CANCELING": "running",
                 "STARTED": "running", "STARTING": "queued", "QUEUED": "queued", "NOT_STARTED": "queued"}


def _recorded(fn, *args):
    """Ask the run history, when its warehouse is configured and answers; None otherwise."""
    if not os.environ.get("ETL_WAREHOUSE_URL"):
        return None
    import psycopg

    try:
        server, conn = _warehouse_conn()
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
def jobs_list(obj: dict, as_json: bool) -> None:
    """Pipeline, schedule and timezone, state, last run, next tick, success rate (last 20)."""
    from etl_assets.ops import history as hist
    from etl_assets.ops import jobcontrol as jobs_mod

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
def jobs_run(obj: dict, pipeline: str, partition: str | None) -> None:
    """Launch a run now (queued by the daemon like any other)."""
    from etl_assets.core.partitions import partitions_def
    from etl_assets.ops import jobcontrol as jobs_mod

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
    from etl_assets.ops import jobcontrol as jobs_mod

    _spec(pipeline)
    state = _jobs_call(jobs_mod.set_schedule, obj["url"], pipeline, True)
    _record_state(pipeline, "active", "resumed with etl-assets jobs enable")
    click.echo(f"{pipeline}_schedule: {state}")


@jobs.command("disable")
@click.argument("pipeline")
@click.pass_obj
def jobs_disable(obj: dict, pipeline: str) -> None:
    """Pause the pipeline's schedule."""
    from etl_assets.ops import jobcontrol as jobs_mod

    _spec(pipeline)
    state = _jobs_call(jobs_mod.set_schedule, obj["url"], pipeline, False)
    _record_state(pipeline, "paused", "paused with etl-assets jobs disable")
    click.echo(f"{pipeline}_schedule: {state}")


def _record_state(pipeline: str, status: str, reason: str) -> None:
    """Keep etl_meta.pipeline_state in step when the warehouse is reachable (audit trail)."""
    if not os.environ.get("ETL_WAREHOUSE_URL"):
        return
    from etl_assets.ops import history as hist

    server, conn = _warehouse_conn()
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
def jobs_logs(obj: dict, pipeline: str, status: str | None, page: int, page_size: int, as_json: bool) -> None:
    """The pipeline's runs, newest first, a page at a time."""
    from etl_assets.ops import history as hist
    from etl_assets.ops import jobcontrol as jobs_mod

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


def _migrate_instance() -> None:
    """An unreachable instance database is one sentence, not a traceback."""
    import psycopg

    from etl_assets.core.secrets import redact
    from etl_assets.dev import embedded

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
    from etl_assets.dev import embedded

    server = embedded.configure()  # noqa: F841
    _migrate_instance()
    click.echo(f"Dagster instance up to date: {os.environ['DAGSTER_HOME']}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The address the UI listens on.")
@click.option("--port", default=3000, show_default=True, type=int, help="The UI's port.")
def dev(host: str, port: int) -> None:
    """Open the Dagster UI with the embedded defaults; Ctrl-C stops everything it started."""
    from etl_assets.dev import embedded

    server = embedded.configure()
    # Once, before `dagster dev` starts its webserver and daemon together.
    _migrate_instance()
    cmd = [
        sys.executable, "-m", "dagster", "dev",
        "-w", str(settings.PROJECT_ROOT / "workspace.yaml"),
        "-h", host, "-p", str(port),
    ]
    click.echo(f"Dagster UI: http://{host}:{port}  (Ctrl-C to stop)")
    # Started from a script (`etl-assets dev &`) SIGINT arrives ignored, and `dagster dev` would
    # inherit that; it maps SIGTERM onto its SIGINT handler, so it would ignore both. A handler
    # installed here is reset to the default in the child at exec: both signals work again.
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
        code = None
    if code is None or code in (-signal.SIGINT, 130):
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the webserver, daemon and code servers too
            proc.wait()
        code = 0
    what = "the Dagster webserver and daemon"
    if server is not None and embedded.stop(server):
        what = "the Dagster webserver, daemon and embedded PostgreSQL"
    click.echo(f"stopped: {what}")
    sys.exit(0 if code in (0, -signal.SIGINT, 130) else code)


from etl_assets.cli.schedule import schedule_command  # noqa: E402  (registered below)

main.add_command(schedule_command)

from etl_assets.api.cli import api_group  # noqa: E402  (registered below)

main.add_command(api_group)

from etl_assets.cli.ops import backfill_command, doctor_command  # noqa: E402  (registered below)

main.add_command(backfill_command)
main.add_command(doctor_command)

from etl_assets.cli.report import report_command  # noqa: E402  (registered below)

main.add_command(report_command)

