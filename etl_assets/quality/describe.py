"""What each check says it checks, as Dagster check specs and in every outcome."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd

from etl_assets.quality.results import CheckOutcome
from etl_assets.spec import (
    BetweenCheck,
    CheckBase,
    ExpectationCheck,
    FreshnessCheck,
    InSetCheck,
    NotNullCheck,
    RegexCheck,
    RelationshipCheck,
    RowCountAnomalyCheck,
    RowCountCheck,
    SchemaCheck,
    SourceBase,
    UniqueCheck,
    check_name,
)


def describe(check: CheckBase, key: list[str]) -> str:
    if isinstance(check, NotNullCheck):
        return f"{check.column} is never null"
    if isinstance(check, UniqueCheck):
        return f"({', '.join(check.columns or key)}) is unique"
    if isinstance(check, BetweenCheck):
        lo = "-inf" if check.min is None else check.min
        hi = "inf" if check.max is None else check.max
        return f"{check.column} is between {lo} and {hi}"
    if isinstance(check, InSetCheck):
        return f"{check.column} is one of {check.values}"
    if isinstance(check, RegexCheck):
        return f"{check.column} matches /{check.pattern}/"
    if isinstance(check, RowCountCheck):
        return f"row count is between {check.min or 0} and {check.max if check.max is not None else 'inf'}"
    if isinstance(check, SchemaCheck):
        return f"the source has {'exactly' if check.mode == 'exact' else 'at least'} the declared columns"
    if isinstance(check, RelationshipCheck):
        return f"every {check.column} exists in {check.to.source}.{check.to.column}"
    if isinstance(check, RowCountAnomalyCheck):
        hi = "inf" if check.max_ratio is None else check.max_ratio
        return f"rows are {check.min_ratio}–{hi}× the median of the last {check.partitions} partitions"
    if isinstance(check, FreshnessCheck):
        return f"the newest {check.column or 'timestamp'} is within {check.max_age} of the window end"
    if isinstance(check, ExpectationCheck):
        return f"{check.expectation}({', '.join(f'{k}={v!r}' for k, v in check.kwargs.items())})"
    raise TypeError(check)


def check_specs(asset_key: dg.AssetKey, source: SourceBase) -> list[dg.AssetCheckSpec]:
    """ERROR checks block: a failure stops `loaded`, so bad data never reaches the warehouse."""
    return [
        dg.AssetCheckSpec(
            name=check_name(c),
            asset=asset_key,
            description=f"[{c.severity}] {describe(c, source.primary_key)}" + (
                f" (warn_if {c.warn_if or '> 0'}" + (f", error_if {c.error_if}" if c.error_if else "") + ")"
                if c.graded else ""
            ),
            blocking=c.blocking,
        )
        for c in source.checks
    ]


def outcome(check: CheckBase, source: SourceBase, passed: bool, **kw: Any) -> CheckOutcome:
    return CheckOutcome(
        name=check_name(check), severity=check.severity, passed=passed,
        description=describe(check, source.primary_key), **kw,
    )


def not_run(check: CheckBase, source: SourceBase, frame: pd.DataFrame, message: str) -> CheckOutcome:
    """A check that could not be evaluated fails; no row of a row-level check passed it."""
    rows = len(frame) if check.is_row_level() else 0
    return outcome(check, source, False, unexpected_count=rows, element_count=len(frame), message=message)
