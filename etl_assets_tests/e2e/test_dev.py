"""`etl-assets dev` as a user runs it: nothing configured, open the UI, then Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from etl_assets_tests.dagster_services import ROOT, free_port

from .conftest import expect, open_page, shoot

# Every test here starts `etl-assets dev`: a Dagster webserver and daemon (`make test-fast` leaves them out).
pytestmark = pytest.mark.services

WORKSPACE_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETL_", "DAGSTER_"))}
    env["ETL_HOME"] = str(home)
    return env


def wait_for_line(log: Path, pattern: str, proc: subprocess.Popen, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found:
            return found
        assert proc.poll() is None, f"etl-assets dev exited early ({proc.returncode}):\n{log.read_text()}"
        time.sleep(0.2)
    raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n{log.read_text()}")


def wait_loaded(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"etl-assets dev exited early ({proc.returncode}):\n{log.read_text()}"
        try:
            entries = requests.post(f"{url}/graphql", json={"query": WORKSPACE_QUERY}, timeout=5).json()[
                "data"]["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        except (requests.RequestException, KeyError, TypeError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"the UI at {url} did not load the code location:\n{log.read_text()[-4000:]}")


def cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def belongs_to(proc: psutil.Process, home: Path) -> bool:
    """A process this test's `etl-assets dev` started: its command line or environment names
    the test's ETL_HOME (the embedded PostgreSQL's pgdata lives under it)."""
    if str(home) in cmdline(proc):
        return True
    try:
        return proc.environ().get("ETL_HOME") == str(home)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def alive(procs) -> list[str]:
    left = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {cmdline(p)[:200]}")
        except psutil.NoSuchProcess:
            pass
    return left


def stop_leftovers(procs) -> None:
    """After a failed test: end what it started (these processes, by id), so nothing leaks
    into the next test."""
    procs = [p for p in procs if alive([p])]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, still = psutil.wait_procs(procs, timeout=10)
    for p in still:
        with contextlib.suppress(psutil.Error):
            p.kill()


@pytest.mark.slow
@pytest.mark.parametrize("ctrl_c", ["process", "terminal"])
def test_dev_serves_the_ui_and_stops_everything_on_ctrl_c(tmp_path: Path, page, ctrl_c: str) -> None:
    """SIGINT to the `etl-assets` process alone ("process"), or to its whole process group as
    a terminal's Ctrl-C does ("terminal")."""
    home = tmp_path / "etl_home"
    port = free_port()
    log = tmp_path / "dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "etl_assets.cli", "dev", "--port", str(port)],
            cwd=ROOT, env=clean_env(home), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    started: dict[int, psutil.Process] = {}
    try:
        url = wait_for_line(log, r"Dagster UI: (http://\S+)", proc, timeout=90).group(1)
        assert url == f"http://127.0.0.1:{port}"
        wait_loaded(url, proc, log)

        # The embedded defaults: one PostgreSQL under ETL_HOME, the instance in ETL_HOME too.
        assert (home / "pg" / "PG_VERSION").is_file()
        assert (home / "dagster_home" / "dagster.yaml").is_file()
        postgres = [p for p in psutil.process_iter() if belongs_to(p, home) and "postgres -D" in cmdline(p)]
        assert postgres, "no embedded PostgreSQL runs under ETL_HOME"

        open_page(page, f"{url}/locations/etl_assets/asset-groups/demo_sales")
        expect(page.get_by_text("demo_sales", exact=True).first).to_be_visible()
        expect(page.get_by_role("button", name=re.compile("Materialize all"))).to_be_visible(timeout=180_000)
        shoot(page, "dev-asset-group")

        # Everything `dev` started, whatever its parent by now.
        started = {p.pid: p for p in psutil.Process(proc.pid).children(recursive=True)}
        started.update({p.pid: p for p in psutil.process_iter() if belongs_to(p, home) and p.pid != proc.pid})
        for server in postgres:
            started.update({p.pid: p for p in server.children(recursive=True)})
        names = " ".join(cmdline(p) for p in started.values())
        for part in ("dagster", "webserver", "daemon", "postgres"):
            assert part in names, f"expected a {part} process among:\n{names}"

        t0 = time.monotonic()
        if ctrl_c == "terminal":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        stopped_in = time.monotonic() - t0
    except BaseException:
        stop_leftovers([psutil.Process(proc.pid), *started.values()] if proc.poll() is None else started.values())
        stop_leftovers([p for p in psutil.process_iter() if belongs_to(p, home)])
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    try:
        assert code == 0, log.read_text()[-4000:]
        assert stopped_in < 45, f"Ctrl-C took {stopped_in:.0f}s"
        # Nothing may outlive the command: no PostgreSQL, webserver, daemon or code server.
        deadline = time.monotonic() + 5
        while alive(started.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert alive(started.values()) == [], "left running after Ctrl-C"
        strays = [p for p in psutil.process_iter() if belongs_to(p, home)]
        assert alive(strays) == [], "left running after Ctrl-C"
    finally:
        stop_leftovers([*started.values(), *(p for p in psutil.process_iter() if belongs_to(p, home))])
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/server_info", timeout=2)


def _as_a_script_starts_it() -> None:
    """What a non-interactive shell does to a command it starts in the background (`cmd &`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.slow
@pytest.mark.parametrize("started_by", ["service manager", "script"])
def test_dev_without_a_terminal_stops_everything_on_sigterm(tmp_path: Path, started_by: str) -> None:
    """No terminal: stdin is not a TTY, and a script's background job ignores SIGINT too."""
    home = tmp_path / "etl_home"
    port = free_port()
    log = tmp_path / "dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "etl_assets.cli", "dev", "--port", str(port)],
            cwd=ROOT, env=clean_env(home), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_as_a_script_starts_it if started_by == "script" else None,
        )
    started: dict[int, psutil.Process] = {}
    try:
        url = wait_for_line(log, r"Dagster UI: (http://\S+)", proc, timeout=90).group(1)
        wait_loaded(url, proc, log)
        started = {p.pid: p for p in psutil.Process(proc.pid).children(recursive=True)}
        started.update({p.pid: p for p in psutil.process_iter() if belongs_to(p, home) and p.pid != proc.pid})
        names = " ".join(cmdline(p) for p in started.values())
        for part in ("webserver", "daemon", "postgres"):
            assert part in names, f"expected a {part} process among:\n{names}"

        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        deadline = time.monotonic() + 60
        while alive([*started.values(), *(p for p in psutil.process_iter() if belongs_to(p, home))]):
            assert time.monotonic() < deadline, "left running after SIGTERM: " + "; ".join(alive(started.values()))
            time.sleep(0.2)
    except BaseException:
        stop_leftovers([psutil.Process(proc.pid), *started.values()] if proc.poll() is None else started.values())
        stop_leftovers([p for p in psutil.process_iter() if belongs_to(p, home)])
        raise
    assert code == 0, log.read_text()[-4000:]
    assert "stopped: the Dagster webserver, daemon and embedded PostgreSQL" in log.read_text()
