"""Measured child processes: the wall time from Popen to exit and the peak RSS from wait4().

The parent never imports the product (nor dlt): a child's peak RSS then is its own, not the
memory it was forked from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUIET = {"GX_ANALYTICS_ENABLED": "false", "DAGSTER_DISABLE_TELEMETRY": "1", "RUNTIME__DLTHUB_TELEMETRY": "false"}


def child_env(cwd: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a measured process: `cwd` (the product measured) first on the path,
    then the caller's PYTHONPATH (e.g. where dlt is installed)."""
    path = os.pathsep.join(p for p in (str(cwd), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, **QUIET, **(extra or {}), "PYTHONPATH": path}


def run_measured(cmd: list[str], *, cwd: Path, env: dict[str, str], err_path: Path,
                 timeout: float) -> tuple[int, str, dict[str, Any]]:
    """Run `cmd`; return its exit code, its stdout, and its peak RSS and process wall time."""
    err_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            timer.cancel()
            if proc.stdout:
                proc.stdout.close()
    wall = time.perf_counter() - started
    return proc.returncode, out, {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "process_wall_s": round(wall, 3)}


def run_process(job: dict[str, Any], log_dir: Path, timeout: float, cwd: Path = ROOT) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run one worker; return its results and the process's peak RSS and wall time."""
    err_path = log_dir / f"{job['variant']}_{job['label']}_{int(time.time() * 1000)}.stderr"
    job = {**job, "launched_at": time.time()}
    code, out, proc = run_measured([sys.executable, "-m", "benchmarks.worker", json.dumps(job)],
                                   cwd=cwd, env=child_env(cwd), err_path=err_path, timeout=timeout)
    results = [json.loads(line[len("BENCH_RESULT "):]) for line in out.splitlines() if line.startswith("BENCH_RESULT ")]
    if code != 0:
        tail = err_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{job['variant']} {job['label']} failed (exit {code}):\n{tail}")
    return results, proc


def run_cli(args: list[str], *, cwd: Path, env: dict[str, str], log_dir: Path, name: str,
            timeout: float) -> tuple[str, dict[str, Any]]:
    """`etl-assets ARGS` as a user runs it (`python -m etl_assets.cli`, so a snapshot's product
    is the one run); raises with its stderr's tail if it fails."""
    err_path = log_dir / f"cli_{name}_{int(time.time() * 1000)}.stderr"
    code, out, proc = run_measured([sys.executable, "-m", "etl_assets.cli", *args], cwd=cwd, env=env,
                                   err_path=err_path, timeout=timeout)
    if code != 0:
        tail = (out + err_path.read_text(errors="replace"))[-3000:]
        raise RuntimeError(f"etl-assets {' '.join(args)} failed (exit {code}):\n{tail}")
    return out, proc
