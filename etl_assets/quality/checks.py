"""One partition's checks: which can run, GX's and the local ones, and the rows to set aside."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from etl_assets.quality import local
from etl_assets.quality.describe import describe, not_run
from etl_assets.quality.results import CheckContext, CheckOutcome, PartitionQuality, Reused, grade
from etl_assets.quality.suite import gx_outcome, run_suite
from etl_assets.spec import (
    CheckBase,
    CheckSpec,
    FreshnessCheck,
    RelationshipCheck,
    RowCountAnomalyCheck,
    SchemaCheck,
    SourceBase,
    UniqueCheck,
    check_name,
    missing_column,
)

# Checks evaluated here rather than by a GX suite.
_LOCAL = (RelationshipCheck, RowCountAnomalyCheck, FreshnessCheck, SchemaCheck)


def frame_only(check: CheckSpec) -> bool:
    """Whether a check's outcome follows from the frame alone: the GX-run ones. The local ones
    read the warehouse, the window or the raw columns, so they are always evaluated again."""
    return not isinstance(check, _LOCAL)


def _columns_read(check: CheckSpec, source: SourceBase) -> list[str]:
    if isinstance(check, UniqueCheck):
        return list(check.columns or source.primary_key)
    if isinstance(check, FreshnessCheck):
        return [check.column or source.timestamp_column or ""]  # the spec requires one
    return check.columns_used()


def _unreadable(check: CheckSpec, source: SourceBase, frame: pd.DataFrame) -> str | None:
    """Why `check` cannot run on `frame` (a column it reads is not there), or None."""
    have = [c for c in frame.columns if c != "record_hash"]
    for col in _columns_read(check, source):
        if col not in frame.columns:
            return missing_column(col, have)
    return None


# A failing quarantine or store_failures check's rows and the reason they carry.
Failing = dict[str, tuple[np.ndarray, str]]


def _collects(check: CheckBase) -> bool:
    """Whether a check's failing rows are wanted: to set aside, or to store."""
    return check.severity == "quarantine" or check.store_failures


def _set_aside(check: CheckBase, source: SourceBase, mask: np.ndarray, why: str | None = None) -> tuple[np.ndarray, str]:
    return mask, describe(check, source.primary_key) + " failed" + (f": {why}" if why else "")


def _evaluate(
    frame: pd.DataFrame, source: SourceBase, ctx: CheckContext, skip: Collection[str]
) -> tuple[dict[str, CheckOutcome], Failing, dict[str, Any]]:
    """Every check's outcome by name, but those in `skip`; the rows each failing quarantine
    check sets aside."""
    outcomes: dict[str, CheckOutcome] = {}
    failing: Failing = {}
    runnable: list[CheckSpec] = []
    for check in source.checks:
        if check_name(check) in skip:
            continue
        problem = _unreadable(check, source, frame)
        if problem is None:
            runnable.append(check)
            continue
        outcomes[check_name(check)] = not_run(check, source, frame, problem)
        if _collects(check):
            failing[check_name(check)] = _set_aside(check, source, np.ones(len(frame), dtype=bool), problem)
    gx_checks = [c for c in runnable if not isinstance(c, _LOCAL)]
    document: dict[str, Any] = {}
    if gx_checks:
        complete = any(_collects(c) for c in gx_checks)
        results, document = run_suite(frame, source, gx_checks, complete)
        for check in gx_checks:
            o, mask = gx_outcome(check, source, frame, results.get(check_name(check)))
            outcomes[o.name] = o
            if _collects(check) and not o.passed:
                # No row passed a check that could not run, so none loads unverified.
                failing[o.name] = (
                    _set_aside(check, source, mask) if mask is not None
                    else _set_aside(check, source, np.ones(len(frame), dtype=bool), o.message)
                )
    for check in runnable:
        if isinstance(check, SchemaCheck):
            outcomes[check_name(check)] = local.schema(check, source, ctx)
        elif isinstance(check, RelationshipCheck):
            o, bad = local.relationship(check, source, frame, ctx)
            outcomes[o.name] = o
            if _collects(check) and bad.any():
                failing[o.name] = _set_aside(check, source, bad)
        elif isinstance(check, RowCountAnomalyCheck):
            outcomes[check_name(check)] = local.anomaly(check, source, frame, ctx)
        elif isinstance(check, FreshnessCheck):
            outcomes[check_name(check)] = local.freshness(check, source, frame, ctx)
    return outcomes, failing, document


def run_checks(
    frame: pd.DataFrame, source: SourceBase, ctx: CheckContext | None = None, reused: Reused | None = None
) -> PartitionQuality:
    """Validate one partition's frame against the source's checks.

    With `reused` (an earlier validation of this very content, see `quality.reuse`), its
    outcomes stand for the checks they name and GX does not run for them; the caller reuses
    only checks that set no rows aside, so the masks below stay complete.
    """
    ctx = ctx or CheckContext()
    keep = np.ones(len(frame), dtype=bool)
    empty_q = frame.iloc[0:0].assign(_check=pd.Series(dtype="string"), _reason=pd.Series(dtype="string"))
    if not source.checks:
        return PartitionQuality([], empty_q, keep, {}, empty_q)
    kept = dict(reused.outcomes) if reused else {}
    outcomes, failing, document = _evaluate(frame, source, ctx, kept)
    if reused and not document:
        document = reused.document
    ordered = [
        replace(kept[n]) if (n := check_name(c)) in kept else grade(c, outcomes[n], len(frame))
        for c in source.checks
    ]
    set_aside = {n: failing[n] for c in source.checks if c.severity == "quarantine" and (n := check_name(c)) in failing}
    stored = {n: failing[n] for c in source.checks if c.store_failures and (n := check_name(c)) in failing}
    quarantine = _failing_rows(frame, source, set_aside, empty_q)
    if set_aside:
        keep = ~np.logical_or.reduce([mask for mask, _ in set_aside.values()])
    document = {
        "partition": ctx.partition,
        "source": source.name,
        "great_expectations": document,
        "checks": [o.as_dict() for o in ordered],
        "rows": len(frame),
        "rows_quarantined": int((~keep).sum()),
    }
    return PartitionQuality(ordered, quarantine, keep, document, _failing_rows(frame, source, stored, empty_q))


def _failing_rows(frame: pd.DataFrame, source: SourceBase, failing: Failing, empty: pd.DataFrame) -> pd.DataFrame:
    """The rows any of `failing`'s checks fail, once each, naming every check and reason."""
    if not failing:
        return empty
    names = [n for n in map(check_name, source.checks) if n in failing]  # the spec's order
    any_bad = np.logical_or.reduce([failing[n][0] for n in names])
    checks, reasons = [], []
    for i in np.flatnonzero(any_bad):
        hit = [n for n in names if failing[n][0][i]]
        checks.append(", ".join(hit))
        reasons.append("; ".join(failing[n][1] for n in hit))
    return frame.iloc[np.flatnonzero(any_bad)].assign(
        _check=pd.array(checks, dtype="string"), _reason=pd.array(reasons, dtype="string")
    ).reset_index(drop=True)
