"""Check models: the data quality checks a source declares, validated when the spec loads."""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from etl_assets.spec.base import ColumnType, Strict, identifier, parse_duration
from etl_assets.spec.expectations import build_expectation


class RelationshipTarget(Strict):
    source: str
    column: str


class CheckBase(Strict):
    """What every check has: its name, severity, thresholds and the columns it reads."""

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
    if TYPE_CHECKING:
        type: str  # each check's own Literal tag, the discriminator

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
    def _quarantine_rows_only(self) -> CheckBase:
        kind = self.type
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
        return None if v is None else identifier(v, "check name")

    def default_name(self) -> str:
        raise NotImplementedError  # every check kind names itself

    def column_fields(self) -> list[tuple[str, str]]:
        """(field, column) for each column the check names, so an error can point at the field."""
        return []

    def columns_used(self) -> list[str]:
        return [col for _, col in self.column_fields()]


class NotNullCheck(CheckBase):
    row_level: ClassVar[bool] = True
    type: Literal["not_null"]
    column: str

    def default_name(self) -> str:
        return f"not_null_{self.column}"

    def column_fields(self) -> list[tuple[str, str]]:
        return [("column", self.column)] if self.column else []


class UniqueCheck(CheckBase):
    type: Literal["unique"]
    columns: list[str] | None = None  # default: the primary key

    def default_name(self) -> str:
        return "unique_" + "_".join(self.columns) if self.columns else "unique_key"

    def column_fields(self) -> list[tuple[str, str]]:
        return [(f"columns[{i}]", c) for i, c in enumerate(self.columns or [])]


class BetweenCheck(CheckBase):
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

    def column_fields(self) -> list[tuple[str, str]]:
        return [("column", self.column)] if self.column else []


class InSetCheck(CheckBase):
    row_level: ClassVar[bool] = True
    type: Literal["in_set"]
    column: str
    values: list[Any] = Field(min_length=1)

    def default_name(self) -> str:
        return f"in_set_{self.column}"

    def column_fields(self) -> list[tuple[str, str]]:
        return [("column", self.column)] if self.column else []


class RegexCheck(CheckBase):
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

    def column_fields(self) -> list[tuple[str, str]]:
        return [("column", self.column)] if self.column else []


class RowCountCheck(CheckBase):
    type: Literal["row_count"]
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    def default_name(self) -> str:
        return "row_count"


class SchemaCheck(CheckBase):
    """The source's column set (and types): exactly these, or at least these."""

    type: Literal["schema"]
    mode: Literal["exact", "at_least"] = "at_least"
    columns: dict[str, ColumnType] | list[str] | None = None  # default: the declared columns

    def default_name(self) -> str:
        return "schema"


class RelationshipCheck(CheckBase):
    """Every value of `column` exists in another source's loaded table."""

    row_level: ClassVar[bool] = True
    type: Literal["relationship"]
    column: str
    to: RelationshipTarget

    def default_name(self) -> str:
        return f"relationship_{self.column}"

    def column_fields(self) -> list[tuple[str, str]]:
        return [("column", self.column)] if self.column else []


class RowCountAnomalyCheck(CheckBase):
    """This partition's rows against the median of the last `partitions` loaded ones."""

    type: Literal["row_count_anomaly"]
    partitions: int = Field(default=8, ge=1, le=100)
    min_ratio: float = Field(default=0.5, ge=0)
    max_ratio: float | None = Field(default=2.0, gt=0)
    min_history: int = Field(default=3, ge=1)

    def default_name(self) -> str:
        return "row_count_anomaly"


class FreshnessCheck(CheckBase):
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

    def column_fields(self) -> list[tuple[str, str]]:
        return [("column", self.column)] if self.column else []


class ExpectationCheck(CheckBase):
    """Any great-expectations 1.x expectation by class name, with its keyword arguments."""

    type: Literal["expectation"]
    expectation: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _exists(self) -> ExpectationCheck:
        # great_expectations is imported here, on first use: only specs that use this pay for it.
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


def check_name(check: CheckBase) -> str:
    return check.name or check.default_name()


def missing_column(column: str, columns: list[str]) -> str:
    """Why a check cannot read `column`: the one sentence spec errors and check results share."""
    hint = difflib.get_close_matches(column, columns, n=1)
    return f"column {column!r} is not in the source's columns: {', '.join(columns)}" + (
        f" (did you mean {hint[0]!r}?)" if hint else ""
    )

