"""Data quality: the spec's checks as great-expectations 1.x suites and Dagster asset checks.

Column checks, `expectation` (any GX expectation by name) and the column-set part of `schema`
run through GX (`suite`, `gx`). `relationship` and `row_count_anomaly` need the warehouse and
`freshness` the partition's window, so they are evaluated directly (`local`). Rows failing a
check with severity `quarantine` are set aside instead of blocking the load; those failing a
`store_failures` check are kept for `<table>__failures` and load all the same (`checks`).

A graded check (`warn_if`, `error_if`) passes, warns or blocks by how many of the partition's
rows fail it (`results`). Its Dagster check is blocking only with `error_if`; below that
threshold its result carries severity WARN, which Dagster 1.13 does not treat as blocking.
"""

from __future__ import annotations

from etl_assets.quality.checks import Failing, run_checks
from etl_assets.quality.describe import check_specs, describe
from etl_assets.quality.gx import CHECK_META_KEY, gx_context, gx_frame
from etl_assets.quality.results import (
    SAMPLE_SIZE,
    CheckContext,
    CheckOutcome,
    PartitionQuality,
    Reused,
    check_result,
    grade,
    merge_outcomes,
)
from etl_assets.quality.suite import run_suite
from etl_assets.spec import check_name
from etl_assets.spec.expectations import build_expectation

# benchmarks/profile.py times these under their former names.
_gx = gx_context
_gx_frame = gx_frame
_run_gx = run_suite

__all__ = [
    "CHECK_META_KEY",
    "SAMPLE_SIZE",
    "CheckContext",
    "CheckOutcome",
    "Failing",
    "PartitionQuality",
    "Reused",
    "build_expectation",
    "check_name",
    "check_result",
    "check_specs",
    "describe",
    "grade",
    "merge_outcomes",
    "run_checks",
]
