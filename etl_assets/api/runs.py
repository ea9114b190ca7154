"""The job API's run routes: one run explained or canceled, and the audit trail."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi import Path as PathParam

from etl_assets.api import audit
from etl_assets.api.auth import Principal
from etl_assets.api.deps import Api, Db, Viewer, guard
from etl_assets.api.errors import ERRORS
from etl_assets.api.models import AuditPage, Canceled, Role, RunSummary
from etl_assets.ops import history
from etl_assets.ops import jobcontrol as jobs
from etl_assets.ops.history import STARTED_BY_TAG

RUN_ID = r"^[0-9a-fA-F-]{4,36}$"  # a Dagster run id or a prefix of one
QUEUED = {"QUEUED", "NOT_STARTED", "STARTING"}

router = APIRouter(prefix="/api/v1", responses=ERRORS)
RunId = Annotated[str, PathParam(pattern=RUN_ID)]


def flying(run: dict[str, Any]) -> RunSummary:
    """A run the webserver knows and history has not recorded yet: queued or running."""
    tags = {t["key"]: t["value"] for t in run["tags"]}
    first, last = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    parts = [tags["dagster/partition"]] if "dagster/partition" in tags else [p for p in (first, last) if p]
    started = dt.datetime.fromtimestamp(run["startTime"], dt.timezone.utc) if run.get("startTime") else None
    return RunSummary(
        run_id=run["runId"], status="queued" if run["status"] in QUEUED else "running", partitions=parts,
        trigger=history.trigger_of(tags), started_at=started, finished_at=None, duration_s=None,
        error_summary=None,
    )


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
    return {**flying(live).model_dump(mode="json"), "pipeline": tags.get("etl/pipeline"),
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
