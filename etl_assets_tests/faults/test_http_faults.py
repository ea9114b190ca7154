"""HTTP faults from a real server on 127.0.0.1: 503s retried, 429 waits, 401 fails at once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dagster as dg
import pytest

from etl_assets.definitions import build_defs
from etl_assets.orchestration.runner import run_pipeline
from etl_assets.spec import parse_pipeline
from etl_assets_tests.helpers import query

RECORDS = [
    {"id": i, "name": f"item{i}", "updated_at": f"2025-03-1{i % 5}T12:00:00Z"} for i in range(1, 9)
]


class FlakyApi:
    """Answers with the scripted statuses first, then the records; remembers when it was asked."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]):
        self.script, self.hits = list(script), []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.hits.append(time.monotonic())
                if api.script:
                    status, headers = api.script.pop(0)
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(b'{"error": "try later"}')
                    return
                body = json.dumps({"data": {"items": RECORDS}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/items"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api_factory() -> Iterator[Any]:
    servers: list[FlakyApi] = []

    def make(script: list[tuple[int, dict[str, str]]]) -> FlakyApi:
        servers.append(FlakyApi(script))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def spec_for(url: str, delay: float = 0.2):
    return parse_pipeline(
        {
            "name": "api",
            "timezone": "UTC",
            "partitions": {"start": "2025-03-02"},
            "retries": {"max": 3, "delay_seconds": delay, "backoff": "constant", "jitter": False},
            "sources": [
                {
                    "name": "items",
                    "kind": "http",
                    "url": url,
                    "auth": {"type": "bearer", "token": "${API_TOKEN}"},
                    "record_path": "data.items",
                    "timestamp_column": "updated_at",
                    "primary_key": ["id"],
                    "columns": [
                        {"name": "id", "type": "integer"},
                        {"name": "name"},
                        {"name": "updated_at", "type": "timestamp"},
                    ],
                    "load": {"target": "mart.items"},
                }
            ],
        },
        "api.yaml",
    )


def run(spec, instance):
    return run_pipeline(build_defs([spec]), spec, ["2025-03-09"], instance=instance)


def test_503_twice_then_200_succeeds_after_two_retries(etl_env, instance, api_factory, monkeypatch) -> None:
    monkeypatch.setenv("API_TOKEN", "s3cr3t-token-value")
    api = api_factory([(503, {}), (503, {})])
    summary = run(spec_for(api.url), instance)
    assert summary.status == "success"
    assert summary.sources["items"].inserted == 8
    assert len(api.hits) == 3
    wh = etl_env["ETL_WAREHOUSE_URL"]
    assert query(wh, "SELECT status, retries FROM etl_meta.runs") == [("success", 2)]
    assert query(wh, "SELECT count(*) FROM mart.items") == [(8,)]


def test_429_retry_after_is_honoured(etl_env, instance, api_factory, monkeypatch) -> None:
    monkeypatch.setenv("API_TOKEN", "s3cr3t-token-value")
    api = api_factory([(429, {"Retry-After": "1"})])
    summary = run(spec_for(api.url, delay=0.1), instance)
    assert summary.status == "success"
    assert len(api.hits) == 2
    assert api.hits[1] - api.hits[0] >= 1.0  # waited for the server, not just the 0.1 s policy
    assert query(etl_env["ETL_WAREHOUSE_URL"], "SELECT count(*) FROM mart.items") == [(8,)]


def test_401_fails_once_without_retry(etl_env, instance, api_factory, monkeypatch) -> None:
    monkeypatch.setenv("API_TOKEN", "s3cr3t-token-value")
    api = api_factory([(401, {}), (401, {}), (401, {})])
    summary = run(spec_for(api.url), instance)
    assert summary.status == "failed"
    assert len(api.hits) == 1
    error = summary.sources["items"].error
    assert error.startswith("api/items partition 2025-03-09: ")
    assert "HTTP 401 Unauthorized" in error and "authentication failed" in error
    assert "s3cr3t-token-value" not in error
    wh = etl_env["ETL_WAREHOUSE_URL"]
    assert query(wh, "SELECT status, retries, error_type FROM etl_meta.runs") == [("failed", 0, "SourceDataError")]
    assert query(wh, "SELECT to_regclass('mart.items')") == [(None,)]
