"""No secret reaches any output: run a succeeding and a failing pipeline through the CLI with
distinctive credentials, then search everything the project wrote for them.

Searched: CLI stdout/stderr at -vv, every file under $ETL_HOME and $ETL_STORAGE_DIR (run logs,
reports, Parquet, the Dagster home with its compute logs), every table of the warehouse
database (etl_meta, the Dagster instance's tables, the loaded data) and the Slack and email
alerts sent for the recorded runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from etl_assets.ops.notify import EmailNotifier, SlackNotifier, notify_run
from etl_assets.spec import load_pipeline_file
from etl_assets_tests.stubs import SlackStub, SmtpServer

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok-Sweep-8f2c61b0"
SHORT = "q7Z"  # a 3-character key: masked as a whole word
PG_PASSWORD = "pgpw-Sweep-3d9a"
BAD_URL_PASSWORD = "bad%zz-Sweep-77"  # libpq rejects the escape and echoes the password alone
RECORDS = [{"id": 1, "name": "one", "updated_at": "2025-01-06T10:00:00Z"}]


class Echo:
    """A JSON API that answers with records, or with a 400 page echoing every credential."""

    def __init__(self) -> None:
        self.fail = False
        echo = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = (
                    (400, {"error": f"rejected {self.headers.get('Authorization')} for {self.path}"})
                    if echo.fail
                    else (200, RECORDS)
                )
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def echo(monkeypatch: pytest.MonkeyPatch) -> Iterator[Echo]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    api = Echo()
    yield api
    api.server.shutdown()
    api.server.server_close()


def write_spec(folder: Path, api: Echo, source_db: str) -> Path:
    folder.mkdir()
    spec = {
        "name": "sweep",
        "owners": ["team:data"],
        "timezone": "UTC",
        "partitions": {"cadence": "weekly", "start": "2025-01-05"},
        "retries": {"max": 0},
        "notify": {"slack": {"channel": "#data", "on": ["success", "partial"]},
                   "email": {"to": ["ops@example.com"], "on": ["success", "partial"]}},
        "sources": [
            {
                "name": "items",
                "kind": "http",
                "url": api.url + "/items",
                "params": {"key": "${SWEEP_SHORT}", "since": "{window_start}"},
                "auth": {"type": "bearer", "token": "${SWEEP_TOKEN}"},
                "timestamp_column": "updated_at",
                "primary_key": ["id"],
                "load": {"target": "sweep.items"},
            },
            {
                "name": "orders",
                "kind": "postgres",
                "connection": {"url": f"{source_db}?password=${{SWEEP_PG_PW}}"},
                "table": "src.orders",
                "timestamp_column": "updated_at",
                "primary_key": ["order_id"],
                "load": {"target": "sweep.orders"},
            },
            {
                "name": "legacy",
                "kind": "postgres",
                "connection": {"url": "${SWEEP_PG_URL}"},  # the whole URL, password included
                "table": "src.orders",
                "timestamp_column": "updated_at",
                "primary_key": ["order_id"],
                "load": {"target": "sweep.legacy"},
            },
        ],
        "report": {"title": "Sweep"},
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def leaks(text: str) -> list[str]:
    found = [s for s in (TOKEN, PG_PASSWORD, BAD_URL_PASSWORD) if s in text]
    if re.search(rf"(?<![A-Za-z0-9]){SHORT}(?![A-Za-z0-9])", text):
        found.append(SHORT)
    return found


def warehouse_text(url: str) -> Iterator[tuple[str, str]]:
    """Every row of every table in the database, as text."""
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table in tables:
            rows = conn.execute(
                sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(schema, table))
            ).fetchall()
            yield f"{schema}.{table}", "\n".join(r[0] for r in rows)


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str) -> None:
        self.lines.append(msg)

    warning = error = info


@pytest.mark.timeout(900)
def test_no_secret_reaches_any_output(
    etl_env, echo: Echo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    slack_stub: SlackStub, smtp_stub: SmtpServer,
) -> None:
    from etl_assets_tests.helpers import create_orders

    create_orders(etl_env["TEST_SOURCE_URL"], [(1, "ann", "2.50", "2025-01-06T10:00:00Z")])
    spec_path = write_spec(tmp_path / "pipelines", echo, etl_env["TEST_SOURCE_URL"])
    secrets = {"SWEEP_TOKEN": TOKEN, "SWEEP_SHORT": SHORT, "SWEEP_PG_PW": PG_PASSWORD}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETL_", "DAGSTER_"))}
    env |= {k: etl_env[k] for k in ("ETL_HOME", "ETL_STORAGE_DIR", "ETL_WAREHOUSE_URL")}
    env |= {"ETL_PIPELINES_DIR": str(spec_path.parent), **secrets}

    outputs: dict[str, str] = {}
    host = etl_env["TEST_SOURCE_URL"].removeprefix("postgresql://postgres@")
    for run, fail in (("success", False), ("failure", True)):
        echo.fail = fail
        env["SWEEP_PG_URL"] = f"postgresql://postgres:{BAD_URL_PASSWORD if fail else PG_PASSWORD}@{host}"
        monkeypatch.setenv("SWEEP_PG_URL", env["SWEEP_PG_URL"])
        done = subprocess.run(
            [sys.executable, "-m", "etl_assets.cli", "run", "sweep", "--partition", "2025-01-05", "-vv"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        )
        assert done.returncode == (1 if fail else 0), done.stdout + done.stderr
        outputs[f"cli {run} stdout"], outputs[f"cli {run} stderr"] = done.stdout, done.stderr
    failed = outputs["cli failure stdout"] + outputs["cli failure stderr"]
    assert "HTTP 400" in failed and "invalid percent-encoded token" in failed

    for base in (etl_env["ETL_HOME"], etl_env["ETL_STORAGE_DIR"]):
        for path in Path(base).rglob("*"):
            if path.is_file():
                outputs[str(path)] = path.read_bytes().decode("utf-8", "replace")
    wh = etl_env["ETL_WAREHOUSE_URL"]
    outputs.update(warehouse_text(wh))

    # Alerts for the recorded runs, as the sensor sends them.
    spec = load_pipeline_file(spec_path)
    runs = Path(etl_env["ETL_STORAGE_DIR"]) / "sweep" / "runs"
    records = [json.loads(p.read_text()) for p in sorted(runs.glob("*.json"))]
    assert sorted(r["status"] for r in records) == ["partial", "success"]
    log = Log()
    slack = SlackNotifier(token="xoxb-sweep", base_url=slack_stub.base_url)
    email = EmailNotifier(host=smtp_stub.host, port=smtp_stub.port, security="plain", sender="etl@example.com")
    for record in records:
        notify_run(record, spec.notify, slack, email, log)
    assert len(slack_stub.posts) == 2 and len(smtp_stub.messages) == 2
    outputs["slack"] = json.dumps(slack_stub.posts)
    outputs["email"] = "\n".join(m.data.decode("utf-8", "replace") for m in smtp_stub.messages)
    outputs["alert log"] = "\n".join(log.lines)

    assert any(k.startswith("public.event_logs") for k in outputs)  # the Dagster instance
    assert any("compute_logs" in k for k in outputs) and "etl_meta.runs" in outputs
    found = {where: hits for where, text in outputs.items() if (hits := leaks(text))}
    assert found == {}
