"""Check outcomes and results: grading by failing rows, merging across partitions, and the
Dagster AssetCheckResult each check reports."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg
import numpy as np
import pandas as pd

from etl_assets.spec import CheckBase, parse_threshold

if TYPE_CHECKING:
    import datetime as dt

    from etl_assets.warehouses.base import BaseWarehouse

SAMPLE_SIZE = 10


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

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckOutcome:
        """The outcome `as_dict` recorded (its values already JSON, which results re-emit as is)."""
        return cls(
            d["name"], d["declared_severity"], d["passed"], d["description"], d["unexpected_count"],
            d["element_count"], list(d["samples"]), d["observed"], d["message"], d["grade"], d["threshold"],
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


def grade(check: CheckBase, outcome: CheckOutcome, rows: int) -> CheckOutcome:
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


@dataclass(frozen=True)
class Reused:
    """An earlier validation of the same content under the same checks and great-expectations:
    the graded outcomes of the checks that read only the frame, and GX's result document."""

    outcomes: dict[str, CheckOutcome]
    document: dict[str, Any]


@dataclass
class CheckContext:
    """What checks beyond the frame itself may consult."""

    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    partition: str | None = None
    missing_columns: list[str] = field(default_factory=list)
    raw_columns: dict[str, str] = field(default_factory=dict)  # source column -> raw dtype
    # The warehouse (an etl_assets.warehouses.postgres.BaseWarehouse, PostgreSQL or ClickHouse): it runs
    # the relationship and row-count-anomaly lookups in its own SQL dialect.
    warehouse: BaseWarehouse | None = None
    targets: dict[str, str] = field(default_factory=dict)  # source name -> schema.table
    own_target: str | None = None
    # Sources a relationship check refers to that did not load this partition in this run:
    # a warn check does not wait for them, so it says what it checked against.
    not_loaded: set[str] = field(default_factory=set)


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
