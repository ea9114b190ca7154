"""Dagster's fixed overhead per run, and the time of `dagster definitions validate`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from benchmarks import datagen
from benchmarks.common import TINY_ROWS, spec_dict
from benchmarks.process import run_process

if TYPE_CHECKING:
    from benchmarks.run import Suite


def run_overhead(suite: Suite) -> None:
    """The tiny partition in-process on each kind of instance, broken down by phase."""
    kinds = [("test", suite.p.overhead_reps)]
    if suite.p.name == "full":
        kinds += [("ephemeral", 1), ("postgres", 1)]
    for kind, reps in kinds:
        for rep in range(reps):
            if kind == "postgres":
                datagen.drop_database(suite.inst_db)
                datagen.ensure_database(suite.inst_db)
            job = {**suite.base_job("overhead", "tiny", 1), "rows": TINY_ROWS,
                   "steps": [{"scenario": "first", "table": "src.orders_tiny", "reset": True, "instance": kind}],
                   **suite.dirs("overhead", "tiny", fresh=True)}
            try:
                results, proc = run_process(job, suite.log_dir, suite.timeout, suite.code_dir)
            except RuntimeError as e:
                suite.log(str(e))
                suite.notes.append(f"overhead ({kind}) rep {rep} failed: {str(e).splitlines()[-1][:300]}")
                continue
            for r in results:
                r.update(rep=rep, **proc)
                suite.runs.append(r)
                suite.log(f"overhead ({kind}) rep {rep}: {r['wall_s']:.2f} s, process {proc['process_wall_s']:.2f} s")
    datagen.drop_database(suite.inst_db)


def run_validate(suite: Suite) -> None:
    """`dagster definitions validate` on the shipped workspace, and on 20 pipelines."""
    home = suite.work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    many = suite.work / "pipelines_20"
    many.mkdir(exist_ok=True)
    for i in range(20):
        (many / f"bench_{i:02d}.yaml").write_text(
            yaml.safe_dump(spec_dict("src.orders", name=f"bench_{i:02d}"), sort_keys=False)
        )
    cases = [("shipped pipelines/ (1 pipeline)", None)]
    if suite.p.name == "full":
        cases.append(("20 pipelines", str(many)))
    for title, pdir in cases:
        for rep in range(suite.p.validate_reps):
            env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_DISABLE_TELEMETRY": "1"}
            if pdir:
                env["ETL_PIPELINES_DIR"] = pdir
            started = time.perf_counter()
            proc = subprocess.run(
                [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
                cwd=suite.code_dir, env=env, capture_output=True, text=True, timeout=300,
            )
            wall = time.perf_counter() - started
            ok = proc.returncode == 0
            suite.runs.append({"variant": "definitions_validate", "label": title, "rep": rep,
                               "wall_s": wall, "ok": ok, "scenario": "validate"})
            suite.log(f"definitions validate, {title}: {wall:.2f} s {'ok' if ok else 'FAILED'}")
            if not ok:
                suite.notes.append(f"`dagster definitions validate` failed for {title}: {proc.stderr[-500:]}")
