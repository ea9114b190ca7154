"""The pipeline: its sources, partitions, schedule, report, alerts and limits, and the rules
that involve more than one source."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from etl_assets.spec.base import OWNER, Strict, close_timezone, identifier, not_reserved
from etl_assets.spec.checks import RelationshipCheck, check_name, missing_column
from etl_assets.spec.kinds import SourceSpec
from etl_assets.spec.loading import WarehouseSpec
from etl_assets.spec.notify import NotifySpec
from etl_assets.spec.sources import RetrySpec, SourceBase
from etl_assets.spec.timing import CatchupSpec, DeadlineSpec, PartitionSpec, ScheduleSpec


class ChartSpec(Strict):
    type: Literal["bar", "line"] = "bar"
    x: str
    y: str


class KpiSpec(Strict):
    name: str
    title: str | None = None
    sql: str
    chart: ChartSpec | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return identifier(v, "KPI name")


class ReportSpec(Strict):
    title: str | None = None
    kpis: list[KpiSpec] = Field(default_factory=list)
    on_partial: Literal["render", "skip"] = "render"


class ResourcesSpec(Strict):
    """What each step process of a run may use (README "Memory limits")."""

    # Resident memory in MB; past it the step fails and is not retried. None: ETL_MEMORY_MB.
    memory_mb: int | None = Field(default=None, gt=0)


class RetentionSpec(Strict):
    """How long runs, history and files are kept; see `etl-assets prune`."""

    runs_days: int = Field(default=90, ge=1)
    artifacts_days: int = Field(default=30, ge=1)
    keep_last_success: bool = True



class PipelineSpec(Strict):
    name: str
    description: str = ""
    owners: list[str] = Field(default_factory=list)
    timezone: str = "UTC"
    partitions: PartitionSpec
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    retries: RetrySpec = Field(default_factory=RetrySpec)
    sources: list[SourceSpec] = Field(min_length=1)
    report: ReportSpec = Field(default_factory=ReportSpec)
    # Scheduled runs failing this many times in a row pause the schedule (0: never).
    failure_threshold: int = Field(default=3, ge=0)
    retention: RetentionSpec = Field(default_factory=RetentionSpec)
    notify: NotifySpec = Field(default_factory=NotifySpec)
    # A partition not loaded by then is alerted (etl_assets.orchestration.deadlines); None: no deadline.
    deadline: DeadlineSpec | None = Field(
        default=None, description="When each partition must be loaded; a missed one is alerted once."
    )
    catchup: CatchupSpec = Field(default_factory=CatchupSpec)
    timeout_minutes: int | None = Field(default=None, gt=0, le=7 * 24 * 60)
    # Where the sources load; None: the PostgreSQL warehouse (ETL_WAREHOUSE_URL).
    warehouse: WarehouseSpec | None = None
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    # Where a run's steps execute (etl_assets.orchestration.executors); None: the code location's default.
    executor: Literal["in_process", "multiprocess"] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        identifier(v, "pipeline name")
        # A pipeline's name is the schema its sources load into by default.
        not_reserved(v, "pipeline name")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            hint = close_timezone(v)
            raise ValueError(
                f"unknown timezone {v!r}: use an IANA name such as America/Sao_Paulo{hint}"
            ) from None
        return v

    @field_validator("owners")
    @classmethod
    def _owners(cls, v: list[str]) -> list[str]:
        for o in v:
            if not OWNER.match(o):
                raise ValueError(f"owner {o!r} must be an email address or team:<name>")
        return v

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, v: list[SourceSpec]) -> list[SourceSpec]:
        names = [s.name for s in v]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ValueError(f"duplicate source name {n!r}")
        return v

    @model_validator(mode="after")
    def _schedule_fits_cadence(self) -> PipelineSpec:
        problem = self.schedule.conflict(self.partitions.cadence)
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _relationships(self) -> PipelineSpec:
        names = {s.name: s for s in self.sources}
        for i, s in enumerate(self.sources):
            for c in s.checks:
                if not isinstance(c, RelationshipCheck):
                    continue
                other = names.get(c.to.source)
                where = f"sources[{i}].checks ({check_name(c)}).to"
                if other is None or other.name == s.name:
                    raise ValueError(f"{where}.source: {c.to.source!r} is not another source of {self.name}")
                if other.columns is not None and c.to.column not in {x.name for x in other.columns}:
                    raise ValueError(f"{where}.column: {other.name} has no column {c.to.column!r}")
                back = [x for x in other.checks if isinstance(x, RelationshipCheck) and x.to.source == s.name]
                if back:
                    raise ValueError(f"{where}: {s.name} and {other.name} cannot each depend on the other")
        return self

    @model_validator(mode="after")
    def _check_columns(self) -> PipelineSpec:
        """A check on a column the declared columns lack fails at load time, naming its field."""
        for i, s in enumerate(self.sources):
            if s.columns is None:
                continue  # the source decides its columns; the check reports a missing one
            names = [c.name for c in s.columns]
            for j, c in enumerate(s.checks):
                for field, col in c.column_fields():
                    if col not in names:
                        raise ValueError(f"sources[{i}].checks[{j}].{field}: {missing_column(col, names)}")
        return self

    @model_validator(mode="after")
    def _engine_supports_load(self) -> PipelineSpec:
        """What a ClickHouse warehouse cannot do is a spec error, not a failed run."""
        if not self.warehouse or self.warehouse.kind != "clickhouse":
            return self
        for i, s in enumerate(self.sources):
            if s.load.strategy in ("append", "scd2"):
                raise ValueError(
                    f"sources[{i}].load.strategy: {s.load.strategy} is not supported on a ClickHouse "
                    "warehouse; use upsert or delete_insert, or a PostgreSQL warehouse"
                )
            for j, c in enumerate(s.checks):
                if c.store_failures:
                    raise ValueError(
                        f"sources[{i}].checks[{j}].store_failures is not supported on a ClickHouse warehouse"
                    )
            policy = s.schema_policy
            if policy.on_type_change == "widen" or policy.on_missing_column == "keep":
                what = "on_type_change: widen" if policy.on_type_change == "widen" else "on_missing_column: keep"
                raise ValueError(f"sources[{i}].schema.{what} is not supported on a ClickHouse warehouse")
        return self

    @model_validator(mode="after")
    def _targets(self) -> PipelineSpec:
        seen: dict[str, SourceSpec] = {}
        for i, s in enumerate(self.sources):
            t = self.target(s)
            if t in seen and not (seen[t].load.shared and s.load.shared):
                raise ValueError(
                    f"sources {seen[t].name!r} and {s.name!r} both load into {t}: give each its "
                    "own target, or set load.shared: true on both"
                )
            if s.load.shared and any(c.severity == "quarantine" for c in s.checks):
                # The quarantine table is replaced per partition, whoever's rows it holds.
                raise ValueError(f"sources[{i}].load.shared cannot be used with severity quarantine checks")
            seen[t] = s
        return self

    def target(self, source: SourceBase) -> str:
        return source.load.target or f"{self.name}.{source.name}"

    def source(self, name: str) -> SourceSpec:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def retry(self) -> RetrySpec:
        return self.retries

