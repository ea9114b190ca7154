"""Checks evaluated here rather than by GX: they need the warehouse (relationship,
row_count_anomaly), the partition's window (freshness) or the raw column types (schema)."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from etl_assets.quality.describe import outcome
from etl_assets.quality.results import SAMPLE_SIZE, CheckContext, CheckOutcome
from etl_assets.spec import (
    FreshnessCheck,
    RelationshipCheck,
    RowCountAnomalyCheck,
    SchemaCheck,
    SourceBase,
    parse_duration,
)
from etl_assets.transform.normalize import infer_type_name

if TYPE_CHECKING:
    from etl_assets.warehouses.base import BaseWarehouse

def schema(check: SchemaCheck, source: SourceBase, ctx: CheckContext) -> CheckOutcome:
    expected: dict[str, str]
    if isinstance(check.columns, dict):
        expected = dict(check.columns)
    elif isinstance(check.columns, list):
        expected = {c: "" for c in check.columns}
    else:
        expected = {c.source_name: c.type for c in source.columns or []}  # declared: see the spec
    have = ctx.raw_columns
    missing = [c for c in expected if c not in have] or list(ctx.missing_columns)
    extra = [c for c in have if c not in expected] if check.mode == "exact" else []
    mistyped = []
    for c, want in expected.items():
        got = have.get(c)
        if want and got and got != "string" and infer_type_name(got) not in (want, None):
            mistyped.append(f"{c} is {infer_type_name(got)}, expected {want}")
    problems = (
        [f"missing column(s): {', '.join(missing)}"] if missing else []
    ) + ([f"unexpected column(s): {', '.join(extra)}"] if extra else []) + mistyped
    return outcome(
        check, source, not problems,
        unexpected_count=len(missing) + len(extra) + len(mistyped),
        element_count=len(expected),
        samples=(missing + extra)[:SAMPLE_SIZE],
        observed=sorted(have),
        message="; ".join(problems) or None,
    )


def relationship(check: RelationshipCheck, source: SourceBase, frame: pd.DataFrame, ctx: CheckContext) -> tuple[CheckOutcome, np.ndarray]:
    """Against what the warehouse holds now; a table not created yet holds no values."""
    values = frame[check.column]
    present = values.notna().to_numpy()
    distinct = sorted({str(v) for v in values[present]})
    table = ctx.targets[check.to.source]
    orphans: set[str] = set()
    exists = bool(distinct) and _warehouse(ctx).table_exists(table)
    if distinct:
        orphans = _warehouse(ctx).missing_values(table, check.to.column, distinct) if exists else set(distinct)
    bad = present & values.astype("string").isin(list(orphans)).fillna(False).to_numpy(dtype=bool)
    notes = [f"{int(bad.sum())} row(s) reference {check.to.source}.{check.to.column} values that were never loaded"] if bad.any() else []
    if check.to.source in ctx.not_loaded:
        held = f"what {table} held" if exists or not distinct else f"{table}, which does not exist yet"
        notes.append(f"{check.to.source} had not loaded partition {ctx.partition} in this run when this check ran; "
                     f"checked against {held}")
    return (
        outcome(check, source, not bad.any(), unexpected_count=int(bad.sum()), element_count=int(present.sum()),
                 samples=sorted(orphans)[:SAMPLE_SIZE], observed=f"{len(orphans)} orphan value(s)",
                 message="; ".join(notes) or None),
        bad,
    )


def anomaly(check: RowCountAnomalyCheck, source: SourceBase, frame: pd.DataFrame, ctx: CheckContext) -> CheckOutcome:
    history = _history(check, ctx)
    counts = [n for _, n in history]
    rows = len(frame)
    if len(counts) < check.min_history:
        return outcome(check, source, True, element_count=rows,
                        observed=f"{rows} rows; only {len(counts)} earlier partition(s), need {check.min_history}")
    median = statistics.median(counts)
    ratio = rows / median if median else float("inf")
    ok = ratio >= check.min_ratio and (check.max_ratio is None or ratio <= check.max_ratio)
    return outcome(
        check, source, ok, unexpected_count=0 if ok else 1, element_count=rows,
        observed={"rows": rows, "median": median, "ratio": round(ratio, 3), "history": counts},
        message=None if ok else f"{rows} rows is {ratio:.2f}× the median {median:g} of the last {len(counts)} partitions",
    )


def _warehouse(ctx: CheckContext) -> BaseWarehouse:
    """The warehouse the lookups run on; relationship and anomaly checks cannot run without it."""
    if ctx.warehouse is None:
        raise ValueError("relationship and row_count_anomaly checks need CheckContext.warehouse")
    return ctx.warehouse


def _history(check: RowCountAnomalyCheck, ctx: CheckContext) -> list[tuple[str, int]]:
    """Rows of the partitions loaded before this one, newest first; none before the first load."""
    target, partition = ctx.own_target, ctx.partition
    if not target or partition is None or not _warehouse(ctx).table_exists(target):
        return []
    return _warehouse(ctx).partition_counts(target, partition, check.partitions, inclusive=False)


def freshness(check: FreshnessCheck, source: SourceBase, frame: pd.DataFrame, ctx: CheckContext) -> CheckOutcome:
    column = check.column or source.timestamp_column
    newest = frame[column].max() if len(frame) else None
    limit = pd.Timestamp(ctx.window_end) - parse_duration(check.max_age)
    ok = newest is not None and not pd.isna(newest) and pd.Timestamp(newest) >= limit
    return outcome(
        check, source, bool(ok), unexpected_count=0 if ok else 1, element_count=len(frame),
        observed=str(newest) if newest is not None else None,
        message=None if ok else (
            f"newest {column} is {newest}, older than {check.max_age} before the window end {pd.Timestamp(ctx.window_end).isoformat()}"
            if newest is not None else "no rows in the window"
        ),
    )
