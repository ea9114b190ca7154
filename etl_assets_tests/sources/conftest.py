"""Fixtures for source tests: windows, specs, a MariaDB database and a local JSON API."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pandas as pd
import pymysql
import pytest

from etl_assets.core.partitions import Window
from etl_assets.sources.base import ExtractRequest
from etl_assets.sources.mysql import DIALECT
from etl_assets_tests.helpers import Databases, make_spec

TZ = ZoneInfo("America/New_York")
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def window(start: str, end: str) -> Window:
    """A window in New York time from 'YYYY-MM-DD[ HH:MM]' strings."""
    s, e = (dt.datetime.fromisoformat(x).replace(tzinfo=TZ) for x in (start, end))
    return Window(start, s, e)


WEEK = window("2025-01-05", "2025-01-12")


def request(w: Window = WEEK, **kw: Any) -> ExtractRequest:
    return ExtractRequest("shop", w, **kw)


def source(**fields: Any) -> Any:
    """One source parsed through the real pipeline spec (so validation runs too)."""
    data = {"name": "orders", "primary_key": ["id"], **fields}
    return make_spec(sources=[data], report={}).sources[0]


def collect(frame: Any) -> pd.DataFrame:
    """A whole frame from either shape a source returns."""
    if isinstance(frame, pd.DataFrame):
        return frame
    return pd.concat(list(frame), ignore_index=True)


@pytest.fixture
def pg(databases: Databases, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh PostgreSQL database, also reachable as ${SRC_URL}."""
    url = databases.new("etl_src")
    monkeypatch.setenv("SRC_URL", url)
    return url


@dataclass
class MariaDB:
    name: str

    def url(self, user: str = "root", password_ref: str | None = None) -> str:
        auth = f"{user}:{password_ref}" if password_ref else user
        return f"mysql://{auth}@{MYSQL['host']}:{MYSQL['port']}/{self.name}"

    def execute(self, *statements: str, params: Any = None) -> None:
        conn = pymysql.connect(**MYSQL, database=self.name, autocommit=True)
        try:
            with conn.cursor() as cur:
                for s in statements:
                    cur.execute(s, params)
        finally:
            conn.close()

    def insert(self, statement: str, rows: list[tuple]) -> None:
        conn = pymysql.connect(**MYSQL, database=self.name, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.executemany(statement, rows)
        finally:
            conn.close()


def _quote(name: str) -> str:
    return DIALECT.identifier_preparer.quote_identifier(name)


@pytest.fixture
def mariadb() -> Iterator[MariaDB]:
    name = f"etl_test_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(**MYSQL, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE " + _quote(name))
    try:
        yield MariaDB(name)
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS " + _quote(name))
        conn.close()


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Api:
    """A real HTTP server on 127.0.0.1; `handler(seen) -> (status, body, headers)`."""

    url: str
    requests: list[Seen] = field(default_factory=list)
    handler: Callable[[Seen], tuple[int, Any, dict[str, str]]] | None = None


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    state: dict[str, Api] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            seen = Seen(
                parts.path,
                {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
                {k: v for k, v in self.headers.items()},
            )
            server_api = state["api"]
            server_api.requests.append(seen)
            status, body, headers = server_api.handler(seen)  # type: ignore[misc]
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            try:
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (the timeout test)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    state["api"] = Api(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield state["api"]
    finally:
        server.shutdown()
        server.server_close()
