"""`etl-assets api serve` as a user starts it: a process that answers with its OpenAPI document."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests

from etl_assets_tests.dagster_services import ROOT, free_port


def test_serve_answers_with_the_openapi_document_and_stops_on_sigterm(etl_env, tmp_path) -> None:
    port = free_port()
    (tmp_path / "pipelines").mkdir()
    env = {**os.environ, **etl_env, "ETL_PIPELINES_DIR": str(tmp_path / "pipelines")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl_assets.cli", "api", "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        doc = None
        while doc is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                doc = requests.get(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=5).json()
            except requests.RequestException:
                time.sleep(0.2)
        assert doc is not None, proc.stdout.read().decode() if proc.poll() is not None else "no answer"
        assert doc["info"]["title"] == "etl-assets job API"
        assert "/api/v1/pipelines/{name}/runs" in doc["paths"]
        assert requests.get(f"http://127.0.0.1:{port}/api/v1/pipelines", timeout=30).status_code == 401
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        # uvicorn shuts down, then re-raises the signal: systemd counts SIGTERM as a clean stop.
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
