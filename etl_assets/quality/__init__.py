"""Data quality: the spec's checks as great-expectations 1.x suites and Dagster asset checks.

Column checks, `expectation` (any GX expectation by name) and the column-set part of `schema`
run through GX. `relationship` and `row_count_anomaly` need the warehouse and `freshness` the
partition's window, so they are evaluated here directly. Rows failing a check with severity
`quarantine` are set aside instead of blocking the load; those failing a `store_failures` check
are kept for `<table>__failures` and load all the same.

A graded check (`warn_if`, `error_if`) passes, warns or blocks by how many of the partition's
rows fail it. Its Dagster check is blocking only with `error_if`; below that threshold its
result carries severity WARN, which Dagster 1.13 does not treat as blocking.

great_expectations is imported inside functions: it takes seconds to import and only
validation steps need it, so definition loading stays fast.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from etl_assets.spec import (
    BetweenCheck,
    ExpectationCheck,
    FreshnessCheck,
    InSetCheck,
    NotNullCheck,
    RegexCheck,
    RelationshipCheck,
    RowCountAnomalyCheck,
    RowCountCheck,
    SchemaCheck,
    UniqueCheck,
    check_name,
    missing_column,
    parse_duration,
    parse_threshold,
)

SAMPLE_SIZE = 10
# Checks evaluated here rather than by a GX suite.
_LOCAL = (RelationshipCheck, RowCountAnomalyCheck, FreshnessCheck, SchemaCheck)
# The expectation `meta` key that ties a GX result to its check: GX 1.x does not return
# results in suite order (expectations it cannot evaluate come first).
CHECK_META_KEY = "etl_assets_check"


@dataclass
class CheckOutcome:
    name: str
    severity: str  # error | warn | quarantine
    passed: bool
    description: str
    unexpected_count: int = 0
    element_count: int = 0
    samples: list[Any] = field(default_factory=list)
    observed: Any = None
    message: str | None = None
    # Graded checks: pass | warn | error, and the threshold crossed (`error_if > 1%`).
    grade: str | None = None
    threshold: str | None = None

    @property
    def blocks(self) -> bool:
        return not self.passed and self.severity == "error" and self.grade != "warn"

    def merge(self, other: CheckOutcome) -> CheckOutcome:
        worst = max(self, other, key=lambda o: _GRADES.index(o.grade or "pass"))
        return CheckOutcome(
            self.name,
            self.severity,
            self.passed and other.passed,
            self.description,
            self.unexpected_count + other.unexpected_count,
            self.element_count + other.element_count,
            (self.samples + other.samples)[:SAMPLE_SIZE],
            other.observed if other.observed is not None else self.observed,
            "; ".join(m for m in (self.message, other.message) if m) or None,
            worst.grade,
            worst.threshold,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            # What this result is: a graded error check that only warned is a warning.
            "severity": "warn" if self.grade == "warn" else self.severity,
            "declared_severity": self.severity,
            "passed": self.passed,
            "description": self.description,
            "unexpected_count": self.unexpected_count,
            "element_count": self.element_count,
            "samples": [_jsonable(v) for v in self.samples],
            "observed": _jsonable(self.observed),
            "message": self.message,
            "grade": self.grade,
            "threshold": self.threshold,
        }


_GRADES = ["pass", "warn", "error"]


def _crossed(threshold: str, failing: int, rows: int) -> bool:
    op, value, share = parse_threshold(threshold)
    amount = (100.0 * failing / rows if rows else 0.0) if share else float(failing)
    return amount >= value if op == ">=" else amount > value


def grade(check: Any, outcome: CheckOutcome, rows: int) -> CheckOutcome:
    """A graded check's outcome by how many of the partition's `rows` failed it.

    Above error_if it blocks; above warn_if (or, with only error_if, any failing row) it warns;
    otherwise it passes, whatever number of rows failed below the thresholds.
    """
    if not check.graded:
        return outcome
    failing = outcome.unexpected_count
    level, threshold = "pass", None
    if check.error_if is not None and _crossed(check.error_if, failing, rows):
        level, threshold = "error", f"error_if {check.error_if}"
    elif check.warn_if is not None and _crossed(check.warn_if, failing, rows):
        level, threshold = "warn", f"warn_if {check.warn_if}"
    elif check.warn_if is None and failing:
        level, threshold = "warn", "any failing row (no warn_if)"
    outcome.grade, outcome.threshold = level, threshold
    outcome.passed = level == "pass"
    if threshold:
        share = f" ({100.0 * failing / rows:.3g}% of {rows})" if rows else ""
        note = f"{failing} failing row(s){share} crossed {threshold}"
        outcome.message = "; ".join(m for m in (note, outcome.message) if m)
    return outcome


@dataclass
class PartitionQuality:
    """One partition's check outcomes, the rows to quarantine and the GX result document."""

    outcomes: list[CheckOutcome]
    quarantine: pd.DataFrame  # the failing rows, with _check and _reason
    keep: np.ndarray  # boolean mask of rows that load
    document: dict[str, Any]
    # Rows failing store_failures checks, with _check and _reason: for <table>__failures.
    failures: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class CheckContext:
    """What checks beyond the frame itself may consult."""

    window_start: Any = None
    window_end: Any = None
    partition: str | None = None
    missing_columns: list[str] = field(default_factory=list)
    raw_columns: dict[str, str] = field(default_factory=dict)  # source column -> raw dtype
    # The warehouse (an etl_assets.warehouses.postgres.BaseWarehouse, PostgreSQL or ClickHouse): it runs
    # the relationship and row-count-anomaly lookups in its own SQL dialect.
    warehouse: Any = None
    targets: dict[str, str] = field(default_factory=dict)  # source name -> schema.table
    own_target: str | None = None
    # Sources a relationship check refers to that did not load this partition in this run:
    # a warn check does not wait for them, so it says what it checked against.
    not_loaded: set[str] = field(default_factory=set)


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


def check_specs(asset_key: dg.AssetKey, source: Any) -> list[dg.AssetCheckSpec]:
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


def build_expectation(name: str, kwargs: dict[str, Any]) -> Any:
    """A GX expectation from its class name; a clear ValueError for a bad name or argument."""
    gx, _ = _gx()
    cls = getattr(gx.expectations, name, None)
    if not isinstance(cls, type):
        import difflib

        known = [n for n in dir(gx.expectations) if n.startswith("Expect")]
        hint = difflib.get_close_matches(name, known, n=1)
        raise ValueError(
            f"unknown great-expectations expectation {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        )
    try:
        return cls(**kwargs)
    except Exception as e:  # pydantic's error for a bad argument, reduced to its first line
        first = str(e).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:3]) if len(first) > 1 else first[0] if first else ""
        raise ValueError(f"invalid arguments for {name}: {detail}") from None


def _expectation(gx: Any, check: Any, key: list[str]) -> Any:
    expectation = _build(gx, check, key)
    expectation.meta = {**(expectation.meta or {}), CHECK_META_KEY: check_name(check)}
    return expectation


def _build(gx: Any, check: Any, key: list[str]) -> Any:
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


def _gx_input(frame: pd.DataFrame, checks: list[Any], key: list[str]) -> pd.DataFrame:
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


def _run_gx(frame: pd.DataFrame, source: Any, checks: list[Any], complete: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """GX's result for each check, by check name (from the expectation's meta), and its document."""
    gx, ctx = _gx()
    name = f"{source.name}_{id(frame)}"
    ds = ctx.data_sources.add_or_update_pandas(name)
    data = _gx_frame(_gx_input(frame, checks, source.primary_key))
    batch = (
        ds.add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": data})
    )
    suite = gx.ExpectationSuite(name=name, expectations=[_expectation(gx, c, source.primary_key) for c in checks])
    fmt: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}
    if complete:
        fmt = {"result_format": "COMPLETE", "partial_unexpected_count": SAMPLE_SIZE, "return_unexpected_index_query": False}
    result = batch.validate(suite, result_format=fmt)
    ctx.data_sources.delete(name)
    # GX's batch objects reference each other in cycles that hold the frame until a full
    # garbage collection; emptying it now keeps a long range at one partition's memory.
    data.drop(columns=list(data.columns), inplace=True)
    try:
        document = result.to_json_dict()
    except Exception:
        document = {"success": result.success}
    by_check = {(r.expectation_config.meta or {}).get(CHECK_META_KEY): r for r in result.results}
    return by_check, document


def _outcome(check: Any, source: Any, passed: bool, **kw: Any) -> CheckOutcome:
    return CheckOutcome(
        name=check_name(check), severity=check.severity, passed=passed,
        description=describe(check, source.primary_key), **kw,
    )


def _schema(check: SchemaCheck, source: Any, ctx: CheckContext) -> CheckOutcome:
    if isinstance(check.columns, dict):
        expected = dict(check.columns)
    elif isinstance(check.columns, list):
        expected = {c: "" for c in check.columns}
    else:
        expected = {c.source_name: c.type for c in source.columns}
    have = ctx.raw_columns
    missing = [c for c in expected if c not in have] or list(ctx.missing_columns)
    extra = [c for c in have if c not in expected] if check.mode == "exact" else []
    mistyped = []
    from etl_assets.transform.normalize import infer_type_name

    for c, want in expected.items():
        got = have.get(c)
        if want and got and got != "string" and infer_type_name(got) not in (want, None):
            mistyped.append(f"{c} is {infer_type_name(got)}, expected {want}")
    problems = (
        [f"missing column(s): {', '.join(missing)}"] if missing else []
    ) + ([f"unexpected column(s): {', '.join(extra)}"] if extra else []) + mistyped
    return _outcome(
        check, source, not problems,
        unexpected_count=len(missing) + len(extra) + len(mistyped),
        element_count=len(expected),
        samples=(missing + extra)[:SAMPLE_SIZE],
        observed=sorted(have),
        message="; ".join(problems) or None,
    )


def _relationship(check: RelationshipCheck, source: Any, frame: pd.DataFrame, ctx: CheckContext) -> tuple[CheckOutcome, np.ndarray]:
    """Against what the warehouse holds now; a table not created yet holds no values."""
    values = frame[check.column]
    present = values.notna().to_numpy()
    distinct = sorted({str(v) for v in values[present]})
    table = ctx.targets[check.to.source]
    orphans: set[str] = set()
    exists = bool(distinct) and ctx.warehouse.table_exists(table)
    if distinct:
        orphans = ctx.warehouse.missing_values(table, check.to.column, distinct) if exists else set(distinct)
    bad = present & values.astype("string").isin(list(orphans)).fillna(False).to_numpy(dtype=bool)
    notes = [f"{int(bad.sum())} row(s) reference {check.to.source}.{check.to.column} values that were never loaded"] if bad.any() else []
    if check.to.source in ctx.not_loaded:
        held = f"what {table} held" if exists or not distinct else f"{table}, which does not exist yet"
        notes.append(f"{check.to.source} had not loaded partition {ctx.partition} in this run when this check ran; "
                     f"checked against {held}")
    return (
        _outcome(check, source, not bad.any(), unexpected_count=int(bad.sum()), element_count=int(present.sum()),
                 samples=sorted(orphans)[:SAMPLE_SIZE], observed=f"{len(orphans)} orphan value(s)",
                 message="; ".join(notes) or None),
        bad,
    )


def _anomaly(check: RowCountAnomalyCheck, source: Any, frame: pd.DataFrame, ctx: CheckContext) -> CheckOutcome:
    history = ctx.warehouse.partition_counts(
        ctx.own_target, ctx.partition, check.partitions, inclusive=False
    ) if ctx.own_target and _exists(ctx) else []
    counts = [n for _, n in history]
    rows = len(frame)
    if len(counts) < check.min_history:
        return _outcome(check, source, True, element_count=rows,
                        observed=f"{rows} rows; only {len(counts)} earlier partition(s), need {check.min_history}")
    median = statistics.median(counts)
    ratio = rows / median if median else float("inf")
    ok = ratio >= check.min_ratio and (check.max_ratio is None or ratio <= check.max_ratio)
    return _outcome(
        check, source, ok, unexpected_count=0 if ok else 1, element_count=rows,
        observed={"rows": rows, "median": median, "ratio": round(ratio, 3), "history": counts},
        message=None if ok else f"{rows} rows is {ratio:.2f}× the median {median:g} of the last {len(counts)} partitions",
    )


def _exists(ctx: CheckContext) -> bool:
    return bool(ctx.warehouse.table_exists(ctx.own_target))


def _freshness(check: FreshnessCheck, source: Any, frame: pd.DataFrame, ctx: CheckContext) -> CheckOutcome:
    column = check.column or source.timestamp_column
    newest = frame[column].max() if len(frame) else None
    limit = pd.Timestamp(ctx.window_end) - parse_duration(check.max_age)
    ok = newest is not None and not pd.isna(newest) and pd.Timestamp(newest) >= limit
    return _outcome(
        check, source, bool(ok), unexpected_count=0 if ok else 1, element_count=len(frame),
        observed=str(newest) if newest is not None else None,
        message=None if ok else (
            f"newest {column} is {newest}, older than {check.max_age} before the window end {pd.Timestamp(ctx.window_end).isoformat()}"
            if newest is not None else "no rows in the window"
        ),
    )


def _columns_read(check: Any, source: Any) -> list[str]:
    if isinstance(check, UniqueCheck):
        return list(check.columns or source.primary_key)
    if isinstance(check, FreshnessCheck):
        return [check.column or source.timestamp_column]
    return check.columns_used()


def _unreadable(check: Any, source: Any, frame: pd.DataFrame) -> str | None:
    """Why `check` cannot run on `frame` (a column it reads is not there), or None."""
    have = [c for c in frame.columns if c != "record_hash"]
    for col in _columns_read(check, source):
        if col not in frame.columns:
            return missing_column(col, have)
    return None


def _gx_error(res: Any) -> str | None:
    """GX's message when it could not evaluate an expectation (a missing column, bad kwargs).

    GX 1.x reports one exception per expectation, or one per metric it failed to resolve.
    """
    info = res.exception_info or {}
    infos = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [str(i.get("exception_message")) for i in infos if i.get("raised_exception")]
    return "; ".join(dict.fromkeys(messages))[:300] or None


def _not_run(check: Any, source: Any, frame: pd.DataFrame, message: str) -> CheckOutcome:
    """A check that could not be evaluated fails; no row of a row-level check passed it."""
    rows = len(frame) if check.is_row_level() else 0
    return _outcome(check, source, False, unexpected_count=rows, element_count=len(frame), message=message)


def _gx_outcome(check: Any, source: Any, frame: pd.DataFrame, res: Any) -> tuple[CheckOutcome, np.ndarray | None]:
    """The outcome of one check from its own GX result, and the rows it fails when quarantining."""
    if res is None:
        return _not_run(check, source, frame, "great-expectations returned no result for this check"), None
    error = _gx_error(res)
    if error:
        return _not_run(check, source, frame, error), None
    r = res.result or {}
    o = _outcome(
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


# A failing quarantine or store_failures check's rows and the reason they carry.
Failing = dict[str, tuple[np.ndarray, str]]


def _collects(check: Any) -> bool:
    """Whether a check's failing rows are wanted: to set aside, or to store."""
    return check.severity == "quarantine" or check.store_failures


def _set_aside(check: Any, source: Any, mask: np.ndarray, why: str | None = None) -> tuple[np.ndarray, str]:
    return mask, describe(check, source.primary_key) + " failed" + (f": {why}" if why else "")


def _evaluate(frame: pd.DataFrame, source: Any, ctx: CheckContext) -> tuple[dict[str, CheckOutcome], Failing, dict[str, Any]]:
    """Every check's outcome by name; the rows each failing quarantine check sets aside."""
    outcomes: dict[str, CheckOutcome] = {}
    failing: Failing = {}
    runnable = []
    for check in source.checks:
        problem = _unreadable(check, source, frame)
        if problem is None:
            runnable.append(check)
            continue
        outcomes[check_name(check)] = _not_run(check, source, frame, problem)
        if _collects(check):
            failing[check_name(check)] = _set_aside(check, source, np.ones(len(frame), dtype=bool), problem)
    gx_checks = [c for c in runnable if not isinstance(c, _LOCAL)]
    document: dict[str, Any] = {}
    if gx_checks:
        complete = any(_collects(c) for c in gx_checks)
        results, document = _run_gx(frame, source, gx_checks, complete)
        for check in gx_checks:
            o, mask = _gx_outcome(check, source, frame, results.get(check_name(check)))
            outcomes[o.name] = o
            if _collects(check) and not o.passed:
                # No row passed a check that could not run, so none loads unverified.
                failing[o.name] = (
                    _set_aside(check, source, mask) if mask is not None
                    else _set_aside(check, source, np.ones(len(frame), dtype=bool), o.message)
                )
    for check in runnable:
        if isinstance(check, SchemaCheck):
            outcomes[check_name(check)] = _schema(check, source, ctx)
        elif isinstance(check, RelationshipCheck):
            o, bad = _relationship(check, source, frame, ctx)
            outcomes[o.name] = o
            if _collects(check) and bad.any():
                failing[o.name] = _set_aside(check, source, bad)
        elif isinstance(check, RowCountAnomalyCheck):
            outcomes[check_name(check)] = _anomaly(check, source, frame, ctx)
        elif isinstance(check, FreshnessCheck):
            outcomes[check_name(check)] = _freshness(check, source, frame, ctx)
    return outcomes, failing, document


def run_checks(frame: pd.DataFrame, source: Any, ctx: CheckContext | None = None) -> PartitionQuality:
    """Validate one partition's frame against the source's checks."""
    ctx = ctx or CheckContext()
    keep = np.ones(len(frame), dtype=bool)
    empty_q = frame.iloc[0:0].assign(_check=pd.Series(dtype="string"), _reason=pd.Series(dtype="string"))
    if not source.checks:
        return PartitionQuality([], empty_q, keep, {}, empty_q)
    outcomes, failing, document = _evaluate(frame, source, ctx)
    ordered = [grade(c, outcomes[check_name(c)], len(frame)) for c in source.checks]
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


def _failing_rows(frame: pd.DataFrame, source: Any, failing: Failing, empty: pd.DataFrame) -> pd.DataFrame:
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


def merge_outcomes(per_partition: list[list[CheckOutcome]]) -> list[CheckOutcome]:
    merged: dict[str, CheckOutcome] = {}
    for outcomes in per_partition:
        for o in outcomes:
            merged[o.name] = merged[o.name].merge(o) if o.name in merged else o
    return list(merged.values())


def check_result(
    asset_key: dg.AssetKey, outcome: CheckOutcome, partitions: list[str],
    per_partition: dict[str, list[CheckOutcome]] | None = None,
) -> dg.AssetCheckResult:
    """One result for the run's partitions. Dagster 1.13's AssetCheckResult takes no partition,
    so each partition's counts go in the metadata, and `unexpected_per_partition` plots a
    4-week backfill on the same scale as a 1-week run."""
    # A graded check that only warns reports WARN, which does not block even a blocking check.
    blocking = outcome.severity == "error" and outcome.grade != "warn"
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN
    mine = {k: o for k, v in (per_partition or {}).items() for o in v if o.name == outcome.name}
    metadata = {
        "unexpected_count": dg.MetadataValue.int(outcome.unexpected_count),
        "element_count": dg.MetadataValue.int(outcome.element_count),
        "sample_values": dg.MetadataValue.json([_jsonable(v) for v in outcome.samples]),
        "observed_value": dg.MetadataValue.text(json.dumps(_jsonable(outcome.observed), default=str)),
        "partitions": dg.MetadataValue.text(", ".join(partitions)),
        "partition_count": dg.MetadataValue.int(len(partitions)),
        "unexpected_per_partition": dg.MetadataValue.float(outcome.unexpected_count / max(len(partitions), 1)),
    }
    if mine:
        metadata["by_partition"] = dg.MetadataValue.json(
            {k: {"passed": o.passed, "unexpected_count": o.unexpected_count, "element_count": o.element_count}
             for k, o in mine.items()}
        )
    if outcome.message:
        metadata["message"] = dg.MetadataValue.text(outcome.message)
    if outcome.grade:
        metadata["grade"] = dg.MetadataValue.text(outcome.grade)
        metadata["threshold"] = dg.MetadataValue.text(outcome.threshold or "none crossed")
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=severity,
        description=outcome.message or outcome.description,
        metadata=metadata,
    )


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
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
