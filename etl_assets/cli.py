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
    counts = demo_mod.seed(os.environ["ETL_DEMO_SOURCE_URL"], Path(os.environ["ETL_HOME"]) / "demo")
    click.echo(
        f"seeded demo: {counts['orders']} orders over {counts['weeks']} weeks, "
        f"{counts['products']} products in {Path(os.environ['ETL_HOME']) / 'demo' / 'products'}"
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

    spec = _spec(pipeline)
    try:
        keys = resolve_partitions(
            spec, partition=partition, first=first, last=last, latest=latest, last_n=last_n
        )
        with dg.DagsterInstance.get() as instance:
            summary = run_pipeline(
                build_defs([spec]), spec, keys, step=step, instance=instance,
                log_level=["WARNING", "INFO", "DEBUG"][min(verbose, 2)],
            )
    except RunRequestError as e:
        _fail(str(e))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), default=str))
    else:
        click.echo(format_summary(summary))
    sys.exit(0 if summary.status == "success" else 1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=3000, show_default=True, type=int)
def dev(host: str, port: int) -> None:
    """Open the Dagster UI with the embedded defaults; Ctrl-C stops everything it started."""
    from etl_assets import embedded

    server = embedded.configure()  # noqa: F841
    cmd = [
        sys.executable, "-m", "dagster", "dev",
        "-w", str(settings.PROJECT_ROOT / "workspace.yaml"),
        "-h", host, "-p", str(port),
    ]
    click.echo(f"Dagster UI: http://{host}:{port}  (Ctrl-C to stop)")
    proc = subprocess.Popen(cmd, cwd=settings.PROJECT_ROOT)

    def forward(signum, _frame):
        proc.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, forward)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    sys.exit(0 if code in (0, -signal.SIGINT, 130) else code)


if __name__ == "__main__":
    main()
