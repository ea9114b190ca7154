"""JSON APIs that misbehave on purpose: credentials lured to another host, trickled bodies.

Two real servers on 127.0.0.1 with different ports stand for two hosts.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from etl_assets.sources import http
from etl_assets.sources.base import SourceDataError
from etl_assets_tests.sources.conftest import request, source

TOKEN = "tok-5b1e9d03c7"
KEY = "key-c4a0f2e8d6"
Reply = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Host:
    """A real HTTP server; `reply(handler)` writes the whole response itself."""

    url: str = ""
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    reply: Reply | None = None
    stop: threading.Event = field(default_factory=threading.Event)


def send_json(h: BaseHTTPRequestHandler, body: Any, status: int = 200, **headers: str) -> None:
    raw = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(raw)))
    for k, v in headers.items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(raw)


def redirect(h: BaseHTTPRequestHandler, to: str) -> None:
    h.send_response(302)
    h.send_header("Location", to)
    h.send_header("Content-Length", "0")
    h.end_headers()


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Host]]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("API_TOKEN", TOKEN)
    monkeypatch.setenv("API_KEY", KEY)
    servers: list[tuple[ThreadingHTTPServer, Host]] = []

    def start() -> Host:
        host = Host()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.headers.append(dict(self.headers.items()))
                host.paths.append(self.path)
                try:
                    host.reply(self)  # type: ignore[misc]
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up, as a client with a deadline does

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        host.url = f"http://127.0.0.1:{server.server_address[1]}"
        servers.append((server, host))
        return host

    yield start
    for server, host in servers:
        host.stop.set()
        server.shutdown()
        server.server_close()


def api_source(url: str, auth: dict[str, Any], **kw: Any) -> Any:
    return source(kind="http", url=url, auth=auth, mode="full", **kw)


BEARER = {"type": "bearer", "token": "${API_TOKEN}"}
API_KEY = {"type": "api_key", "header": "X-API-Key", "value": "${API_KEY}"}


def test_a_next_link_to_another_host_gets_no_bearer_token(hosts) -> None:
    home, other = hosts(), hosts()
    home.reply = lambda h: send_json(h, [{"id": 1}], Link=f'<{other.url}/steal?page=2>; rel="next"')
    other.reply = lambda h: send_json(h, [{"id": 2}])
    with pytest.raises(SourceDataError) as e:
        http.extract(api_source(home.url + "/items", BEARER, pagination={"type": "link"}), request())
    assert str(e.value) == (
        f"shop.sources.orders: the API sent us on to {other.url}/steal?page=2, another host than "
        f"{home.url}/items; credentials are only sent to the configured host: list the host in "
        "auth.allowed_hosts if it should receive them"
    )
    assert home.headers[0]["Authorization"] == f"Bearer {TOKEN}"
    assert other.headers == []  # never even asked


def test_an_api_key_does_not_follow_a_redirect_to_another_host(hosts) -> None:
    home, other = hosts(), hosts()
    home.reply = lambda h: redirect(h, f"{other.url}/elsewhere")
    other.reply = lambda h: send_json(h, [{"id": 1}])
    with pytest.raises(SourceDataError, match="another host than .*auth.allowed_hosts"):
        http.extract(api_source(home.url + "/items", API_KEY), request())
    assert home.headers[0]["X-API-Key"] == KEY
    assert other.headers == []


def test_same_host_redirects_and_allowed_hosts_keep_the_credential(hosts) -> None:
    home, other = hosts(), hosts()
    home.reply = lambda h: (
        redirect(h, "/v2/items") if h.path.startswith("/items") else redirect(h, f"{other.url}/cdn")
    )
    other.reply = lambda h: send_json(h, [{"id": 7}])
    allowed = {**API_KEY, "allowed_hosts": [other.url.removeprefix("http://")]}
    ex = http.extract(api_source(home.url + "/items", allowed), request())
    assert ex.frame["id"].tolist() == [7]
    assert home.paths == ["/items", "/v2/items"]
    assert [h["X-API-Key"] for h in home.headers + other.headers] == [KEY] * 3
    assert ex.inputs["pages"] == [{"url": f"{other.url}/cdn", "status": 200, "records": 1}]


def test_without_credentials_links_to_another_host_are_followed(hosts) -> None:
    home, other = hosts(), hosts()
    home.reply = lambda h: send_json(h, [{"id": 1}], Link=f'<{other.url}/p2>; rel="next"')
    other.reply = lambda h: send_json(h, [{"id": 2}])
    src = source(kind="http", url=home.url + "/items", mode="full", pagination={"type": "link"})
    assert http.extract(src, request()).frame["id"].tolist() == [1, 2]


def trickle_forever(host: Host, part: str) -> Reply:
    """One byte at a time, of the body or of the headers, until the client goes away."""

    def reply(h: BaseHTTPRequestHandler) -> None:
        h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        if part == "body":
            h.wfile.write(f"Content-Length: {10**9}\r\n\r\n[".encode())
        else:
            h.wfile.write(b"X-Slow: ")
        while not host.stop.wait(0.2):
            h.wfile.write(b" ")
            h.wfile.flush()

    return reply


@pytest.mark.timeout(120)
@pytest.mark.parametrize("part", ["body", "headers"])
def test_a_trickling_server_cannot_outlast_timeout_seconds(hosts, part: str) -> None:
    api = hosts()
    api.reply = trickle_forever(api, part)
    src = source(kind="http", url=api.url + "/items", mode="full", timeout_seconds=1)
    with pytest.raises(requests.Timeout) as e:
        http.extract(src, request())
    assert str(e.value) == (
        f"shop.sources.orders: no complete response from {api.url}/items within "
        "timeout_seconds (1s) (page 1)"
    )


def forward_proxy(host: Host) -> Reply:
    """A plain HTTP forward proxy: relays the absolute-URL request and streams the answer back."""

    def reply(h: BaseHTTPRequestHandler) -> None:
        target = urlsplit(h.path)
        with socket.create_connection((target.hostname, target.port)) as upstream:
            upstream.sendall(f"GET {target.path or '/'} HTTP/1.1\r\nHost: {target.netloc}\r\n\r\n".encode())
            upstream.settimeout(0.2)
            while not host.stop.is_set():
                try:
                    chunk = upstream.recv(4096)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                h.wfile.write(chunk)
                h.wfile.flush()

    return reply


@pytest.mark.timeout(120)
def test_the_deadline_holds_through_a_proxy(hosts, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests builds a separate connection pool for a proxy; its sockets must be watched too."""
    api, proxy = hosts(), hosts()
    api.reply = trickle_forever(api, "body")
    proxy.reply = forward_proxy(proxy)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "")
    src = source(kind="http", url=api.url + "/items", mode="full", timeout_seconds=1)
    with pytest.raises(requests.Timeout, match=r"within timeout_seconds \(1s\)"):
        http.extract(src, request())
    assert proxy.paths == [f"{api.url}/items"]  # it did go through the proxy
