"""Fixtures for the job API: the app served by uvicorn on 127.0.0.1, tokens of each role, and
(for the end-to-end tests) a real dagster-webserver and daemon over a small `shop` pipeline."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import requests
import uvicorn
import yaml
from fastapi import FastAPI

from etl_assets.api import tokens
from etl_assets.api.app import ApiConfig, create_app
from etl_assets.api.models import Role
from etl_assets_tests.browser import expect  # noqa: F401  (for the tests here)
from etl_assets_tests.dagster_services import DagsterServices, free_port
from etl_assets_tests.helpers import SCHEDULED_SHOP as SHOP
from etl_assets_tests.helpers import Databases, create_orders


def shop_orders(n: int = 30) -> list[tuple]:
    """n orders three hours apart from Sunday 2025-03-09 01:00 New York: the week 2025-03-09."""
    start = dt.datetime(2025, 3, 9, 6, tzinfo=dt.UTC)
    return [(i, f"cust{i % 7}", f"{i}.50", start + i * dt.timedelta(hours=3)) for i in range(1, n + 1)]


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """The app on a free port of 127.0.0.1 through uvicorn, as `etl-assets api serve` runs it."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           proxy_headers=True, forwarded_allow_ips="127.0.0.1"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class Api:
    url: str
    warehouse_url: str
    pipelines: Path
    tokens: dict[str, str]  # role -> token (named after the role)

    def call(self, method: str, path: str, role: str | None = None, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if role:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return requests.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=120, **kwargs)

    def audit(self) -> list[tuple]:
        with psycopg.connect(self.warehouse_url) as conn:
            return conn.execute(
                "SELECT token_name, role, action, target, outcome, status, client FROM etl_meta.audit ORDER BY id"
            ).fetchall()


def role_tokens(warehouse_url: str) -> dict[str, str]:
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        tokens.migrate(conn)
        return {r.value: tokens.create(conn, r.value, r) for r in Role}


@pytest.fixture
def offline_api(tmp_path: Path, warehouse_url: str) -> Iterator[Api]:
    """The API with no webserver behind it (a closed port): auth, tokens and audit alone."""
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "shop.yaml").write_text(yaml.safe_dump(SHOP))
    config = ApiConfig(webserver_url=f"http://127.0.0.1:{free_port()}", warehouse_url=warehouse_url,
                       pipelines_dir=pipelines, failed_login_limit=3, failed_login_window_s=3600)
    issued = role_tokens(warehouse_url)
    with serve(create_app(config)) as url:
        yield Api(url, warehouse_url, pipelines, issued)


@dataclass
class Stack:
    """Dagster's webserver and daemon, and the API in front of them."""

    services: DagsterServices
    api: Api
    env: dict[str, str]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("api")
    dbs = Databases()
    try:
        pipelines = tmp / "pipelines"
        pipelines.mkdir()
        (pipelines / "shop.yaml").write_text(yaml.safe_dump(SHOP))
        source = dbs.new("etl_api_src")
        create_orders(source, shop_orders())
        env = {
            "ETL_HOME": str(tmp / "home"),
            "ETL_STORAGE_DIR": str(tmp / "storage"),
            "ETL_WAREHOUSE_URL": dbs.new("etl_api_wh"),
            "TEST_SOURCE_URL": source,
            "ETL_PIPELINES_DIR": str(pipelines),
            "ETL_INSTANCE_URL": dbs.new("etl_api_instance").replace("postgresql://", "postgresql+psycopg2://"),
        }
        with DagsterServices(tmp, env) as services:
            config = ApiConfig(webserver_url=services.url, warehouse_url=env["ETL_WAREHOUSE_URL"],
                               pipelines_dir=pipelines)
            issued = role_tokens(env["ETL_WAREHOUSE_URL"])
            with serve(create_app(config)) as url:
                yield Stack(services, Api(url, env["ETL_WAREHOUSE_URL"], pipelines, issued), env)
    finally:
        dbs.drop_all()
