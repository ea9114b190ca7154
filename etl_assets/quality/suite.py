"""The spec's GX-run checks as one expectation suite per partition, and their outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from etl_assets.quality.describe import not_run, outcome
from etl_assets.quality.gx import CHECK_META_KEY, gx_context, gx_error, validate
from etl_assets.quality.results import SAMPLE_SIZE, CheckOutcome
from etl_assets.spec import (
    BetweenCheck,
    CheckSpec,
    ExpectationCheck,
    InSetCheck,
    NotNullCheck,
    RegexCheck,
    RowCountCheck,
    SourceBase,
    UniqueCheck,
    check_name,
)
from etl_assets.spec.expectations import build_expectation


def _expectation(gx: ModuleType, check: CheckSpec, key: list[str]) -> Any:
    expectation = _build(gx, check, key)
    expectation.meta = {**(expectation.meta or {}), CHECK_META_KEY: check_name(check)}
    return expectation


def _build(gx: ModuleType, check: CheckSpec, key: list[str]) -> Any:
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
    if isinstance(check, ExpectationCheck):
        return build_expectation(check.expectation, check.kwargs)
    raise TypeError(check)


def gx_input(frame: pd.DataFrame, checks: Sequence[CheckSpec], key: list[str]) -> pd.DataFrame:
    """Only the columns the checks read: GX's copy of a wide frame costs memory and time.

    A generic expectation may read any column, so it gets the whole frame; checks on a missing
    column never reach GX (see `_unreadable`).
    """
    cols: list[str] = []
    for c in checks:
        if isinstance(c, (NotNullCheck, BetweenCheck, InSetCheck, RegexCheck)):
            cols.append(c.column)
        elif isinstance(c, UniqueCheck):
            cols.extend(c.columns or key)
        elif not isinstance(c, RowCountCheck):
            return frame
    cols = list(dict.fromkeys(cols)) or list(frame.columns[:1])
    if any(c not in frame.columns for c in cols):
        return frame
    return frame[cols]


def run_suite(
    frame: pd.DataFrame, source: SourceBase, checks: Sequence[CheckSpec], complete: bool
) -> tuple[dict[str | None, Any], dict[str, Any]]:
    """GX's result for each check, by check name (from the expectation's meta), and its document."""
    gx, _ = gx_context()
    fmt: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}
    if complete:
        fmt = {"result_format": "COMPLETE", "partial_unexpected_count": SAMPLE_SIZE, "return_unexpected_index_query": False}
    expectations = [_expectation(gx, c, source.primary_key) for c in checks]
    data = gx_input(frame, checks, source.primary_key)
    return validate(data, f"{source.name}_{id(frame)}", expectations, fmt)


def gx_outcome(check: CheckSpec, source: SourceBase, frame: pd.DataFrame, res: Any) -> tuple[CheckOutcome, np.ndarray | None]:
    """The outcome of one check from its own GX result, and the rows it fails when quarantining."""
    if res is None:
        return not_run(check, source, frame, "great-expectations returned no result for this check"), None
    error = gx_error(res)
    if error:
        return not_run(check, source, frame, error), None
    r = res.result or {}
    o = outcome(
        check, source, bool(res.success),
        unexpected_count=int(r.get("unexpected_count") or 0),
        element_count=int(r.get("element_count") or len(frame)),
        samples=list(r.get("partial_unexpected_list") or [])[:SAMPLE_SIZE],
        observed=r.get("observed_value"),
    )
    mask = np.zeros(len(frame), dtype=bool)
    idx = [i for i in (r.get("unexpected_index_list") or []) if isinstance(i, (int, np.integer))]
    mask[np.asarray(idx, dtype=int)] = True
    return o, mask
