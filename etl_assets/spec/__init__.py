"""Pipeline specs: the YAML models, their validation and the one clear error they raise.

A spec is data only. Secrets stay as `${ENV_VAR}` references until a run resolves them
(see `etl_assets.core.secrets`), so loading definitions never needs a password.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from etl_assets.core.errors import SpecError
from etl_assets.core.secrets import CREDENTIAL_ENV, CREDENTIAL_KEYS, ENV_REF

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
DURATION = re.compile(r"^\s*(\d+)\s*(m|min|h|d|w)\s*$")
OWNER = re.compile(r"^(team:[A-Za-z0-9_.-]+|[^@\s]+@[^@\s]+\.[^@\s]+)$")

Cadence = Literal["15min", "30min", "hourly", "daily", "weekly", "monthly"]
Weekday = Literal["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
WEEKDAYS: tuple[str, ...] = Weekday.__args__  # type: ignore[attr-defined]
ColumnType = Literal["string", "integer", "float", "boolean", "date", "timestamp"]


def parse_duration(value: str) -> dt.timedelta:
    m = DURATION.match(value)
    if not m:
        raise ValueError(f"invalid duration {value!r}: use e.g. 30m, 12h, 3d or 1w")
    n, unit = int(m.group(1)), m.group(2)
    return {
        "m": dt.timedelta(minutes=n),
        "min": dt.timedelta(minutes=n),
        "h": dt.timedelta(hours=n),
        "d": dt.timedelta(days=n),
        "w": dt.timedelta(weeks=n),
    }[unit]


# Run history (etl_meta), the Dagster instance's tables (`public` of the warehouse database
# when ETL_INSTANCE_URL defaults to it) and PostgreSQL's own schemas are never load targets.
RESERVED_SCHEMAS = frozenset({"etl_meta", "public", "information_schema"})


def _not_reserved(schema: str, what: str) -> None:
    low = schema.lower()
    if low in RESERVED_SCHEMAS or low.startswith("pg_"):
        raise ValueError(
            f"{what} {schema!r} is reserved for run history, the Dagster instance or PostgreSQL "
            "itself: load into a schema of your own"
        )


def _identifier(value: str, what: str = "name") -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(
            f"{value!r} is not a valid {what}: use letters, digits and _ , starting with a letter"
        )
    return value


# One line of hover help per spec field, shown by editors through the JSON Schema. Keys are a
# field name, or `Model.field` where one name means different things in different models.
FIELD_HELP: dict[str, str] = {
    "name": "Name: letters, digits and underscores; unique among its siblings.",
    "description": "Free text shown in the UI next to this item.",
    "owners": "Who owns the pipeline: email addresses or team:<name>.",
    "timezone": "IANA time zone (e.g. America/Sao_Paulo) that windows and naive timestamps are read in.",
    "partitions": "How time is cut into partitions: cadence, first partition, week start.",
    "RowCountAnomalyCheck.partitions": "How many earlier partitions the median row count is taken over.",
    "schedule": "When the daemon runs the latest complete partition.",
    "retries": "Retries of transient errors: count, delay, backoff and jitter.",
    "sources": "The sources to extract, each loaded into its own warehouse table.",
    "report": "The report rendered per partition: title and KPI queries.",
    "failure_threshold": "Pause the schedule after this many consecutive failed scheduled runs (0: never).",
    "retention": "How long runs, history and files are kept before `etl-assets prune` deletes them.",
    "notify": "Where run alerts go: Slack and/or email.",
    "deadline": "When a partition must have loaded; a late one is alerted.",
    "catchup": "How the schedule launches partitions it missed while down.",
    "timeout_minutes": "The longest a run may take before Dagster stops it.",
    "warehouse": "Where sources load: PostgreSQL (default) or ClickHouse.",
    "resources": "Limits for each step process, such as memory.",
    "kind": "Which kind of source (or warehouse) this is.",
    "connection": "How to reach the database: a URL, secrets as ${ENV} references.",
    "url": "A URL; secrets as ${ENV} references.",
    "HttpSource.url": "The endpoint to GET; params, auth and pagination are added to it.",
    "WarehouseSpec.url": "The warehouse URL, e.g. clickhouse://… or chdb:///path; secrets as ${ENV}.",
    "table": "schema.table to read (or use query).",
    "query": "SQL to read instead of a table; may use :window_start, :window_end and :last_sync.",
    "mode": "incremental reads the window on timestamp_column; full reads the whole source.",
    "timestamp_column": "Column whose value places a row in a window.",
    "lookback": "Widen each window's start by this much (e.g. 2d) to catch late updates.",
    "primary_key": "Columns that identify a row; loads upsert on them.",
    "columns": "Declared columns: name, optional from:, type and nullable.",
    "SchemaCheck.columns": "Expected columns (a list, or name: type); default: the declared columns.",
    "UniqueCheck.columns": "Columns that must be unique together; default: the primary key.",
    "load": "How rows load into the warehouse: target, strategy, deletes, sharing.",
    "schema": "What to do when the source's columns drift from the table's.",
    "checks": "Data quality checks run on every partition before it loads.",
    "batch_size": "Stream the window in frames of at most this many rows.",
    "timeout_seconds": "Statement timeout (SQL) or per-page deadline (HTTP), in seconds.",
    "optional": "Load nothing instead of failing when this source's ${ENV} settings are unset.",
    "pool": "Dagster concurrency pool that limits how many of its steps run at once.",
    "path": "Glob of files to read, local or an fsspec URL.",
    "delimiter": "Field separator, one character.",
    "encoding": "Text encoding of the files.",
    "header": "Whether the first line holds the column names.",
    "HttpAuth.header": "Header that carries the API key.",
    "quotechar": "Quote character, one character.",
    "compression": "gzip, zip, none, or infer from the file name.",
    "filename_date": "strftime pattern of the date in each file name, which places the file in a window.",
    "na_values": "Extra field values read as NULL.",
    "keep_default_na": "Also read pyarrow's default null tokens (NA, N/A, NaN, …) as NULL.",
    "params": "Query parameters; may use {window_start}, {window_end} and {last_sync}.",
    "headers": "HTTP request headers; secrets as ${ENV} references.",
    "auth": "bearer token or API-key header; sent only to the URL's own host unless allowed_hosts.",
    "record_path": "Dotted path to the list of records in the response body.",
    "pagination": "How to fetch the next page: page, offset, cursor or link.",
    "max_pages": "Stop with an error after this many pages.",
    "token": "Bearer token, as a ${ENV} reference.",
    "value": "API key value, as a ${ENV} reference.",
    "allowed_hosts": "Other hosts (host or host:port) that may receive the credentials on redirects.",
    "param": "Query parameter that carries the page number or cursor.",
    "Pagination.start": "First page number.",
    "size_param": "Query parameter that carries the page size.",
    "size": "Rows per page.",
    "offset_param": "Query parameter that carries the offset.",
    "limit_param": "Query parameter that carries the limit.",
    "limit": "Rows per request.",
    "cursor_path": "Dotted path to the next cursor in the response body.",
    "from": "The column's name in the source, when it differs from name.",
    "type": "The type: string, integer, float, boolean, date or timestamp (or the check's type).",
    "nullable": "Whether the column may hold NULL.",
    "target": "schema.table to load into; default <pipeline>.<source>.",
    "strategy": "upsert by primary key, or replace_partition (delete the window's rows, insert).",
    "delete_missing": "Full sources: delete target rows the source no longer has.",
    "shared": "Allow other pipelines or sources to load this table too (upsert only).",
    "on_missing_column": "fail the load, or load NULL, when a table column is gone from the source.",
    "on_new_column": "What to do when the source has a column the table lacks.",
    "on_type_change": "What to do when a column's type differs from the table's.",
    "max": "Largest allowed value.",
    "min": "Smallest allowed value.",
    "RowCountCheck.min": "Fewest rows a partition may have.",
    "RowCountCheck.max": "Most rows a partition may have.",
    "RetrySpec.max": "How many times a transient error is retried (0: never).",
    "delay_seconds": "Delay before the first retry, in seconds.",
    "backoff": "How the delay grows: exponential, linear or constant.",
    "jitter": "Randomize delays so retries do not arrive together.",
    "severity": "error blocks the load, warn reports, quarantine sets failing rows aside.",
    "error_if": "Block the load only past this many failing rows (`> 10`) or share (`> 1%`).",
    "warn_if": "Warn only past this many failing rows (`> 10`) or share (`> 1%`).",
    "store_failures": "Keep the failing rows beside the report.",
    "column": "The column the check reads.",
    "RelationshipTarget.column": "The referenced source's column that must hold the value.",
    "source": "The source whose loaded table is referenced.",
    "to": "The source and column every value must exist in.",
    "EmailNotifySpec.to": "Recipient email addresses.",
    "values": "The allowed values.",
    "pattern": "Regular expression every value must match.",
    "min_ratio": "Smallest allowed ratio of rows to the median of earlier partitions.",
    "max_ratio": "Largest allowed ratio of rows to the median of earlier partitions.",
    "min_history": "Earlier partitions needed before the check judges.",
    "max_age": "How old the newest timestamp may be at the window end (e.g. 3d).",
    "expectation": "A great-expectations expectation class name, e.g. ExpectColumnValuesToBeUnique.",
    "kwargs": "Arguments of the expectation.",
    "cadence": "weekly, daily, hourly, monthly, 15min, 30min or cron.",
    "PartitionSpec.start": "The first partition's start date; on a window boundary.",
    "week_start": "The day weekly windows start on.",
    "cron": "Cron expression of window starts (cadence: cron).",
    "at": "Time of day (HH:MM, pipeline timezone).",
    "DeadlineSpec.at": "Time of day (HH:MM) by which the partition must have loaded.",
    "after_window_end": "How long after the window end the partition must have loaded (e.g. 6h).",
    "day_of_week": "Weekday the schedule runs on.",
    "day_of_month": "Day of the month the schedule runs on (1–28).",
    "enabled": "Whether this is on.",
    "window": "How many recent partitions catch-up looks back over.",
    "max_runs_per_tick": "Most catch-up runs one tick launches.",
    "title": "Title shown at the top of the report.",
    "KpiSpec.title": "Heading of this KPI in the report; default its name.",
    "kpis": "KPI queries shown as tables (and charts) in the report.",
    "sql": "SQL run on the warehouse, with :window_start and :window_end bound.",
    "chart": "Draw the KPI as a bar or line chart of x against y.",
    "x": "Column on the chart's x axis.",
    "y": "Column on the chart's y axis.",
    "on_partial": "render or skip the report of a partially loaded partition.",
    "slack": "Slack alerts: channel and which statuses.",
    "email": "Email alerts: recipients and which statuses.",
    "channel": "Slack channel, e.g. #data-alerts.",
    "on": "Which outcomes alert: success, failure, partial, paused.",
    "api_url": "Slack API root.",
    "subject_prefix": "Text put before every email subject.",
    "memory_mb": "Memory limit of each step process, in MB.",
    "runs_days": "Keep Dagster runs and history this many days.",
    "artifacts_days": "Keep Parquet files, run logs and reports this many days.",
    "keep_last_success": "Never delete the latest successful run of a partition.",
}


def describe_fields(schema: dict[str, Any], model: type) -> None:
    """Fill in each property's description from FIELD_HELP unless the field has its own."""
    for name, prop in (schema.get("properties") or {}).items():
        if not prop.get("description"):
            text = FIELD_HELP.get(f"{model.__name__}.{name}") or FIELD_HELP.get(name)
            if text:
                prop["description"] = text


class Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, frozen=True, json_schema_extra=describe_fields
    )


# --- checks ---------------------------------------------------------------------------------


class RelationshipTarget(Strict):
    source: str
    column: str


ColumnTypeName = Literal["string", "integer", "float", "boolean", "date", "timestamp"]


class _Check(Strict):
    name: str | None = None
    # error: blocks the load; warn: loads and reports; quarantine (row-level checks only):
    # failing rows go to <table>__quarantine and the passing rows load.
    severity: Literal["error", "warn", "quarantine"] = "error"
    # Graded row-level checks: how many failing rows (`> 10`) or what share of the
    # partition's rows (`> 1%`) make the check warn, or block the load.
    warn_if: str | None = None
    error_if: str | None = None
    # Failing rows are also written to <table>__failures; they still load.
    store_failures: bool = False
    row_level: ClassVar[bool] = False

    def is_row_level(self) -> bool:
        return self.row_level

    @property
    def graded(self) -> bool:
        return self.warn_if is not None or self.error_if is not None

    @property
    def blocking(self) -> bool:
        """Whether a failure can stop the load: error checks, graded ones only with error_if."""
        return self.severity == "error" and (not self.graded or self.error_if is not None)

    @field_validator("warn_if", "error_if")
    @classmethod
    def _threshold(cls, v: str | None) -> str | None:
        if v is not None:
            parse_threshold(v)
        return v

    @model_validator(mode="after")
    def _quarantine_rows_only(self) -> _Check:
        kind = self.type  # type: ignore[attr-defined]
        if self.severity == "quarantine" and not self.is_row_level():
            raise ValueError(f"severity quarantine needs a row-level check, not {kind}")
        if (self.graded or self.store_failures) and not self.is_row_level():
            which = "store_failures" if self.store_failures else "warn_if" if self.warn_if else "error_if"
            raise ValueError(f"{which} needs a row-level check, not {kind}")
        if self.graded and self.severity == "quarantine":
            raise ValueError("warn_if and error_if grade a check by how many rows fail; a quarantine check sets every failing row aside: use one or the other")
        if self.error_if is not None and self.severity == "warn":
            raise ValueError("error_if blocks the load above its threshold, which a severity warn check never does: drop severity warn")
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return None if v is None else _identifier(v, "check name")

    def column_fields(self) -> list[tuple[str, str]]:
        """(field, column) for each column the check names, so an error can point at the field."""
        col = getattr(self, "column", None)
        return [("column", col)] if col else []

    def columns_used(self) -> list[str]:
        return [col for _, col in self.column_fields()]


class NotNullCheck(_Check):
    row_level: ClassVar[bool] = True
    type: Literal["not_null"]
    column: str

    def default_name(self) -> str:
        return f"not_null_{self.column}"


class UniqueCheck(_Check):
    type: Literal["unique"]
    columns: list[str] | None = None  # default: the primary key

    def default_name(self) -> str:
        return "unique_" + "_".join(self.columns) if self.columns else "unique_key"

    def column_fields(self) -> list[tuple[str, str]]:
        return [(f"columns[{i}]", c) for i, c in enumerate(self.columns or [])]


class BetweenCheck(_Check):
    row_level: ClassVar[bool] = True
    type: Literal["between"]
    column: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> BetweenCheck:
        if self.min is None and self.max is None:
            raise ValueError("between needs min, max or both")
        return self

    def default_name(self) -> str:
        return f"between_{self.column}"


class InSetCheck(_Check):
    row_level: ClassVar[bool] = True
    type: Literal["in_set"]
    column: str
    values: list[Any] = Field(min_length=1)

    def default_name(self) -> str:
        return f"in_set_{self.column}"


class RegexCheck(_Check):
    row_level: ClassVar[bool] = True
    type: Literal["regex"]
    column: str
    pattern: str

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"invalid regular expression: {e}") from None
        return v

    def default_name(self) -> str:
        return f"regex_{self.column}"


class RowCountCheck(_Check):
    type: Literal["row_count"]
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    def default_name(self) -> str:
        return "row_count"


class SchemaCheck(_Check):
    """The source's column set (and types): exactly these, or at least these."""

    type: Literal["schema"]
    mode: Literal["exact", "at_least"] = "at_least"
    columns: dict[str, ColumnTypeName] | list[str] | None = None  # default: the declared columns

    def default_name(self) -> str:
        return "schema"


class RelationshipCheck(_Check):
    """Every value of `column` exists in another source's loaded table."""

    row_level: ClassVar[bool] = True
    type: Literal["relationship"]
    column: str
    to: RelationshipTarget

    def default_name(self) -> str:
        return f"relationship_{self.column}"


class RowCountAnomalyCheck(_Check):
    """This partition's rows against the median of the last `partitions` loaded ones."""

    type: Literal["row_count_anomaly"]
    partitions: int = Field(default=8, ge=1, le=100)
    min_ratio: float = Field(default=0.5, ge=0)
    max_ratio: float | None = Field(default=2.0, gt=0)
    min_history: int = Field(default=3, ge=1)

    def default_name(self) -> str:
        return "row_count_anomaly"


class FreshnessCheck(_Check):
    """The newest `column` value (default: timestamp_column) is within `max_age` of the window end."""

    type: Literal["freshness"]
    column: str | None = None
    max_age: str

    @field_validator("max_age")
    @classmethod
    def _age(cls, v: str) -> str:
        parse_duration(v)
        return v

    def default_name(self) -> str:
        return "freshness"


class ExpectationCheck(_Check):
    """Any great-expectations 1.x expectation by class name, with its keyword arguments."""

    type: Literal["expectation"]
    expectation: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _exists(self) -> ExpectationCheck:
        # Importing great_expectations is slow, so it happens only for specs that use this.
        from etl_assets.quality import build_expectation

        build_expectation(self.expectation, self.kwargs)
        return self

    def is_row_level(self) -> bool:
        return isinstance(self.kwargs.get("column"), str)

    def column_fields(self) -> list[tuple[str, str]]:
        col = self.kwargs.get("column")
        return [("kwargs.column", col)] if isinstance(col, str) else []

    def default_name(self) -> str:
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", self.expectation).lower()
        col = self.kwargs.get("column")
        return (snake + (f"_{col}" if isinstance(col, str) else ""))[:63]


_THRESHOLD = re.compile(r"^\s*(>=|>)\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


def parse_threshold(text: str) -> tuple[str, float, bool]:
    """`> 10` (rows) or `>= 1.5%` (of the partition's rows) as (operator, number, is_share)."""
    m = _THRESHOLD.match(str(text))
    if not m:
        raise ValueError(f"threshold {text!r} must be a count or a share of rows, such as '> 10' or '> 1%'")
    if m.group(3) and float(m.group(2)) > 100:
        raise ValueError(f"threshold {text!r} is a share above 100%")
    return m.group(1), float(m.group(2)), bool(m.group(3))


CheckSpec = Annotated[
    NotNullCheck | UniqueCheck | BetweenCheck | InSetCheck | RegexCheck | RowCountCheck | SchemaCheck | RelationshipCheck | RowCountAnomalyCheck | FreshnessCheck | ExpectationCheck,
    Field(discriminator="type"),
]


def check_name(check: Any) -> str:
    return check.name or check.default_name()


def missing_column(column: str, columns: list[str]) -> str:
    """Why a check cannot read `column`: the one sentence spec errors and check results share."""
    hint = difflib.get_close_matches(column, columns, n=1)
    return f"column {column!r} is not in the source's columns: {', '.join(columns)}" + (
        f" (did you mean {hint[0]!r}?)" if hint else ""
    )


# --- sources --------------------------------------------------------------------------------


def _known_timezone(v: str | None) -> str | None:
    if v is not None:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {v!r}: use an IANA name such as UTC{_close_timezone(v)}"
            ) from None
    return v


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
        return _identifier(v, "column name")

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        return _known_timezone(v)

    @property
    def source_name(self) -> str:
        return self.source or self.name


class LoadSpec(Strict):
    target: str | None = None  # schema.table; default <pipeline>.<source>
    # upsert: insert or update by key. delete_insert: the partition's rows are replaced as a
    # set (`replace_partition` is its former name, still accepted). append: each key is
    # inserted once and never updated. scd2: every version of a key is kept (valid_from,
    # valid_to, is_current) and `<target>__current` shows the current ones.
    strategy: Literal["upsert", "delete_insert", "replace_partition", "append", "scd2"] = "upsert"
    # Full sources only: rows the source no longer has are deleted from the target (under
    # scd2 their current versions are closed instead).
    delete_missing: bool = False
    # Another pipeline or source loads this target too: both must say so, and both upsert.
    shared: bool = False

    @field_validator("target")
    @classmethod
    def _target(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = v.split(".")
        if len(parts) != 2:
            raise ValueError(f"{v!r} must be schema.table")
        for p in parts:
            _identifier(p, "identifier")
        _not_reserved(parts[0], "schema")
        return v

    @model_validator(mode="after")
    def _shared_keeps_others_rows(self) -> LoadSpec:
        # Partition replacement and delete_missing delete by partition or by absence,
        # which would take the other loader's rows too.
        if self.shared and self.strategy != "upsert":
            raise ValueError("load.shared needs strategy upsert: replace_partition would delete the other loader's rows")
        if self.shared and self.delete_missing:
            raise ValueError("load.shared cannot delete_missing: it would delete the other loader's rows")
        if self.strategy == "append" and self.delete_missing:
            raise ValueError("load.strategy append never deletes: drop delete_missing or use upsert")
        return self

    @property
    def replaces_partition(self) -> bool:
        """delete_insert, under either of its names."""
        return self.strategy in ("delete_insert", "replace_partition")


class SchemaPolicySpec(Strict):
    """What a load does when the source's columns drift from the warehouse table's."""

    # evolve: the column is added to the table; fail: the load fails naming it; ignore: it
    # is not loaded.
    on_new_column: Literal["evolve", "fail", "ignore"] = "evolve"
    # A column the table has but the source no longer provides. fail: the load fails naming
    # it; null: rows the load writes hold NULL in it; keep: rows it updates keep their value.
    on_missing_column: Literal["fail", "null", "keep"] = "fail"
    # fail: the load fails naming the column and both types; widen: the warehouse column is
    # widened when that holds every old and new value exactly.
    on_type_change: Literal["fail", "widen"] = "fail"

    @field_validator("on_missing_column", mode="before")
    @classmethod
    def _yaml_null(cls, v: Any) -> Any:
        return "null" if v is None else v  # YAML reads an unquoted `null` as None


class RetrySpec(Strict):
    max: int = Field(default=3, ge=0, le=20)
    delay_seconds: float = Field(default=10, ge=0)
    backoff: Literal["exponential", "linear", "constant"] = "exponential"
    jitter: bool = True


_QUERY_CREDENTIAL = re.compile(rf"[?&;](?:{CREDENTIAL_KEYS})=([^&#;]*)", re.IGNORECASE)


def _credential_refs(value: str) -> str:
    CREDENTIAL_ENV.update(ENV_REF.findall(value))
    return value


def _no_literal_secret_in_url(v: str, example: str) -> str:
    """A password written into a URL (user:pw@ or ?password=) would sit in the spec file."""
    m = re.match(r"^[a-z0-9+]+://[^:/@]*:([^@]*)@", v)
    literal = [m.group(1)] if m and m.group(1) else []
    literal += [q for q in _QUERY_CREDENTIAL.findall(v) if q]
    if any(not ENV_REF.fullmatch(x) for x in literal):
        raise ValueError(
            "the URL holds a literal password: reference an environment variable instead, "
            f"e.g. {example}"
        )
    return _credential_refs(v)


class Connection(Strict):
    url: str

    @field_validator("url")
    @classmethod
    def _no_literal_password(cls, v: str) -> str:
        return _no_literal_secret_in_url(v, "postgresql://user:${PG_PASSWORD}@host/db")


class _Source(Strict):
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

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _identifier(v, "source name")

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        return _known_timezone(v)

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
    def _consistent(self) -> _Source:
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
        ref = getattr(getattr(self, "connection", None), "url", None) or getattr(self, "url", None) or ""
        m = ENV_REF.fullmatch(ref)
        if m:
            return f"{self.kind}:{m.group(1).lower()}"
        return f"{self.kind}:{self.name}"

    @property
    def schema_checked(self) -> bool:
        """A schema check wants to see every source column, so extraction reads them all."""
        return any(getattr(c, "type", None) == "schema" for c in self.checks)

    @property
    def lookback_delta(self) -> dt.timedelta:
        return parse_duration(self.lookback) if self.lookback else dt.timedelta(0)

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


class _DatabaseSource(_Source):
    """A table (`schema.table`) or a `query:` with :window_start, :window_end, :last_sync."""

    connection: Connection
    table: str | None = None
    query: str | None = None

    @model_validator(mode="after")
    def _table_or_query(self) -> _DatabaseSource:
        if bool(self.table) == bool(self.query):
            raise ValueError("give exactly one of table or query")
        if self.table:
            parts = self.table.split(".")
            if len(parts) > 2:
                raise ValueError(f"table {self.table!r} must be table or schema.table")
            for part in parts:
                _identifier(part, "table name")
        return self


class PostgresSource(_DatabaseSource):
    """A PostgreSQL table or query, extracted with COPY."""

    kind: Literal["postgres"]


class MysqlSource(_DatabaseSource):
    """A MySQL or MariaDB table or query, streamed with a server-side cursor."""

    kind: Literal["mysql"]

    @field_validator("connection")
    @classmethod
    def _mysql_url(cls, v: Connection) -> Connection:
        if not ENV_REF.fullmatch(v.url) and not re.match(r"^(mysql|mariadb)(\+pymysql)?://", v.url):
            raise ValueError("url must look like mysql://user:${PASSWORD}@host:3306/db")
        return v


class SqlSource(_DatabaseSource):
    """Any SQLAlchemy database: sqlite, postgresql+psycopg, oracle+oracledb, mssql+pymssql."""

    kind: Literal["sql"]

    @field_validator("connection")
    @classmethod
    def _sqlalchemy_url(cls, v: Connection) -> Connection:
        if not ENV_REF.fullmatch(v.url) and not re.match(r"^\w+(\+\w+)?://", v.url):
            raise ValueError(
                "url must be a SQLAlchemy URL such as oracle+oracledb://user:${PW}@host/service"
            )
        return v


class CsvSource(_Source):
    """A folder of CSV files matched by a glob, local or on an object store."""

    kind: Literal["csv"]
    path: str
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8"
    header: bool = True
    quotechar: str = Field(default='"', min_length=1, max_length=1)
    compression: Literal["infer", "none", "gzip", "zip"] = "infer"
    filename_date: str | None = None
    # As in pandas: fields equal to one of `na_values` are NULL, besides pyarrow's default
    # tokens ("", NULL, N/A, NaN, nan, ...) unless keep_default_na is false.
    na_values: list[str] = Field(default_factory=list)
    keep_default_na: bool = True

    @model_validator(mode="after")
    def _csv(self) -> CsvSource:
        import codecs

        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {self.encoding!r}") from None
        if self.filename_date and not all(c in self.filename_date for c in ("%Y", "%m", "%d")):
            raise ValueError("filename_date needs %Y, %m and %d, e.g. orders_%Y%m%d.csv")
        return self

    def _dated_by_name(self) -> bool:
        # The date in each file's name picks the window's files; rows are not filtered.
        return bool(self.filename_date)


def _env_only(value: str, field: str) -> str:
    """Credentials live in the environment, never in the spec file."""
    if not ENV_REF.search(value):
        raise ValueError(f"{field} must reference an environment variable, e.g. \"${{API_TOKEN}}\"")
    return _credential_refs(value)


class HttpAuth(Strict):
    """`{type: bearer, token: ${TOKEN}}` or `{type: api_key, header: X-API-Key, value: ${KEY}}`."""

    type: Literal["bearer", "api_key"]
    token: str | None = None
    header: str = "X-API-Key"
    value: str | None = None
    # Hosts besides the source URL's own that may receive the credential when a redirect or
    # a next-page link leads there: `host` (the scheme's default port) or `host:port`.
    allowed_hosts: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")]] = Field(
        default_factory=list
    )

    @model_validator(mode="after")
    def _fields(self) -> HttpAuth:
        if self.type == "bearer":
            if self.token is None or self.value is not None:
                raise ValueError("bearer auth takes token (and no value)")
            _env_only(self.token, "token")
        else:
            if self.value is None or self.token is not None:
                raise ValueError("api_key auth takes header and value (and no token)")
            _env_only(self.value, "value")
        return self


_PAGINATION_FIELDS = {
    "page": {"param", "start", "size_param", "size"},
    "offset": {"offset_param", "limit_param", "limit"},
    "cursor": {"cursor_path", "param"},
    "link": set(),
}


class Pagination(Strict):
    """How the next page is asked for; the last page is the first one that says "no more".

    page: `param`=start, start+1, … until a page is empty or shorter than `size`.
    offset: `offset_param`=0, limit, 2·limit, … until a page is shorter than `limit`.
    cursor: the body's `cursor_path` value is sent as `param` until it is empty.
    link: follow the `Link: <…>; rel="next"` response header.
    """

    type: Literal["page", "offset", "cursor", "link"]
    param: str | None = None
    start: int = Field(default=1, ge=0)
    size_param: str | None = None
    size: int | None = Field(default=None, gt=0)
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = Field(default=100, gt=0)
    cursor_path: str | None = None

    @model_validator(mode="after")
    def _fields(self) -> Pagination:
        allowed = _PAGINATION_FIELDS[self.type] | {"type"}
        stray = sorted(set(self.model_fields_set) - allowed)
        if stray:
            raise ValueError(f"{', '.join(stray)} does not apply to pagination type {self.type}")
        if self.type == "cursor" and not self.cursor_path:
            raise ValueError(
                "cursor pagination needs cursor_path (where the body holds the next cursor)"
            )
        if bool(self.size_param) != bool(self.size):
            raise ValueError("give size_param and size together")
        return self


class HttpSource(_Source):
    """A JSON API: `params` may use {window_start} and {window_end} (ISO-8601)."""

    kind: Literal["http"]
    url: str
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    auth: HttpAuth | None = None
    record_path: str | None = None  # e.g. data.items; default: the body is the list
    pagination: Pagination | None = None
    max_pages: int = Field(default=1000, gt=0)
    timeout_seconds: float = Field(default=30, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^(https?://|\$\{)", v):
            raise ValueError("url must start with http:// or https://")
        return _no_literal_secret_in_url(v, "https://api.example.com/v1?key=${API_KEY}")

    @field_validator("headers", "params")
    @classmethod
    def _credentials(cls, v: dict[str, Any]) -> dict[str, Any]:
        for value in v.values():
            if isinstance(value, str):
                _credential_refs(value)
        return v


SourceSpec = Annotated[
    PostgresSource | CsvSource | MysqlSource | SqlSource | HttpSource,
    Field(discriminator="kind"),
]
SOURCE_KINDS = ("postgres", "csv", "mysql", "sql", "http")


# --- pipeline -------------------------------------------------------------------------------


class PartitionSpec(Strict):
    """Time windows in the pipeline's timezone: a named cadence, or any 5-field cron."""

    cadence: Literal[Cadence, "cron"] = "weekly"
    week_start: Weekday = "sunday"
    # After cadence and week_start, so its validator can check the first window against them.
    start: dt.date
    # Validated even when absent, so `cadence: cron` without it is an error on this field.
    cron: str | None = Field(default=None, validate_default=True)

    @field_validator("start")
    @classmethod
    def _start_on_boundary(cls, v: dt.date, info: Any) -> dt.date:
        """The first partition starts where a window starts, not part-way into one."""
        cadence, week_start = info.data.get("cadence"), info.data.get("week_start")
        if cadence == "weekly" and week_start and WEEKDAYS[(v.weekday() + 1) % 7] != week_start:
            raise ValueError(f"{v} is a {v.strftime('%A')}, but week_start is {week_start}")
        if cadence == "monthly" and v.day != 1:
            raise ValueError(f"{v} is not the 1st of a month, and monthly partitions start on the 1st")
        return v

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None, info: Any) -> str | None:
        if "cadence" not in info.data:
            return v  # the cadence error already says what to fix
        cadence = info.data["cadence"]
        if v is None:
            if cadence == "cron":
                raise ValueError('cadence cron needs a cron expression, e.g. cron: "0 6 * * 1"')
            return None
        if cadence != "cron":
            raise ValueError(f"cron is only used with cadence: cron (cadence is {cadence})")
        from etl_assets.dagster_internal import is_valid_cron

        expression = " ".join(v.split())
        if len(expression.split()) != 5 or not is_valid_cron(expression):
            raise ValueError(
                f"{v!r} is not a 5-field cron expression (minute hour day-of-month month "
                "day-of-week), e.g. \"0 6 * * 1\""
            )
        return expression


class ScheduleSpec(Strict):
    """When a partition is processed: at a local time after its window closes.

    `day_of_week` (weekly; default: week_start) and `day_of_month` (monthly; default 1)
    pick the day; hourly and shorter cadences use only the minutes of `at`.
    """

    at: str = "00:00"
    day_of_week: Weekday | None = None
    day_of_month: int | None = Field(default=None, ge=1, le=28)
    enabled: bool = True

    @field_validator("at")
    @classmethod
    def _at(cls, v: str) -> str:
        m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", v)
        if not m:
            raise ValueError(f"{v!r} is not a time of day HH:MM")
        return f"{int(m.group(1)):02d}:{m.group(2)}"

    def conflict(self, cadence: str) -> str | None:
        """What was written here that `cadence` cannot honour, or None; checked per pipeline."""
        given = self.model_fields_set
        if "day_of_week" in given and self.day_of_week and cadence != "weekly":
            return f"schedule.day_of_week applies to weekly partitions only (cadence is {cadence})"
        if "day_of_month" in given and self.day_of_month and cadence != "monthly":
            return (
                f"schedule.day_of_month applies to monthly partitions only (cadence is {cadence})"
            )
        if "at" in given and cadence == "cron":
            return "schedule.at does not apply to cadence: cron; the cron says when windows close"
        return None


class CatchupSpec(Strict):
    """Which missed partitions a schedule tick requests: at most `window` back, oldest first.

    `catchup: false` keeps a tick to the latest complete partition.
    """

    @staticmethod
    def _schema(schema: dict[str, Any]) -> None:
        # `catchup: false` is valid YAML for this model; editors should accept it too.
        describe_fields(schema, CatchupSpec)
        model = dict(schema)
        schema.clear()
        schema.update(anyOf=[model, {"type": "boolean"}], title=model.get("title"))

    model_config = ConfigDict(**{**Strict.model_config, "json_schema_extra": _schema})

    enabled: bool = True
    window: int = Field(default=8, ge=1, le=1000)
    max_runs_per_tick: int = Field(default=8, ge=1, le=100)

    @model_validator(mode="before")
    @classmethod
    def _bool(cls, v: Any) -> Any:
        return {"enabled": v} if isinstance(v, bool) else v

    @property
    def lookback(self) -> int:
        return self.window if self.enabled else 1

    @property
    def runs_per_tick(self) -> int:
        return self.max_runs_per_tick if self.enabled else 1


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
        return _identifier(v, "KPI name")


class ReportSpec(Strict):
    title: str | None = None
    kpis: list[KpiSpec] = Field(default_factory=list)
    on_partial: Literal["render", "skip"] = "render"


# --- notifications --------------------------------------------------------------------------

# `warning`: a run whose warn-severity checks failed, whatever its status.
NotifyEvent = Literal["success", "failure", "partial", "paused", "canceled", "warning"]
DEFAULT_NOTIFY_ON: tuple[str, ...] = ("failure", "partial", "paused")
EMAIL_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})$"
)
SLACK_CHANNEL = re.compile(r"^#?[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def _email_address(value: str) -> str:
    if len(value) > 254 or not EMAIL_ADDRESS.match(value):
        raise ValueError(f"{value!r} is not a valid email address")
    return value


def _distinct_events(v: list[str]) -> list[str]:
    return list(dict.fromkeys(v))


EmailAddress = Annotated[str, AfterValidator(_email_address)]
NotifyOn = Annotated[list[NotifyEvent], AfterValidator(_distinct_events)]


class SlackNotifySpec(Strict):
    """Where run alerts go in Slack. The bot token is a resource secret, never spec data."""

    channel: str
    on: NotifyOn = Field(default_factory=lambda: list(DEFAULT_NOTIFY_ON))
    # The Slack Web API root; a proxy or a local stand-in can replace it.
    api_url: str = "https://slack.com/api/"

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str) -> str:
        if not SLACK_CHANNEL.match(v):
            raise ValueError(f"{v!r} is not a Slack channel: use #name or a channel ID")
        return v


class EmailNotifySpec(Strict):
    """Who gets run mail. Addresses are checked at load, not when the first alert bounces."""

    to: list[EmailAddress] = Field(min_length=1)
    on: NotifyOn = Field(default_factory=lambda: list(DEFAULT_NOTIFY_ON))
    subject_prefix: str | None = None

    @field_validator("subject_prefix")
    @classmethod
    def _one_line(cls, v: str | None) -> str | None:
        if v is not None and ("\n" in v or "\r" in v):
            raise ValueError("subject_prefix must be a single line")
        return v


class NotifySpec(Strict):
    slack: SlackNotifySpec | None = None
    email: EmailNotifySpec | None = None


DEADLINE_AT = re.compile(r"^(?:(mon|tue|wed|thu|fri|sat|sun)(?:day|sday|nesday|rsday|urday)?\s+)?([01]?\d|2[0-3]):([0-5]\d)$", re.I)
DAY_ABBR = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index: datetime.weekday()


class DeadlineSpec(Strict):
    """When each partition must be loaded: `after_window_end` (elapsed time after its window
    ends) or `at`, the first such local time after it ("Mon 09:00", or "09:00" on any day).
    """

    after_window_end: str | None = Field(
        default=None, description="Elapsed time after the window ends, e.g. 9h, 30m, 2d."
    )
    at: str | None = Field(
        default=None,
        description='The first such local time after the window ends: "Mon 09:00", or "09:00" on any day.',
    )

    @field_validator("after_window_end")
    @classmethod
    def _after(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @field_validator("at")
    @classmethod
    def _at(cls, v: str | None) -> str | None:
        if v is not None and not DEADLINE_AT.match(v.strip()):
            raise ValueError(f'{v!r} is not a local time: use "09:00" or a day and time, "Mon 09:00"')
        return v

    @model_validator(mode="after")
    def _one(self) -> DeadlineSpec:
        if (self.after_window_end is None) == (self.at is None):
            raise ValueError('give exactly one of after_window_end (e.g. 9h) or at (e.g. "Mon 09:00")')
        return self

    @property
    def delay(self) -> dt.timedelta | None:
        return parse_duration(self.after_window_end) if self.after_window_end else None

    @property
    def local_time(self) -> tuple[int | None, dt.time] | None:
        """(weekday, Monday 0, or None for any day; time of day) of `at`."""
        m = DEADLINE_AT.match((self.at or "").strip())
        if not m:
            return None
        day = DAY_ABBR.index(m.group(1).lower()) if m.group(1) else None
        return day, dt.time(int(m.group(2)), int(m.group(3)))


class ResourcesSpec(Strict):
    """What each step process of a run may use (README "Memory limits")."""

    # Resident memory in MB; past it the step fails and is not retried. None: ETL_MEMORY_MB.
    memory_mb: int | None = Field(default=None, gt=0)


class RetentionSpec(Strict):
    """How long runs, history and files are kept; see `etl-assets prune`."""

    runs_days: int = Field(default=90, ge=1)
    artifacts_days: int = Field(default=30, ge=1)
    keep_last_success: bool = True


# --- warehouse ------------------------------------------------------------------------------

_WAREHOUSE_SCHEMES = {
    "postgres": ("postgresql://", "postgres://"),
    "clickhouse": ("clickhouse://", "clickhouses://", "chdb://"),
}


class WarehouseSpec(Strict):
    """The load target: PostgreSQL (default) or ClickHouse, a server or embedded chDB.

    postgres: `url` is optional (default: the ETL_WAREHOUSE_URL warehouse).
    clickhouse: `clickhouse://user:${PW}@host:8123/db` (`clickhouses://` for TLS) or
    `chdb:///path/to/dir` for the embedded engine. Run history stays in PostgreSQL.
    """

    kind: Literal["postgres", "clickhouse"] = "postgres"
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        return _no_literal_secret_in_url(v, "clickhouse://etl:${CLICKHOUSE_PASSWORD}@host:8123/db")

    @model_validator(mode="after")
    def _kind_url(self) -> WarehouseSpec:
        if self.url is None:
            if self.kind == "clickhouse":
                raise ValueError(
                    'a clickhouse warehouse needs url, e.g. "${CLICKHOUSE_URL}" or chdb:///path/to/dir'
                )
            return self
        if not self.url.startswith("${") and not self.url.startswith(_WAREHOUSE_SCHEMES[self.kind]):
            raise ValueError(
                f"url of a {self.kind} warehouse must start with "
                + " or ".join(_WAREHOUSE_SCHEMES[self.kind])
            )
        return self


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

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        _identifier(v, "pipeline name")
        # A pipeline's name is the schema its sources load into by default.
        _not_reserved(v, "pipeline name")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            hint = _close_timezone(v)
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
    def _unique_sources(cls, v: list[Any]) -> list[Any]:
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
                if getattr(c, "type", None) != "relationship":
                    continue
                other = names.get(c.to.source)
                where = f"sources[{i}].checks ({check_name(c)}).to"
                if other is None or other.name == s.name:
                    raise ValueError(f"{where}.source: {c.to.source!r} is not another source of {self.name}")
                if other.columns is not None and c.to.column not in {x.name for x in other.columns}:
                    raise ValueError(f"{where}.column: {other.name} has no column {c.to.column!r}")
                back = [x for x in other.checks if getattr(x, "type", None) == "relationship" and x.to.source == s.name]
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
        seen: dict[str, Any] = {}
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

    def target(self, source: Any) -> str:
        return source.load.target or f"{self.name}.{source.name}"

    def source(self, name: str) -> Any:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def retry(self) -> RetrySpec:
        return self.retries


def _close_timezone(v: str) -> str:
    from zoneinfo import available_timezones

    hint = difflib.get_close_matches(v, sorted(available_timezones()), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


# --- loading and error messages -------------------------------------------------------------


def _format_loc(loc: Iterable[Any]) -> str:
    out = ""
    prev: Any = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(prev, int) and (part in SOURCE_KINDS or part in _CHECK_TYPES):
            pass  # a discriminator tag after a list index says nothing the user wrote
        else:
            out += ("." if out else "") + str(part)
        prev = part
    return out


_CHECK_TYPES = (
    "not_null", "unique", "between", "in_set", "regex", "row_count",
    "schema", "relationship", "row_count_anomaly", "freshness", "expectation",
)


def _format_error(err: dict[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "literal_error":
        return "must be one of " + ", ".join(re.findall(r"'([^']*)'", ctx.get("expected", "")))
    if kind == "union_tag_invalid":
        return "must be one of " + ", ".join(re.findall(r"'([^']*)'", ctx.get("expected_tags", "")))
    if kind == "union_tag_not_found":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "is required"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def format_validation_error(file: str, pipeline: str | None, exc: ValidationError) -> str:
    where = f"{file} (pipeline {pipeline})" if pipeline else file
    lines = []
    for e in exc.errors():
        loc = list(e["loc"])
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc.append(str((e.get("ctx") or {}).get("discriminator", "kind")).strip("'"))
        field = _format_loc(loc)
        lines.append(f"{where}: {field + ': ' if field else ''}{_format_error(e)}")
    return "\n".join(lines)


def parse_pipeline(data: Any, file: str) -> PipelineSpec:
    if not isinstance(data, dict):
        raise SpecError(f"{file}: expected a mapping at the top level, got {type(data).__name__}")
    name = data.get("name") if isinstance(data.get("name"), str) else None
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_validation_error(file, name, e)) from None


class _SpecLoader(yaml.SafeLoader):
    """YAML read as a spec means it: only true/false are booleans (as in YAML 1.2, so `on:`
    is a key), a date that does not exist stays text for its field to reject, and a key
    given twice is an error instead of the last one silently winning."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else []:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<:` merges are overridden by the mapping's own keys by design
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # unhashable: the base constructor says so
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first.line + 1})", key_node.start_mark
                )
        return super().construct_mapping(node, deep)

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:
            return self.construct_scalar(node)


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_SpecLoader.add_constructor("tag:yaml.org,2002:timestamp", _SpecLoader.construct_yaml_timestamp)


def _read_yaml(raw: bytes, shown: str) -> Any:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise SpecError(
            f"{shown}: not UTF-8 text: byte 0x{raw[e.start]:02x} at line {line}, column {column}; "
            "save the file as UTF-8"
        ) from None
    try:
        return yaml.load(text, Loader=_SpecLoader)
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        column = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        raise SpecError(
            f"{shown}: invalid YAML at line {line}, column {column}: character #x{e.character:04x}: {e.reason}"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{shown}: invalid YAML{at}: {problem}") from None
    except RecursionError:
        raise SpecError(f"{shown}: invalid YAML: nested too deeply") from None


MAX_VALUES = 100_000  # a real spec holds a few thousand values at most


def _expanded_size(value: Any, memo: dict[int, int], active: set[int]) -> int:
    """How many values validation visits, with every YAML alias expanded in place."""
    if not isinstance(value, (dict, list)):
        return 1
    if id(value) in memo:
        return memo[id(value)]
    if id(value) in active:
        return 1  # a cycle: validation reports it
    active.add(id(value))
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
    size = 1
    for item in items:
        size += _expanded_size(item, memo, active)
        if size > MAX_VALUES:
            break
    active.discard(id(value))
    memo[id(value)] = size
    return size


def parse_pipeline_bytes(raw: bytes, shown: str) -> PipelineSpec:
    """A spec file's bytes as a pipeline, or one SpecError per problem."""
    data = _read_yaml(raw, shown)
    try:
        too_big = _expanded_size(data, {}, set()) > MAX_VALUES
    except RecursionError:
        raise SpecError(f"{shown}: invalid YAML: nested too deeply") from None
    if too_big:
        raise SpecError(f"{shown}: the document expands to more than {MAX_VALUES} values through YAML aliases")
    return parse_pipeline(data, shown)


def load_pipeline_file(path: Path, display: str | None = None) -> PipelineSpec:
    shown = display or str(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SpecError(f"{shown}: cannot read: {e.strerror}") from None
    return parse_pipeline_bytes(raw, shown)


def pipeline_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_pipelines(directory: Path) -> list[PipelineSpec]:
    """Every pipeline in `directory`; all problems are gathered into one SpecError."""
    if not directory.is_dir():
        raise SpecError(f"{directory}: pipelines directory not found (set ETL_PIPELINES_DIR)")
    specs: list[PipelineSpec] = []
    errors: list[str] = []
    where: dict[str, str] = {}
    for path in pipeline_files(directory):
        shown = _display(path)
        try:
            spec = load_pipeline_file(path, shown)
        except SpecError as e:
            errors.append(str(e))
            continue
        if spec.name in where:
            errors.append(f"{shown}: name: pipeline {spec.name!r} is already defined in {where[spec.name]}")
            continue
        where[spec.name] = shown
        specs.append(spec)
    errors += _shared_targets(specs, where)
    if errors:
        raise SpecError("\n".join(errors))
    return specs


def _shared_targets(specs: list[PipelineSpec], files: dict[str, str]) -> list[str]:
    """A table loaded by two pipelines, unless both say it is shared: each would replace or
    delete the other's rows. Tables are told apart by warehouse as well as by name."""
    errors: list[str] = []
    claims: dict[tuple[Any, ...], tuple[str, str, Any]] = {}
    for spec in specs:
        wh = spec.warehouse
        where = (wh.kind, wh.url) if wh and (wh.kind != "postgres" or wh.url) else ("postgres", None)
        for i, s in enumerate(spec.sources):
            table = spec.target(s)
            claim = claims.setdefault((*where, table), (files[spec.name], spec.name, s))
            other_file, other_pipeline, other = claim
            if other_pipeline == spec.name or (other.load.shared and s.load.shared):
                continue
            errors.append(
                f"{files[spec.name]} (pipeline {spec.name}): sources[{i}].load.target: {table} is also "
                f"loaded by {other_file} (pipeline {other_pipeline}, source {other.name}); give each "
                "its own target, or set load.shared: true on both (upsert only)"
            )
    return errors


def json_schema() -> dict[str, Any]:
    schema = PipelineSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "etl-assets pipeline"
    return schema
