"""A real `dagster-webserver` and `dagster-daemon` for the suite, and the GraphQL it speaks.

Both run the measured product's workspace.yaml against the instance in the given DAGSTER_HOME,
each in its own session so that stopping one stops its code servers and run workers too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
# The code location and repository of etl_assets.definitions, as workspace.yaml names them.
LOCATION, REPOSITORY = "etl_assets", "__repository__"

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""
RUN_STATUS = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime } } }"
WORKSPACE = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Services:
    def __init__(self, cwd: Path, env: dict[str, str], log_dir: Path):
        self.cwd, self.log_dir = cwd, log_dir
        self.url = f"http://127.0.0.1:{free_port()}"
        self.env = {**env, "ETL_WEBSERVER_URL": self.url}
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Services:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port = self.url.rsplit(":", 1)[1]
        self._start("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", port, "-w", "workspace.yaml"])
        self._start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"])
        self.wait_ready()
        return self

    def _start(self, name: str, cmd: list[str]) -> None:
        with open(self.log_dir / f"{name}.log", "wb") as out:  # the child keeps its own descriptor
            self.procs.append(subprocess.Popen(cmd, cwd=self.cwd, env=self.env, stdout=out,
                                               stderr=subprocess.STDOUT, start_new_session=True))

    def log_tail(self, lines: int = 40) -> str:
        return "".join(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-lines:]) + "\n"
                       for f in sorted(self.log_dir.glob("*.log")))

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            data = json.loads(r.read())
        if data.get("errors"):
            raise RuntimeError(f"GraphQL errors: {data['errors']}")
        return data["data"]

    def wait_ready(self, timeout: float = 180) -> None:
        """Until the code location is LOADED (the daemon needs no probe: it polls the queue)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a Dagster process exited early:\n{self.log_tail()}")
            try:
                entries = self.graphql(WORKSPACE)["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    return
            except (OSError, urllib.error.URLError, KeyError, TypeError, RuntimeError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the webserver did not come up:\n{self.log_tail()}")

    def launch_partition(self, pipeline: str, partition: str) -> str:
        """launchRun of the pipeline's job for one partition, with the tags `etl-assets jobs run` sets."""
        tags = {"etl/pipeline": pipeline, "etl/trigger": "manual", "dagster/partition": partition,
                "etl/partition_lock": f"{pipeline}:{partition}"}
        params = {
            "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": f"{pipeline}_job"},
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        out = self.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
        if out["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"launchRun: {out.get('message', out['__typename'])}")
        return out["run"]["runId"]

    def wait_run(self, run_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            run = self.graphql(RUN_STATUS, {"id": run_id})["runOrError"]
            if run.get("status") in ("SUCCESS", "FAILURE", "CANCELED"):
                return run
            time.sleep(0.25)
        raise TimeoutError(f"run {run_id} still {run.get('status')}:\n{self.log_tail()}")

    def __exit__(self, *exc: object) -> None:
        """SIGTERM each process group, wait, then SIGKILL whatever is left of it."""
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
