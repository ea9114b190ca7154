"""The part of a source every kind shares: its columns, window, key, load and checks."""

from __future__ import annotations

import datetime as dt
import difflib
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from etl_assets.core.secrets import ENV_REF
from etl_assets.spec.base import ColumnType, Strict, identifier, known_timezone, parse_duration
from etl_assets.spec.checks import CheckSpec, FreshnessCheck, SchemaCheck, UniqueCheck, check_name
from etl_assets.spec.loading import LoadSpec, SchemaPolicySpec


class ColumnSpec(Strict):
    name: str
    source: str | None = Field(default=None, alias="from")
    type: ColumnType = "string"
    nullable: bool = True
    # Naive timestamps in this column are wall-clock time in this zone (default: the source's).
    timezone: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return identifier(v, "column name")

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        return known_timezone(v)

    @property
    def source_name(self) -> str:
        return self.source or self.name


class RetrySpec(Strict):
    max: int = Field(default=3, ge=0, le=20)
    delay_seconds: float = Field(default=10, ge=0)
    backoff: Literal["exponential", "linear", "constant"] = "exponential"
    jitter: bool = True



class SourceBase(Strict):
    """What every source kind has: columns, window, key, load, checks and limits."""

    name: str
    description: str | None = None
    mode: Literal["incremental", "full"] = "incremental"
    timestamp_column: str | None = None
    lookback: str | None = None
    primary_key: list[str] = Field(default_factory=list)
    columns: list[ColumnSpec] | None = None
    load: LoadSpec = Field(default_factory=LoadSpec)
    schema_policy: SchemaPolicySpec = Field(default_factory=SchemaPolicySpec, alias="schema")
    checks: list[CheckSpec] = Field(default_factory=list)
    retries: RetrySpec | None = None
    batch_size: int | None = Field(default=None, gt=0)
    timeout_seconds: float | None = Field(default=None, gt=0)
    # An optional source whose ${ENV} settings are not set is skipped (loads nothing) instead
    # of failing the run: for systems only some deployments have.
    optional: bool = False
    # Steps reading the same source system share a Dagster pool, so a deployment caps the
    # connections a pipeline opens to it (dagster.yaml `pools.default_limit`, or
    # `dagster instance concurrency set <pool> N`). Default: one pool per connection setting.
    pool: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:/-]{1,100}$")
    # Naive timestamps (DATETIME, `timestamp`, text without an offset) in this source are
    # wall-clock time in this zone; default: the pipeline's timezone.
    timezone: str | None = None
    if TYPE_CHECKING:
        kind: str  # each kind's own Literal tag, the discriminator

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return identifier(v, "source name")

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        return known_timezone(v)

    def wall_clock_zone(self, column: str | None, default: str) -> str:
        """The zone naive values of `column` (a spec name) are read in: the column's
        `timezone`, else the source's, else `default` (the pipeline's)."""
        for c in self.columns or []:
            if c.name == column and c.timezone:
                return c.timezone
        return self.timezone or default

    @field_validator("lookback")
    @classmethod
    def _lookback(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SourceBase:
        if self.mode == "incremental" and not self.timestamp_column and not self._dated_by_name():
            raise ValueError("an incremental source needs timestamp_column (or set mode: full)")
        if self.load.strategy in ("upsert", "append", "scd2") and not self.primary_key:
            raise ValueError(f"load.strategy {self.load.strategy} needs a primary_key")
        if self.load.delete_missing and self.mode != "full":
            # A window of an incremental source says nothing about rows outside it.
            raise ValueError("load.delete_missing needs mode: full")
        if self.columns is not None:
            names = [c.name for c in self.columns]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate column {dupes[0]!r} in columns")
            known = set(names)
            # Checks' columns are checked by PipelineSpec, which knows the source's index.
            for field, cols in [
                ("primary_key", self.primary_key),
                ("timestamp_column", [self.timestamp_column] if self.timestamp_column else []),
            ]:
                for col in cols:
                    if col not in known:
                        hint = difflib.get_close_matches(col, names, n=1)
                        extra = f"; did you mean {hint[0]!r}?" if hint else ""
                        raise ValueError(f"{field} names unknown column {col!r}{extra}")
        names = [check_name(c) for c in self.checks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"two checks are named {dupes[0]!r}: give one a distinct name")
        for c in self.checks:
            if isinstance(c, UniqueCheck) and not (c.columns or self.primary_key):
                raise ValueError("a unique check needs columns or a primary_key")
            if isinstance(c, FreshnessCheck) and not (c.column or self.timestamp_column):
                raise ValueError("a freshness check needs column or the source's timestamp_column")
            if isinstance(c, SchemaCheck) and c.columns is None and self.columns is None:
                raise ValueError("a schema check needs columns, or the source's columns declared")
        return self

    @property
    def pool_name(self) -> str:
        if self.pool:
            return self.pool
        ref = self.connection_ref() or ""
        m = ENV_REF.fullmatch(ref)
        if m:
            return f"{self.kind}:{m.group(1).lower()}"
        return f"{self.kind}:{self.name}"

    @property
    def schema_checked(self) -> bool:
        """A schema check wants to see every source column, so extraction reads them all."""
        return any(isinstance(c, SchemaCheck) for c in self.checks)

    @property
    def lookback_delta(self) -> dt.timedelta:
        return parse_duration(self.lookback) if self.lookback else dt.timedelta(0)

    def connection_ref(self) -> str | None:
        """The URL setting that reaches the source system, for kinds that have one."""
        return None

    def _dated_by_name(self) -> bool:
        """True when the window's data is chosen by file name rather than by a column."""
        return False

    @property
    def timestamp_column_source(self) -> str | None:
        """The timestamp column as the source names it (its `from:`), for window filters."""
        for c in self.columns or []:
            if c.name == self.timestamp_column:
                return c.source_name
        return self.timestamp_column

