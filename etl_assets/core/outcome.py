"""What one finished run did: per run, per source, per partition and per step.

The only interpretation of a run: the CLI summary, history rows, `show`, alerts and the
failure report all read a RunOutcome, so they cannot disagree. `ops.outcome_reader` builds
it from the event log; it lives here, below report/ and ops/, so every layer can read it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SOURCE_LAYERS = ("raw", "normalized", "validated", "loaded")
LOAD_COUNTS = ("inserted", "updated", "unchanged", "deleted")
TOTALS = ("rows_extracted", "rows_normalized", "duplicates_dropped", "rows_quarantined", *LOAD_COUNTS)


@dataclass
class Counts:
    """Rows each step of a source counted: per partition, and summed over a run's partitions."""

    rows_extracted: int | None = None
    # What normalize kept and dropped: a `--step normalized` run's whole story.
    rows_normalized: int | None = None
    duplicates_dropped: int | None = None
    rows_quarantined: int | None = None
    inserted: int | None = None
    updated: int | None = None
    unchanged: int | None = None
    deleted: int | None = None


@dataclass
class PartitionOutcome(Counts):
    """One source's counts for one partition, as its steps recorded them."""

    # scd2 versions opened and closed, rows stored in <table>__failures, schema drift events.
    versions_opened: int | None = None
    versions_closed: int | None = None
    failures_stored: int | None = None
    drift: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SourceOutcome(Counts):
    status: str = "skipped"  # success | failed | skipped
    checks_passed: int | None = None
    checks_warned: list[str] = field(default_factory=list)
    checks_failed: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)  # one per check and partition
    drift: list[dict[str, Any]] = field(default_factory=list)  # schema drift events, with their partition
    inputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    partitions: dict[str, PartitionOutcome] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> SourceOutcome:
        """A source's part of a run record (a dict, as stored or as a test writes it)."""
        values = _known_fields(cls, record, skip=("partitions",))
        values["status"] = record.get("status")  # as recorded: no default word
        parts = record.get("partitions") or {}
        values["partitions"] = {k: PartitionOutcome(**_known_fields(PartitionOutcome, p)) for k, p in parts.items()}
        return cls(**values)


@dataclass
class StepOutcome:
    status: str  # success | failed | did not finish | not run
    order: int  # position in the run: jsonb does not keep key order
    started_at: str | None = None
    duration_s: float | None = None
    cpu_s: float | None = None
    reason: str | None = None  # why a step did not run
    produced: list[str] = field(default_factory=list)


@dataclass
class RunOutcome:
    run_id: str
    pipeline: str
    partitions: list[str]
    trigger: str
    status: str  # success | failed | partial | canceled; alerts also say paused
    dagster_status: str
    started_by: str | None = None  # the API token's name, when a run came through the job API
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    will_retry: bool = False
    error_type: str | None = None
    error_summary: str | None = None
    failing_source: str | None = None
    peak_rss_mb: float | None = None
    cpu_s: float | None = None
    retries: int = 0
    report_path: str | None = None
    webserver_url: str | None = None
    run_url: str | None = None
    steps: dict[str, StepOutcome] = field(default_factory=dict)
    sources: dict[str, SourceOutcome] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_record(self) -> dict[str, Any]:
        """The full record: history rows, the JSON run log and the alerts' input."""
        return dataclasses.asdict(self)

    def as_dict(self) -> dict[str, Any]:
        """`etl-assets run --json`: its documented keys."""
        fields = ("status", "rows_extracted", "rows_normalized", "rows_quarantined", *LOAD_COUNTS, "error")
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "partitions": self.partitions,
            "status": self.status,
            "sources": {n: {f: getattr(s, f) for f in fields} for n, s in self.sources.items()},
            "report_path": self.report_path,
            "error": self.error_summary,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "notes": self.notes,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RunOutcome:
        """The outcome a run record describes; missing keys read as unknown (None or empty).

        Values pass through as they are, so what a reader shows of a record does not change.
        """
        values = _known_fields(cls, record, skip=("steps", "sources"))
        for name in ("run_id", "pipeline", "trigger", "status", "dagster_status"):
            values.setdefault(name, None)
        values["partitions"] = record.get("partitions") or []
        values["notes"] = record.get("notes") or []
        values["steps"] = {
            k: StepOutcome(**{"status": None, "order": 0, **_known_fields(StepOutcome, s)})
            for k, s in (record.get("steps") or {}).items()
        }
        values["sources"] = {n: SourceOutcome.from_record(s or {}) for n, s in (record.get("sources") or {}).items()}
        return cls(**values)


def as_outcome(run: RunOutcome | Mapping[str, Any]) -> RunOutcome:
    """Readers take an outcome or its record (the dict form stored and sent between processes)."""
    return run if isinstance(run, RunOutcome) else RunOutcome.from_record(run)


def _known_fields(cls: type, record: Mapping[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)} - set(skip)
    return {k: v for k, v in record.items() if k in names}
