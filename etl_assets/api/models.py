"""What the job API accepts and answers; these models are its OpenAPI document."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Role(str, enum.Enum):
    """Ordered: each role may do everything the ones before it may."""

    viewer = "viewer"
    operator = "operator"
    admin = "admin"

    def allows(self, needed: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(needed)


class Error(BaseModel):
    detail: str = Field(description="One sentence saying what was wrong.")


class Source(BaseModel):
    name: str
    kind: str
    mode: str
    target: str


class Pipeline(BaseModel):
    name: str
    description: str | None
    schedule: str = Field(description="The schedule's name in Dagster.")
    cron: str
    schedule_words: str = Field(description="When it runs, in words.")
    timezone: str
    state: Literal["active", "paused", "error"] = Field(
        description="error: paused on its own after consecutive failed scheduled runs."
    )
    state_reason: str | None
    last_run: str | None
    last_status: str | None
    last_started: str | None
    next_tick: str | None
    success_rate: float | None = Field(description="Of the last 20 finished runs.")
    runs_counted: int
    sources: list[Source]


class PipelineDetail(Pipeline):
    spec: dict[str, Any]


class Written(BaseModel):
    name: str
    path: str


class Deleted(BaseModel):
    name: str
    archived_to: str


class RunRequest(BaseModel):
    """One partition, or a range run as one run (as a backfill from the UI is)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    partition: str | None = None
    first: str | None = Field(default=None, alias="from")
    last: str | None = Field(default=None, alias="to")


class Launched(BaseModel):
    run_id: str
    pipeline: str
    partitions: list[str]
    started_by: str


class ScheduleState(BaseModel):
    pipeline: str
    schedule: str
    state: str


class RunSummary(BaseModel):
    run_id: str
    status: str
    partitions: list[str]
    trigger: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration_s: float | None
    error_summary: str | None


class RunPage(BaseModel):
    page: int
    page_size: int
    runs: list[RunSummary]


class Canceled(BaseModel):
    run_id: str
    status: str


class AuditEntry(BaseModel):
    id: int
    at: dt.datetime
    token_name: str | None
    role: str | None
    action: str
    target: str | None
    outcome: str
    status: int
    client: str | None
    detail: str | None


class AuditPage(BaseModel):
    page: int
    page_size: int
    entries: list[AuditEntry]


RunStatus = Literal["success", "failed", "partial", "canceled", "running", "queued"]
