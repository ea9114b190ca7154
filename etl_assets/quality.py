"""Data quality: the spec's checks as great-expectations 1.x suites and Dagster asset checks.

great_expectations is imported inside functions: it takes seconds to import and only
validation steps need it, so definition loading stays fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

from etl_assets.spec import (
    BetweenCheck,
    InSetCheck,
    NotNullCheck,
    RegexCheck,
    RowCountCheck,
    UniqueCheck,
    check_name,
)

SAMPLE_SIZE = 10


@dataclass
class CheckOutcome:
    name: str
    severity: str  # error | warn
    passed: bool
    description: str
    unexpected_count: int = 0
    element_count: int = 0
    samples: list[Any] = field(default_factory=list)
    observed: Any = None

    def merge(self, other: CheckOutcome) -> CheckOutcome:
        return CheckOutcome(
            self.name,
            self.severity,
            self.passed and other.passed,
            self.description,
            self.unexpected_count + other.unexpected_count,
            self.element_count + other.element_count,
            (self.samples + other.samples)[:SAMPLE_SIZE],
            other.observed if other.observed is not None else self.observed,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "severity": self.severity,
            "passed": self.passed,
            "description": self.description,
            "unexpected_count": self.unexpected_count,
            "element_count": self.element_count,
            "samples": [_jsonable(v) for v in self.samples],
            "observed": _jsonable(self.observed),
        }


def describe(check: Any, key: list[str]) -> str:
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
    raise TypeError(check)


def check_specs(asset_key: dg.AssetKey, source: Any) -> list[dg.AssetCheckSpec]:
    """ERROR checks block: a failure stops `loaded`, so bad data never reaches the warehouse."""
    return [
        dg.AssetCheckSpec(
            name=check_name(c),
            asset=asset_key,
            description=f"[{c.severity}] {describe(c, source.primary_key)}",
            blocking=c.severity == "error",
        )
        for c in source.checks
    ]


def _expectation(gx: Any, check: Any, key: list[str]) -> Any:
    E = gx.expectations
    if isinstance(check, NotNullCheck):
        return E.ExpectColumnValuesToNotBeNull(column=check.column)
    if isinstance(check, UniqueCheck):
        cols = check.columns or key
        if len(cols) == 1:
            return E.ExpectColumnValuesToBeUnique(column=cols[0])
        return E.ExpectCompoundColumnsToBeUnique(column_list=cols)
    if isinstance(check, BetweenCheck):
        return E.ExpectColumnValuesToBeBetween(
            column=check.column, min_value=check.min, max_value=check.max
        )
    if isinstance(check, InSetCheck):
        return E.ExpectColumnValuesToBeInSet(column=check.column, value_set=check.values)
    if isinstance(check, RegexCheck):
        return E.ExpectColumnValuesToMatchRegex(column=check.column, regex=check.pattern)
    if isinstance(check, RowCountCheck):
        return E.ExpectTableRowCountToBeBetween(min_value=check.min, max_value=check.max)
    raise TypeError(check)


_context: Any = None


def _gx() -> tuple[Any, Any]:
    global _context
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if _context is None:
        _context = gx.get_context(mode="ephemeral")
        _context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return gx, _context


def _gx_frame(frame: pd.DataFrame) -> pd.DataFrame:
    # GX compares with plain Python values; pandas' nullable NA confuses some expectations.
    out = frame.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.StringDtype):
            out[c] = out[c].astype(object).where(out[c].notna(), None)
        elif str(out[c].dtype) in ("Int64", "Float64"):
            out[c] = out[c].astype("float64") if out[c].isna().any() else out[c].astype(str(out[c].dtype).lower())
        elif str(out[c].dtype) == "boolean":
            out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out


def run_checks(frame: pd.DataFrame, source: Any) -> list[CheckOutcome]:
    """Validate one partition's frame against the source's checks, in one GX suite run."""
    if not source.checks:
        return []
    gx, ctx = _gx()
    name = f"{source.name}_{id(frame)}"
    ds = ctx.data_sources.add_or_update_pandas(name)
    asset = ds.add_dataframe_asset("frame")
    batch_def = asset.add_batch_definition_whole_dataframe("whole")
    batch = batch_def.get_batch(batch_parameters={"dataframe": _gx_frame(frame)})
    suite = gx.ExpectationSuite(
        name=name, expectations=[_expectation(gx, c, source.primary_key) for c in source.checks]
    )
    result = batch.validate(
        suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}
    )
    ctx.data_sources.delete(name)
    outcomes = []
    for check, res in zip(source.checks, result.results):
        r = res.result or {}
        outcomes.append(
            CheckOutcome(
                name=check_name(check),
                severity=check.severity,
                passed=bool(res.success),
                description=describe(check, source.primary_key),
                unexpected_count=int(r.get("unexpected_count") or 0),
                element_count=int(r.get("element_count") or len(frame)),
                samples=list(r.get("partial_unexpected_list") or [])[:SAMPLE_SIZE],
                observed=r.get("observed_value"),
            )
        )
    return outcomes


def merge_outcomes(per_partition: list[list[CheckOutcome]]) -> list[CheckOutcome]:
    merged: dict[str, CheckOutcome] = {}
    for outcomes in per_partition:
        for o in outcomes:
            merged[o.name] = merged[o.name].merge(o) if o.name in merged else o
    return list(merged.values())


def check_result(asset_key: dg.AssetKey, outcome: CheckOutcome, partitions: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if outcome.severity == "error" else dg.AssetCheckSeverity.WARN,
        description=outcome.description,
        metadata={
            "unexpected_count": dg.MetadataValue.int(outcome.unexpected_count),
            "element_count": dg.MetadataValue.int(outcome.element_count),
            "sample_values": dg.MetadataValue.json([_jsonable(v) for v in outcome.samples]),
            "observed_value": dg.MetadataValue.text(str(_jsonable(outcome.observed))),
            "partitions": dg.MetadataValue.text(", ".join(partitions)),
        },
    )


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if hasattr(v, "isoformat"):
        return v.isoformat()
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, (int, float)):
        return v
    return str(v)
