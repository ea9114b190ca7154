"""The spec folder as the API changes it: validated as `etl-assets validate` validates,
written atomically, archived rather than deleted."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import yaml

from etl_assets.orchestration.schedules import schedule_cron
from etl_assets.spec import (
    IDENTIFIER,
    PipelineSpec,
    SpecError,
    display_path,
    load_pipeline_file,
    load_pipelines,
    parse_pipeline_bytes,
    pipeline_files,
    shared_target_errors,
)

ARCHIVE = "archive"  # a subfolder: pipeline_files() reads only the folder's own *.yaml


class Conflict(Exception):
    """The pipeline to create exists already."""


class Missing(Exception):
    """The pipeline to replace does not exist."""


def by_name(directory: Path) -> dict[str, tuple[Path, PipelineSpec]]:
    """Every pipeline of the folder with its file; SpecError as `etl-assets validate` words it."""
    specs = load_pipelines(directory)  # the folder-wide checks, and their messages
    files: dict[str, Path] = {}
    for path in pipeline_files(directory):
        files[load_pipeline_file(path, display_path(path)).name] = path
    return {s.name: (files[s.name], s) for s in specs}


def declared_name(raw: bytes) -> str | None:
    """The name a body declares, to show the file it will be written to in messages."""
    try:
        data = yaml.safe_load(raw)
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and IDENTIFIER.match(name) else None


def check(directory: Path, raw: bytes, *, replacing: str | None) -> tuple[Path, PipelineSpec]:
    """Where `raw` would be written and what it declares; SpecError or Conflict if it cannot be."""
    existing = by_name(directory)
    if replacing is not None and replacing not in existing:
        raise Missing(f"no pipeline named {replacing!r}")
    name = declared_name(raw) or replacing
    path = existing[replacing][0] if replacing else directory / f"{name}.yaml"
    # Messages name the file the body would be written to, as `validate` names the file it read.
    shown = display_path(path) if name else "request body"
    spec = parse_pipeline_bytes(raw, shown)
    if replacing is None and spec.name in existing:
        raise Conflict(f"pipeline {spec.name!r} already exists in {display_path(existing[spec.name][0])}")
    if replacing is not None and spec.name != replacing:
        raise SpecError(f"{shown} (pipeline {spec.name}): name: must stay {replacing!r} (the pipeline replaced)")
    if replacing is None and path.exists():
        raise Conflict(f"{shown} already exists")
    others = [s for n, (_, s) in existing.items() if n != spec.name]
    files = {n: display_path(p) for n, (p, _) in existing.items()} | {spec.name: shown}
    errors = shared_target_errors([*others, spec], files)
    if errors:
        raise SpecError("\n".join(errors))
    schedule_cron(spec)  # a schedule the cadence cannot honour fails loading too
    return path, spec


def write(path: Path, raw: bytes) -> None:
    """Readers see the old file or the new one, never half of it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def archive(path: Path) -> Path:
    """Move a spec out of the folder's reach, keeping every version that was removed."""
    folder = path.parent / ARCHIVE
    folder.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = folder / f"{path.stem}.{stamp}{path.suffix}"
    os.replace(path, target)
    return target


def in_words(spec: PipelineSpec) -> str:
    """When the schedule fires, as a person would say it."""
    p, s = spec.partitions, spec.schedule
    hour, minute = s.at.split(":")
    tz = spec.timezone
    if p.cadence == "cron":
        return f"when each window of cron {p.cron!r} closes ({tz})"
    if p.cadence in ("15min", "30min"):
        return f"every {p.cadence[:2]} minutes, for the window that just closed ({tz})"
    if p.cadence == "hourly":
        return f"every hour at minute {int(minute)}, for the hour that just ended ({tz})"
    if p.cadence == "daily":
        return f"every day at {hour}:{minute} {tz}, for the day before"
    if p.cadence == "weekly":
        day = (s.day_of_week or p.week_start).capitalize()
        return f"every {day} at {hour}:{minute} {tz}, for the week that just ended"
    return f"on day {s.day_of_month or 1} of every month at {hour}:{minute} {tz}, for the month before"

