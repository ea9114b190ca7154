"""The job API's pipeline routes: list, read, write and archive specs; start runs; pause and
resume schedules; a pipeline's runs a page at a time."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request

from etl_assets.api import specs
from etl_assets.api.auth import Principal
from etl_assets.api.deps import Api, Ctx, Db, Viewer, folder, guard, spec_of
from etl_assets.api.errors import ERRORS
from etl_assets.api.models import (
    Deleted,
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
from etl_assets.api.runs import flying
from etl_assets.core.partitions import partitions_def
from etl_assets.ops import history
from etl_assets.ops import jobcontrol as jobs
from etl_assets.ops.history import STARTED_BY_TAG
from etl_assets.spec import PipelineSpec

router = APIRouter(prefix="/api/v1", responses=ERRORS)


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


def _state(schedule_status: str, row: tuple[str, str | None] | None) -> str:
    """active or paused as the schedule is; error when it was paused on its own
    (sensors.maybe_pause), which people's pauses (CLI, API) never are."""
    if schedule_status == "RUNNING":
        return "active"
    reason = (row[1] or "") if row else ""
    return "error" if row and row[0] == "paused" and "consecutive failed scheduled runs" in reason else "paused"


@router.get("/pipelines", response_model=list[Pipeline])
def list_pipelines(api: Api, _: Viewer, conn: Db) -> list[dict[str, Any]]:
    """Each pipeline: schedule, timezone, state, last run, next tick, success rate, sources."""
    return [_summary(api, spec, conn) for _, spec in folder(api).values()]


@router.get("/pipelines/{name}", response_model=PipelineDetail)
def get_pipeline(api: Api, name: str, _: Viewer, conn: Db) -> dict[str, Any]:
    spec = spec_of(api, name)
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
        found = folder(api).get(name)
        if found is None:
            raise HTTPException(404, f"no pipeline named {name!r}")
        if jobs.schedule(api.url, name)["scheduleState"]["status"] == "RUNNING":
            jobs.set_schedule(api.url, name, False)
        archived = specs.archive(found[0])
        jobs.reload_location(api.url)
    return Deleted(name=name, archived_to=str(archived))


def _requested(spec: PipelineSpec, body: RunRequest) -> list[str]:
    keys = list(partitions_def(spec).get_partition_keys())
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


@router.post("/pipelines/{name}/runs", status_code=202, response_model=Launched)
def start_run(
    api: Api, name: str, body: RunRequest, who: Annotated[Principal, Depends(guard(Role.operator, "run.start"))]
) -> Launched:
    """One partition (`partition`), or `from`..`to` as one run; queued by the daemon."""
    keys = _requested(spec_of(api, name), body)
    tags = {STARTED_BY_TAG: who.name}
    if len(keys) == 1:
        run_id = jobs.run_job(api.url, name, keys[0], tags=tags)
    else:
        run_id = jobs.run_range(api.url, name, keys[0], keys[-1], tags=tags)
    return Launched(run_id=run_id, pipeline=name, partitions=keys, started_by=who.name)


def _toggle(api: Ctx, name: str, enabled: bool, who: Principal, conn: psycopg.Connection) -> ScheduleState:
    spec_of(api, name)
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
    spec_of(api, name)
    start = (page - 1) * page_size
    in_flight = [] if status in ("success", "failed", "partial", "canceled") else [
        flying(r) for r in jobs.in_flight(api.url, name, status)
    ]
    out = in_flight[start : start + page_size]
    if status not in ("queued", "running") and len(out) < page_size:
        recorded = history.list_runs(conn, pipeline=name, status=status, limit=page_size - len(out),
                                     offset=max(0, start - len(in_flight)))
        out += [RunSummary(**{k: r[k] for k in RunSummary.model_fields}) for r in recorded]
    return RunPage(page=page, page_size=page_size, runs=out)
