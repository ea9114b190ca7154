"""`etl-assets schedule PIPELINE`: when the next ticks fire and which partition each processes."""

from __future__ import annotations

import datetime as dt
import json

import click

from etl_assets.cli.group import _fail
from etl_assets.core import settings
from etl_assets.orchestration.schedules import preview, schedule_cron, schedule_name
from etl_assets.spec import SpecError, load_pipelines


def _parse_now(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        now = dt.datetime.fromisoformat(value)
    except ValueError:
        _fail(f"--now {value!r} is not an ISO-8601 time such as 2025-06-01T00:00:00+00:00")
    return now if now.tzinfo else now.replace(tzinfo=dt.timezone.utc)


def _when(iso: str) -> str:
    t = dt.datetime.fromisoformat(iso)
    offset = t.strftime("%z")
    return f"{t:%a %Y-%m-%d %H:%M} {offset[:3]}:{offset[3:]}"


@click.command("schedule")
@click.argument("pipeline")
@click.option(
    "--next",
    "n",
    type=click.IntRange(1, 500),
    default=5,
    show_default=True,
    help="How many ticks to show.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {local, utc, partition}.")
@click.option(
    "--now",
    "now_text",
    metavar="ISO-8601",
    help="Preview from this instant instead of the current time (naive means UTC).",
)
def schedule_command(pipeline: str, n: int, as_json: bool, now_text: str | None) -> None:
    """Preview a pipeline's schedule: the next ticks, local and UTC, with their partitions."""
    try:
        specs = load_pipelines(settings.pipelines_dir())
    except SpecError as e:
        _fail(str(e))
    spec = next((s for s in specs if s.name == pipeline), None)
    if spec is None:
        names = ", ".join(s.name for s in specs) or "none"
        _fail(f"unknown pipeline {pipeline!r} (pipelines: {names})")
    try:
        cron = schedule_cron(spec)
        ticks = preview(spec, n, _parse_now(now_text))
    except SpecError as e:
        _fail(str(e))
    catchup = spec.catchup
    if as_json:
        # A list of {local, utc, partition}: what scripts and the README rely on.
        click.echo(json.dumps(ticks))
        return
    state = "enabled" if spec.schedule.enabled else "disabled (starts stopped)"
    behind = (
        f"catch-up: last {catchup.window} partitions, "
        f"at most {catchup.max_runs_per_tick} runs a tick"
        if catchup.enabled
        else "catch-up: off (latest partition only)"
    )
    click.echo(f'{schedule_name(spec)}  cron "{cron}" in {spec.timezone}  {state}  {behind}')
    for t in ticks:
        utc = dt.datetime.fromisoformat(t["utc"])
        partition = t["partition"] or "(none complete yet)"
        click.echo(f"  {_when(t['local'])}   {utc:%Y-%m-%d %H:%M} UTC   partition {partition}")
