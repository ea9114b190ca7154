"""What every route of the job API depends on: the app's shared state, a warehouse
connection, and the guard that authenticates, authorizes and audits."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import psycopg
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from etl_assets.api import audit, specs
from etl_assets.api.auth import FailedLogins, Principal, authorize, identify
from etl_assets.api.errors import message_of, status_of
from etl_assets.api.models import Role
from etl_assets.api.proxy import UiBackends
from etl_assets.spec import PipelineSpec, SpecError

SESSION_COOKIE = "etl_session"


@dataclass
class ApiConfig:
    webserver_url: str
    warehouse_url: str
    pipelines_dir: Path
    allow_anonymous_read: bool = False
    failed_login_limit: int = 10
    failed_login_window_s: float = 300.0
    ui: UiBackends | None = None  # serve the Dagster UI under /ui/ through these webservers


@dataclass
class Ctx:
    """What every request of one app shares."""

    config: ApiConfig
    limiter: FailedLogins
    folder_lock: threading.Lock  # one change of the spec folder at a time

    @property
    def url(self) -> str:
        return self.config.webserver_url


bearer = HTTPBearer(auto_error=False, description="A token from `etl-assets api token create`.")


def _ctx(request: Request) -> Ctx:
    ctx: Ctx = request.app.state.ctx
    return ctx


Api = Annotated[Ctx, Depends(_ctx)]


def _db(api: Api) -> Iterator[psycopg.Connection]:
    with psycopg.connect(api.config.warehouse_url, autocommit=True) as conn:
        yield conn


Db = Annotated[psycopg.Connection, Depends(_db)]


def guard(role: Role, action: str | None = None) -> Callable[..., Iterator[Principal]]:
    """Authenticate and authorize; for an `action`, write its audit row, whatever the outcome."""

    def dependency(
        request: Request, api: Api, conn: Db,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Iterator[Principal]:
        client = request.client.host if request.client else "unknown"
        token = creds.credentials if creds else request.cookies.get(SESSION_COOKIE)
        who: Principal | None = None
        try:
            who = identify(conn, token, role, client=client, limiter=api.limiter,
                           allow_anonymous_read=api.config.allow_anonymous_read)
            authorize(who, role)
            yield who
        except Exception as exc:
            if action:
                _audit(request, conn, action, who, client, status_of(exc), message_of(exc))
            raise
        else:
            if action:
                route = request.scope.get("route")
                _audit(request, conn, action, who, client, getattr(route, "status_code", None) or 200, None)

    return dependency


def _audit(request: Request, conn: psycopg.Connection, action: str, who: Principal | None,
           client: str, status: int, detail: str | None) -> None:
    target = (request.path_params.get("name") or request.path_params.get("run_id")
              or getattr(request.state, "audit_target", None))
    audit.record(conn, action=action, target=target, status=status, token_name=who.name if who else None,
                 role=who.role.value if who else None, client=client, detail=detail)


Viewer = Annotated[Principal, Depends(guard(Role.viewer))]


def folder(api: Ctx) -> dict[str, tuple[Path, PipelineSpec]]:
    try:
        return specs.by_name(api.config.pipelines_dir)
    except SpecError as e:
        raise HTTPException(503, f"the pipelines folder does not load: {e}") from None


def spec_of(api: Ctx, name: str) -> PipelineSpec:
    found = folder(api).get(name)
    if found is None:
        raise HTTPException(404, f"no pipeline named {name!r}")
    return found[1]
