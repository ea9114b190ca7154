"""The job API (FastAPI): pipelines, runs and the audit trail, behind tokens with roles.

It drives the same Dagster webserver as `etl-assets jobs` through the same client module
(`etl_assets.ops.jobcontrol`), and reads run history through `etl_assets.ops.history`.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from etl_assets.api import audit, proxy, specs, tokens
from etl_assets.api.auth import FailedLogins, Principal, authorize, identify
from etl_assets.api.models import (
    AuditPage,
    Canceled,
    Deleted,
    Error,
    Launched,
    Pipeline,
    PipelineDetail,
    Role,
    RunPage,
    RunRequest,
    RunStatus,
    RunSummary,
    ScheduleState,
    Source,
    Written,
)
from etl_assets.api.proxy import UiBackends
from etl_assets.core.partitions import partitions_def
from etl_assets.core.secrets import redact
from etl_assets.ops import history
from etl_assets.ops import jobcontrol as jobs
from etl_assets.ops.history import STARTED_BY_TAG
from etl_assets.spec import PipelineSpec, SpecError

SESSION_COOKIE = "etl_session"
RUN_ID = r"^[0-9a-fA-F-]{4,36}$"  # a Dagster run id or a prefix of one


@dataclass
class ApiConfig:
    webserver_url: str
    warehouse_url: str
    pipelines_dir: Path
    allow_anonymous_read: bool = False
    failed_login_limit: int = 10
    failed_login_window_s: float = 300.0
    ui: UiBackends | None = None  # serve the Dagster UI under /ui/ through these webservers


# Exceptions the handlers let through, by the status they answer with.
STATUS: list[tuple[type[BaseException], int]] = [
    (specs.Missing, 404),
    (jobs.RunNotFound, 404),
    (specs.Conflict, 409),
    (jobs.RunFinished, 409),
    (SpecError, 422),
    (RequestValidationError, 422),
    (jobs.JobControlError, 502),
    (psycopg.OperationalError, 503),
]


def status_of(exc: BaseException) -> int:
    if isinstance(exc, HTTPException):
        return exc.status_code
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 500)


def message_of(exc: BaseException) -> str:
    if isinstance(exc, HTTPException):
        return str(exc.detail)
    if isinstance(exc, RequestValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in exc.errors()
        )
    if isinstance(exc, psycopg.OperationalError):
        return f"the warehouse database is unreachable: {redact(str(exc).strip().splitlines()[0])}"
    return redact(str(exc)) or type(exc).__name__


def _error_response(_request: Request, exc: Exception) -> JSONResponse:
    headers = getattr(exc, "headers", None)
    return JSONResponse({"detail": message_of(exc)}, status_code=status_of(exc), headers=headers)


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Error} for code in (401, 403, 404, 409, 422, 429, 502, 503)
}


@dataclass
class Ctx:
    """What every request of one app shares."""

    config: ApiConfig
    limiter: FailedLogins
    folder_lock: threading.Lock  # one change of the spec folder at a time

    @property
    def url(self) -> str:
        return self.config.webserver_url


def create_app(config: ApiConfig) -> FastAPI:
    app = FastAPI(
        title="etl-assets job API", version="1", openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs", redoc_url=None,
    )
    with psycopg.connect(config.warehouse_url, autocommit=True) as conn:
        tokens.migrate(conn)
    app.state.ctx = Ctx(config, FailedLogins(config.failed_login_limit, config.failed_login_window_s),
                        threading.Lock())
    for cls in (HTTPException, *(cls for cls, _ in STATUS)):
        app.add_exception_handler(cls, _error_response)
    app.include_router(router)
    if config.ui is not None:
        proxy.mount(app, config.ui)
    return app


router = APIRouter(prefix="/api/v1", responses=ERRORS)
bearer = HTTPBearer(auto_error=False, description="A token from `etl-assets api token create`.")


def _ctx(request: Request) -> Ctx:
    return request.app.state.ctx


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


def _folder(api: Ctx) -> dict[str, tuple[Path, PipelineSpec]]:
    try:
        return specs.by_name(api.config.pipelines_dir)
    except SpecError as e:
        raise HTTPException(503, f"the pipelines folder does not load: {e}") from None


def _spec_of(api: Ctx, name: str) -> PipelineSpec:
    found = _folder(api).get(name)
    if found is None:
        raise HTTPException(404, f"no pipeline named {name!r}")
    return found[1]


def _summary(api: Ctx, spec: PipelineSpec, conn: psycopg.Connection) -> dict[str, Any]:
    j = jobs.job(api.url, spec.name)
    row = conn.execute(
        "SELECT status, reason FROM etl_meta.pipeline_state WHERE pipeline = %s", (spec.name,)
    ).fetchone()
    return {
        **{k: j[k] for k in ("schedule", "cron", "timezone", "last_run", "last_status", "last_started",
                              "next_tick", "success_rate", "runs_counted")},
        "name": spec.name, "description": spec.description or None,
        "schedule_words": specs.in_words(spec),
        "state": _state(j["state"], row), "state_reason": row[1] if row else None,
        "sources": [Source(name=s.name, kind=s.kind, mode=s.mode, target=spec.target(s)) for s in spec.sources],
    }


Viewer = Annotated[Principal, Depends(guard(Role.viewer))]


@router.get("/pipelines", response_model=list[Pipeline])
def list_pipelines(api: Api, _: Viewer, conn: Db) -> list[dict[str, Any]]:
    """Each pipeline: schedule, timezone, state, last run, next tick, success rate, sources."""
    return [_summary(api, spec, conn) for _, spec in _folder(api).values()]


@router.get("/pipelines/{name}", response_model=PipelineDetail)
def get_pipeline(api: Api, name: str, _: Viewer, conn: Db) -> dict[str, Any]:
    spec = _spec_of(api, name)
    return {**_summary(api, spec, conn), "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True)}


YamlBody = Annotated[bytes, Body(media_type="application/yaml", description="The spec, as a YAML file holds it.")]


def _save(api: Ctx, request: Request, raw: bytes, replacing: str | None) -> Written:
    request.state.audit_target = specs.declared_name(raw)  # for the audit row, even of a bad spec
    with api.folder_lock:
        path, spec = specs.check(api.config.pipelines_dir, raw, replacing=replacing)
        request.state.audit_target = spec.name
        specs.write(path, raw)
        jobs.reload_location(api.url)
    return Written(name=spec.name, path=str(path))


@router.post("/pipelines", status_code=201, response_model=Written)
def create_pipeline(
    api: Api, request: Request, body: YamlBody, _: Annotated[Principal, Depends(guard(Role.admin, "pipeline.create"))]
) -> Written:
    """Validated as `etl-assets validate` validates; written to the spec folder; reloaded. Send
    `Content-Type: application/yaml`."""
    return _save(api, request, body, None)


@router.put("/pipelines/{name}", response_model=Written)
def replace_pipeline(
    api: Api, request: Request, name: str, body: YamlBody,
    _: Annotated[Principal, Depends(guard(Role.admin, "pipeline.update"))],
) -> Written:
    return _save(api, request, body, name)


@router.delete("/pipelines/{name}", response_model=Deleted)
def delete_pipeline(
    api: Api, name: str, _: Annotated[Principal, Depends(guard(Role.admin, "pipeline.delete"))]
) -> Deleted:
    """Stop its schedule and archive its spec; warehouse tables and history stay."""
    with api.folder_lock:
        found = _folder(api).get(name)
        if found is None:
            raise HTTPException(404, f"no pipeline named {name!r}")
        if jobs.schedule(api.url, name)["scheduleState"]["status"] == "RUNNING":
            jobs.set_schedule(api.url, name, False)
        archived = specs.archive(found[0])
        jobs.reload_location(api.url)
    return Deleted(name=name, archived_to=str(archived))


@router.post("/pipelines/{name}/runs", status_code=202, response_model=Launched)
def start_run(
    api: Api, name: str, body: RunRequest, who: Annotated[Principal, Depends(guard(Role.operator, "run.start"))]
) -> Launched:
    """One partition (`partition`), or `from`..`to` as one run; queued by the daemon."""
    keys = _requested(_spec_of(api, name), body)
    tags = {STARTED_BY_TAG: who.name}
    if len(keys) == 1:
        run_id = jobs.run_job(api.url, name, keys[0], tags=tags)
    else:
        run_id = jobs.run_range(api.url, name, keys[0], keys[-1], tags=tags)
    return Launched(run_id=run_id, pipeline=name, partitions=keys, started_by=who.name)


def _toggle(api: Ctx, name: str, enabled: bool, who: Principal, conn: psycopg.Connection) -> ScheduleState:
    _spec_of(api, name)
    state = jobs.set_schedule(api.url, name, enabled)
    verb = "resumed" if enabled else "paused"
    history.set_pipeline_state(conn, name, "active" if enabled else "paused", f"{verb} through the API by {who.name}")
    return ScheduleState(pipeline=name, schedule=f"{name}_schedule", state=state)


@router.post("/pipelines/{name}/enable", response_model=ScheduleState)
def enable(api: Api, name: str, who: Annotated[Principal, Depends(guard(Role.operator, "schedule.enable"))],
           conn: Db) -> ScheduleState:
    return _toggle(api, name, True, who, conn)


@router.post("/pipelines/{name}/disable", response_model=ScheduleState)
def disable(api: Api, name: str, who: Annotated[Principal, Depends(guard(Role.operator, "schedule.disable"))],
            conn: Db) -> ScheduleState:
    return _toggle(api, name, False, who, conn)


@router.get("/pipelines/{name}/runs", response_model=RunPage)
def pipeline_runs(
    api: Api, name: str, _: Viewer, conn: Db,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 20,
    status: RunStatus | None = None,
) -> RunPage:
    """Newest first: runs not finished yet (queued, running), then recorded history."""
    _spec_of(api, name)
    start = (page - 1) * page_size
    flying = [] if status in ("success", "failed", "partial", "canceled") else [
        _flying(r) for r in jobs.in_flight(api.url, name, status)
    ]
    out = flying[start : start + page_size]
    if status not in ("queued", "running") and len(out) < page_size:
        recorded = history.list_runs(conn, pipeline=name, status=status, limit=page_size - len(out),
                                     offset=max(0, start - len(flying)))
        out += [RunSummary(**{k: r[k] for k in RunSummary.model_fields}) for r in recorded]
    return RunPage(page=page, page_size=page_size, runs=out)


RunId = Annotated[str, PathParam(pattern=RUN_ID)]


@router.get("/runs/{run_id}", response_model=dict[str, Any])
def get_run(api: Api, run_id: RunId, _: Viewer, conn: Db) -> dict[str, Any]:
    """The run explained, as `etl-assets show --json` prints it; a run not finished yet is its status."""
    record = history.get_run(conn, run_id)
    live = jobs.run_info(api.url, record["run_id"] if record else run_id)
    tags = {t["key"]: t["value"] for t in live["tags"]} if live else {}
    if record is not None:
        return {**json.loads(json.dumps(record, default=str)),
                "started_by": record.get("started_by") or tags.get(STARTED_BY_TAG)}
    if live is None:
        raise HTTPException(404, f"no run matches {run_id!r}")
    return {**_flying(live).model_dump(mode="json"), "pipeline": tags.get("etl/pipeline"),
            "started_by": tags.get(STARTED_BY_TAG)}


@router.post("/runs/{run_id}/cancel", response_model=Canceled)
def cancel_run(api: Api, run_id: RunId,
               _: Annotated[Principal, Depends(guard(Role.operator, "run.cancel"))]) -> Canceled:
    """Cancel a queued run or terminate a running one; 409 if it has finished."""
    return Canceled(run_id=run_id, status=jobs.terminate_run(api.url, run_id))


@router.get("/audit", response_model=AuditPage)
def audit_trail(
    _: Annotated[Principal, Depends(guard(Role.admin))], conn: Db,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AuditPage:
    """Newest first."""
    rows = audit.entries(conn, limit=page_size, offset=(page - 1) * page_size)
    return AuditPage(page=page, page_size=page_size, entries=rows)


def _state(schedule_status: str, row: tuple[str, str | None] | None) -> str:
    """active or paused as the schedule is; error when it was paused on its own
    (sensors.maybe_pause), which people's pauses (CLI, API) never are."""
    if schedule_status == "RUNNING":
        return "active"
    reason = (row[1] or "") if row else ""
    return "error" if row and row[0] == "paused" and "consecutive failed scheduled runs" in reason else "paused"


def _requested(spec: PipelineSpec, body: RunRequest) -> list[str]:
    keys = partitions_def(spec).get_partition_keys()
    if body.partition is not None and (body.first is None and body.last is None):
        wanted = [body.partition]
    elif body.partition is None and body.first is not None and body.last is not None:
        wanted = [body.first, body.last]
    else:
        raise HTTPException(422, f"{spec.name}: give either partition, or both from and to")
    for key in wanted:
        if key not in keys:
            latest = f" (the latest is {keys[-1]})" if keys else " (none is complete yet)"
            raise HTTPException(422, f"{spec.name}: {key!r} is not a complete partition key{latest}")
    first, last = keys.index(wanted[0]), keys.index(wanted[-1])
    if first > last:
        raise HTTPException(422, f"{spec.name}: from {wanted[0]} is after to {wanted[-1]}")
    return keys[first : last + 1]


QUEUED = {"QUEUED", "NOT_STARTED", "STARTING"}


def _flying(run: dict[str, Any]) -> RunSummary:
    tags = {t["key"]: t["value"] for t in run["tags"]}
    first, last = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    parts = [tags["dagster/partition"]] if "dagster/partition" in tags else [p for p in (first, last) if p]
    started = dt.datetime.fromtimestamp(run["startTime"], dt.timezone.utc) if run.get("startTime") else None
    return RunSummary(
        run_id=run["runId"], status="queued" if run["status"] in QUEUED else "running", partitions=parts,
        trigger=history.trigger_of(tags), started_at=started, finished_at=None, duration_s=None,
        error_summary=None,
    )
