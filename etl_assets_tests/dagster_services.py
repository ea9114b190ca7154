"""A real `dagster-webserver` and `dagster-daemon` on 127.0.0.1, for end-to-end tests.

They run against a temporary DAGSTER_HOME whose instance storage is a fresh PostgreSQL
database, load the project's own workspace.yaml, and are stopped (process group and all)
when the test ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from etl_assets.dev import instance as dev_instance

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterServices:
    def __init__(
        self, home: Path, env: dict[str, str], *, daemon: bool = True, settings: dict[str, str] | None = None
    ):
        """`settings` replaces lines of the copied dagster.yaml (old text -> new text)."""
        self.home, self.daemon, self.settings = home, daemon, settings or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "DAGSTER_HOME": str(home / "dagster_home"),
                    "ETL_WEBSERVER_URL": self.url}
        self.procs: list[subprocess.Popen] = []
        self.logs = home / "logs"

    def __enter__(self) -> DagsterServices:
        dh = Path(self.env["DAGSTER_HOME"])
        dh.mkdir(parents=True, exist_ok=True)
        text = (ROOT / "dagster.yaml").read_text()
        for old, new in self.settings.items():
            assert old in text, f"dagster.yaml has no {old!r}"
            text = text.replace(old, new)
        (dh / "dagster.yaml").write_text(text)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.migrate()
        self._start("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port),
                                  "-w", str(ROOT / "workspace.yaml")])
        if self.daemon:
            self._start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")])
        self.wait_ready()
        return self

    def migrate(self) -> None:
        """The instance schema, created once before the services start, as `etl-assets dev` and
        the systemd units do: two services creating it at once race on the same tables."""
        with pytest.MonkeyPatch.context() as mp:
            for name in ("DAGSTER_HOME", "ETL_INSTANCE_URL"):
                mp.setenv(name, self.env[name])
            dev_instance.migrate_instance()

    def _start(self, name: str, cmd: list[str]) -> None:
        out = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs.append(
            subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a Dagster process exited early:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/server_info", timeout=2).ok:
                    status = requests.post(
                        f"{self.url}/graphql",
                        json={"query": "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"},
                        timeout=10,
                    ).json()
                    entries = status["data"]["workspaceOrError"]["locationEntries"]
                    if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                        return
            except (requests.RequestException, KeyError, TypeError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the webserver did not come up:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        text = ""
        for f in sorted(self.logs.glob("*.log")):
            text += f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        r = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
        r.raise_for_status()
        body = r.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def wait_run(self, run_id: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        status = "?"
        while time.monotonic() < deadline:
            data = self.graphql(
                "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id}
            )
            status = data["runOrError"].get("status", "?")
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                return status
            time.sleep(1)
        raise TimeoutError(f"run {run_id} still {status}:\n{self.log_tail()}")

    def __exit__(self, *exc: object) -> None:
        stop_process_groups(self.procs)


def stop_process_groups(procs: list[subprocess.Popen], timeout: float = 30) -> None:
    """SIGTERM each process's group (each was started in its own session), wait, then SIGKILL
    what is left, including children that outlived their leader."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
