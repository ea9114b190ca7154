"""Measure a fixed version of the product, not whatever the working tree holds at the moment.

`make_snapshot("HEAD", dest)` exports `etl_assets/`, `pipelines/`, `workspace.yaml` and
`dagster.yaml` at that git revision into `dest`, next to a copy of this `benchmarks/` package.
Processes started with `cwd=dest` import the snapshot's `etl_assets` (the current directory
comes first on `sys.path`, before the editable install).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["etl_assets", "pipelines", "workspace.yaml", "dagster.yaml"]


def describe(ref: str | None) -> str:
    """`<sha>` for a revision, or `<sha> + working tree changes` for the working tree."""
    sha = subprocess.run(["git", "rev-parse", ref or "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if ref:
        return sha
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *PATHS], cwd=ROOT, capture_output=True, text=True).stdout
    return f"{sha}{' + uncommitted changes' if dirty.strip() else ''} (working tree)"


def make_snapshot(ref: str, dest: Path) -> Path:
    sha = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    archive = subprocess.run(["git", "archive", "--format=tar", sha, *PATHS], cwd=ROOT, capture_output=True, check=True).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    shutil.copytree(ROOT / "benchmarks", dest / "benchmarks", ignore=shutil.ignore_patterns("__pycache__", "*.md", "*.json"))
    return dest
