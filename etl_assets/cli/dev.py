"""`etl-assets dev`, `instance migrate` and `demo seed`: the local set-up, the embedded
defaults filled in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import FrameType

import click
import psycopg

from etl_assets.cli.group import HelpGroup, _fail
from etl_assets.core import settings
from etl_assets.core.secrets import redact
from etl_assets.dev import demo as demo_mod
from etl_assets.dev import embedded
from etl_assets.dev import instance as dagster_instance


@click.group(cls=HelpGroup)
def demo() -> None:
    """The demo shop behind the demo_sales pipeline."""


@demo.command("seed")
def demo_seed() -> None:
    """Create or refresh the demo source database and products folder, deterministically."""
    setup = embedded.configure()  # keeps the embedded server up while seeding
    home = setup.settings.etl_home
    source_url = setup.settings.demo_source_url
    if source_url is None:
        raise RuntimeError("configure() sets a demo source URL")
    counts = demo_mod.seed(source_url, home / "demo", mysql_url=setup.settings.demo_mysql_url)
    click.echo(
        f"seeded demo: {counts['orders']} orders over {counts['weeks']} weeks, "
        f"{counts['products']} products in {home / 'demo' / 'products'}, "
        + (f"{counts['customers']} customers in MariaDB" if counts["customers"] else "no MariaDB (customers skipped)")
    )


def _migrate_instance() -> None:
    """An unreachable instance database is one sentence, not a traceback."""
    try:
        dagster_instance.migrate_instance()
    except psycopg.OperationalError as e:
        reason = redact((str(e).strip().splitlines() or [type(e).__name__])[0])
        _fail(f"cannot migrate the Dagster instance database (ETL_INSTANCE_URL): {reason}", 1)


@click.group(cls=HelpGroup)
def instance() -> None:
    """The Dagster instance's storage."""


@instance.command("migrate")
def instance_migrate() -> None:
    """Create or upgrade the instance schema; run it before the webserver and the daemon start."""
    setup = embedded.configure_process()  # the migration opens the instance in this process
    _migrate_instance()
    click.echo(f"Dagster instance up to date: {setup.settings.dagster_home}")


@click.command("dev")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address the UI listens on.")
@click.option("--port", default=3000, show_default=True, type=int, help="The UI's port.")
def dev(host: str, port: int) -> None:
    """Open the Dagster UI with the embedded defaults; Ctrl-C stops everything it started."""
    setup = embedded.configure_process()  # the migration below opens the instance in this process
    # Once, before `dagster dev` starts its webserver and daemon together.
    _migrate_instance()
    cmd = [
        sys.executable, "-m", "dagster", "dev",
        "-w", str(settings.PROJECT_ROOT / "workspace.yaml"),
        "-h", host, "-p", str(port),
    ]
    click.echo(f"Dagster UI: http://{host}:{port}  (Ctrl-C to stop)")
    code = _supervise(cmd, setup.child_env())
    what = "the Dagster webserver and daemon"
    if setup.server is not None and embedded.stop(setup.server):
        what = "the Dagster webserver, daemon and embedded PostgreSQL"
    click.echo(f"stopped: {what}")
    sys.exit(0 if code in (0, -signal.SIGINT, 130) else code)


def _supervise(cmd: list[str], env: dict[str, str]) -> int:
    """Run `dagster dev` until it exits or we are stopped; its exit code (0 once interrupted)."""
    # Started from a script (`etl-assets dev &`) SIGINT arrives ignored, and `dagster dev` would
    # inherit that; it maps SIGTERM onto its SIGINT handler, so it would ignore both. A handler
    # installed here is reset to the default in the child at exec: both signals work again.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Its own session: a terminal's Ctrl-C reaches us alone, and we stop dagster dev once,
    # cleanly, instead of both of us interrupting its shutdown.
    proc = subprocess.Popen(cmd, cwd=settings.PROJECT_ROOT, env=env, start_new_session=True)

    def forward(signum: int, _frame: FrameType | None) -> None:
        proc.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    code: int | None
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
    return code
