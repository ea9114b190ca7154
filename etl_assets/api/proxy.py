"""The Dagster UI under /ui/, behind the API's tokens.

A login page takes a token and sets an HttpOnly, Secure session cookie. Viewers are proxied to
a read-only webserver, operators and admins to the full one; both listen on loopback ports
only. GraphQL mutations that launch runs or toggle schedules are audited as API calls are, and
launches carry the `etl/started_by` tag.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import psycopg
import requests
import websockets
from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from graphql import OperationDefinitionNode, OperationType, parse
from graphql.error import GraphQLError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from etl_assets.api import audit, tokens
from etl_assets.api.auth import Principal, identify
from etl_assets.api.models import Role
from etl_assets.ops.history import STARTED_BY_TAG

PREFIX = "/ui"
COOKIE = "etl_session"
SESSION_HOURS = 8
RECHECK_S = 30  # a revoked token's sessions end within this long
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "cookie", "authorization", "content-length"}
# Mutations that change what runs: each is an audit row, allowed or refused.
AUDITED = {
    "launchPartitionBackfill", "launchRun", "launchPipelineExecution", "launchMultipleRuns",
    "launchRunReexecution", "launchPipelineReexecution", "startSchedule", "stopRunningSchedule",
    "resetSchedule", "startSensor", "stopSensor", "terminateRun", "terminateRuns", "deleteRun",
    "deletePipelineRun", "cancelPartitionBackfill", "resumePartitionBackfill", "wipeAssets",
    "reloadRepositoryLocation", "reloadWorkspace",
}


@dataclass
class UiBackends:
    full: str  # http://127.0.0.1:PORT, serving under PREFIX
    read_only: str

    def for_role(self, role: Role) -> str:
        return self.full if role.allows(Role.operator) else self.read_only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def webservers(env: dict[str, str], workspace: Path, log_dir: Path, timeout_s: float = 300) -> Iterator[UiBackends]:
    """A full and a read-only dagster-webserver on free loopback ports, stopped on exit."""
    binary = str(Path(sys.executable).parent / "dagster-webserver")
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    urls: list[str] = []
    try:
        for name, extra in (("full", []), ("read-only", ["--read-only"])):
            port = _free_port()
            log = open(log_dir / f"ui-{name}.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append(subprocess.Popen(
                [binary, "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace), "--path-prefix", PREFIX, *extra],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + timeout_s
        for url, proc in zip(urls, procs):
            while not _answers(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the UI webserver did not start; see {log_dir}")
                time.sleep(0.5)
        yield UiBackends(full=urls[0], read_only=urls[1])
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}{PREFIX}/server_info", timeout=5).ok
    except requests.RequestException:
        return False


@dataclass
class Session:
    principal: Principal
    digest: bytes
    expires: float
    checked: float


class Sessions:
    """Session ids in memory: a restart logs everyone out, and no token sits in the cookie."""

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self, principal: Principal, token: str) -> str:
        sid = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            self._by_id[sid] = Session(principal, tokens.digest(token), now + SESSION_HOURS * 3600, now)
        return sid

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)

    def get(self, sid: str | None, warehouse_url: str) -> Principal | None:
        """The session's principal while its token is still active."""
        with self._lock:
            s = self._by_id.get(sid or "")
        now = time.monotonic()
        if s is None or now > s.expires:
            return None
        if now - s.checked > RECHECK_S:
            with psycopg.connect(warehouse_url, autocommit=True) as conn:
                active = conn.execute(
                    "SELECT 1 FROM etl_meta.api_tokens WHERE token_hash = %s AND revoked_at IS NULL", (s.digest,)
                ).fetchone()
            if not active:
                self.end(sid)
                return None
            s.checked = now
        return s.principal


LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>etl-assets: sign in</title></head>
<body style="font-family: sans-serif; max-width: 28em; margin: 6em auto">
<h1>etl-assets</h1><p>Sign in to the Dagster UI with an API token.</p>{error}
<form method="post" action="{prefix}/login"><label>Token <input type="password" name="token" autofocus
 style="width: 100%"></label><p><button type="submit">Sign in</button></p></form></body></html>"""


def _login_page(error: str | None = None, status: int = 200) -> HTMLResponse:
    shown = f'<p role="alert" style="color: #b00">{html.escape(error)}</p>' if error else ""
    return HTMLResponse(LOGIN_PAGE.format(error=shown, prefix=PREFIX), status_code=status)


def mount(app: FastAPI, backends: UiBackends) -> None:
    """Add the login page and the proxy (HTTP and websockets) under PREFIX."""
    sessions = Sessions()
    client = httpx.AsyncClient(timeout=httpx.Timeout(300, connect=30))
    app.router.on_shutdown.append(client.aclose)

    @app.get(f"{PREFIX}/login", include_in_schema=False)
    def login_form() -> HTMLResponse:
        return _login_page()

    @app.post(f"{PREFIX}/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        token = (parse_qs((await request.body()).decode(errors="replace")).get("token") or [""])[0].strip()
        api = request.app.state.ctx
        client_ip = request.client.host if request.client else "unknown"

        def check() -> Principal:
            with psycopg.connect(api.config.warehouse_url, autocommit=True) as conn:
                return identify(conn, token or None, Role.viewer, client=client_ip, limiter=api.limiter,
                                allow_anonymous_read=False)

        try:
            principal = await run_in_threadpool(check)
        except HTTPException as e:
            return _login_page(str(e.detail), e.status_code)
        response = RedirectResponse(f"{PREFIX}/", status_code=303)
        response.set_cookie(COOKIE, sessions.start(principal, token), httponly=True, secure=True,
                            samesite="strict", path=PREFIX, max_age=SESSION_HOURS * 3600)
        return response

    @app.post(f"{PREFIX}/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        sessions.end(request.cookies.get(COOKIE))
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    @app.api_route(f"{PREFIX}/{{path:path}}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                   include_in_schema=False)
    async def forward(request: Request, path: str) -> Response:
        api = request.app.state.ctx
        who = await run_in_threadpool(sessions.get, request.cookies.get(COOKIE), api.config.warehouse_url)
        if who is None:
            if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                return RedirectResponse(f"{PREFIX}/login", status_code=303)
            return Response(json.dumps({"detail": "sign in at /ui/login first"}), 401, media_type="application/json")
        return await _relay(client, backends, request, path, who)

    @app.websocket(f"{PREFIX}/{{path:path}}")
    async def forward_socket(websocket: WebSocket, path: str) -> None:
        api = websocket.app.state.ctx
        who = await run_in_threadpool(sessions.get, websocket.cookies.get(COOKIE), api.config.warehouse_url)
        if who is None:
            await websocket.close(code=4401)
            return
        url = backends.for_role(who.role).replace("http://", "ws://", 1) + f"{PREFIX}/{path}"
        offered = websocket.scope.get("subprotocols") or []
        async with websockets.connect(url, subprotocols=offered or None, max_size=None) as upstream:
            await websocket.accept(subprotocol=upstream.subprotocol)
            await _pump(websocket, upstream)


async def _relay(client: httpx.AsyncClient, backends: UiBackends, request: Request, path: str,
                 who: Principal) -> Response:
    """One request to the role's webserver; audited GraphQL mutations are read whole and recorded."""
    try:
        body = await request.body()
    except ClientDisconnect:
        return Response(status_code=400)  # the browser left (a page change); nothing to relay
    fields: list[tuple[str, dict[str, Any]]] = []
    if path == "graphql" and request.method == "POST" and body:
        body, fields = _inspect(body, who)
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    url = f"{backends.for_role(who.role)}{PREFIX}/{path}"
    upstream = await client.send(
        client.build_request(request.method, url, params=request.url.query, headers=headers, content=body),
        stream=True,
    )
    out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
    if not fields:
        return StreamingResponse(upstream.aiter_raw(), upstream.status_code, headers=out_headers,
                                 background=BackgroundTask(upstream.aclose))
    content = await upstream.aread()
    await upstream.aclose()
    client_ip = request.client.host if request.client else "unknown"
    warehouse_url = request.app.state.ctx.config.warehouse_url
    await run_in_threadpool(_audit, warehouse_url, who, client_ip, fields, upstream, content)
    return Response(content, upstream.status_code, headers=out_headers)


async def _pump(websocket: WebSocket, upstream: Any) -> None:
    """Relay frames both ways until either side closes."""

    async def up() -> None:
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                return
            await upstream.send(msg["text"] if msg.get("text") is not None else msg["bytes"])

    async def down() -> None:
        async for frame in upstream:
            if isinstance(frame, str):
                await websocket.send_text(frame)
            else:
                await websocket.send_bytes(frame)

    tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()


def _inspect(body: bytes, who: Principal) -> tuple[bytes, list[tuple[str, dict[str, Any]]]]:
    """The audited mutation fields of a GraphQL request; launches get the `etl/started_by` tag."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body, []
    fields: list[tuple[str, dict[str, Any]]] = []
    for req in payload if isinstance(payload, list) else [payload]:
        if not isinstance(req, dict) or not isinstance(req.get("query"), str):
            continue
        try:
            document = parse(req["query"])
        except GraphQLError:
            continue
        given = req.get("variables")
        variables: dict[str, Any] = given if isinstance(given, dict) else {}
        for op in document.definitions:
            if isinstance(op, OperationDefinitionNode) and op.operation == OperationType.MUTATION:
                for sel in op.selection_set.selections:
                    name = getattr(getattr(sel, "name", None), "value", None)
                    if name in AUDITED:
                        fields.append((name, variables))
                        _tag(variables, who.name)
        req["variables"] = variables
    return (json.dumps(payload).encode() if fields else body), fields


def _tag(variables: dict[str, Any], name: str) -> None:
    tag = {"key": STARTED_BY_TAG, "value": name}
    holders: list[dict[str, Any]] = []
    params = variables.get("executionParams")
    if isinstance(params, dict):
        if not isinstance(params.get("executionMetadata"), dict):
            params["executionMetadata"] = {}
        holders.append(params["executionMetadata"])
    if isinstance(variables.get("backfillParams"), dict):
        holders.append(variables["backfillParams"])
    for holder in holders:
        holder["tags"] = [t for t in holder.get("tags") or [] if t.get("key") != tag["key"]] + [tag]


def _target(variables: dict[str, Any]) -> str | None:
    """What the mutation acts on: the job, schedule or run, and the partitions."""
    params = variables.get("executionParams") or {}
    backfill = variables.get("backfillParams") or {}
    selector = params.get("selector") or variables.get("scheduleSelector") or variables.get("sensorSelector") or {}
    name = (selector.get("jobName") or selector.get("pipelineName") or selector.get("scheduleName")
            or selector.get("sensorName") or variables.get("runId") or variables.get("id"))
    parts = backfill.get("partitionNames") or [
        t.get("value") for t in (params.get("executionMetadata") or {}).get("tags") or []
        if t.get("key") == "dagster/partition"
    ]
    if not name and backfill:
        keys = backfill.get("assetSelection") or []
        name = ", ".join("/".join(k.get("path") or []) for k in keys[:3])
    return " ".join(str(x) for x in [name, *(parts or [])[:5]] if x) or None


def _audit(warehouse_url: str, who: Principal, client: str, fields: list[tuple[str, dict[str, Any]]],
           upstream: httpx.Response, content: bytes) -> None:
    try:
        data = (json.loads(content) or {}).get("data") or {}
    except (ValueError, AttributeError):
        data = {}
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        for name, variables in fields:
            result = data.get(name) if isinstance(data, dict) else None
            typename = result.get("__typename", "") if isinstance(result, dict) else ""
            status = upstream.status_code
            if status < 400 and typename in ("UnauthorizedError", "ReadOnlyError"):
                status = 403
            elif status < 400 and (typename.endswith(("Error", "NotFound")) or result is None):
                status = 422
            audit.record(conn, action=f"ui.{name}", target=_target(variables), status=status,
                         token_name=who.name, role=who.role.value, client=client, detail=typename or None)
