"""The metadata contract between steps: which keys a layer records, and how a later step reads them.

Each layer's materialization records facts per partition under the `*_BY_PARTITION`-style keys
below (a JSON object keyed by partition). The next step, the next run of the same step, the
report and history read them back through `recorded`, never by re-deriving them from files.
Key names and value shapes are what the UI and the tests read: change neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

# Written by the Parquet IO manager for every stored layer (raw, normalized, validated).
ROW_COUNT = "dagster/row_count"
COLUMN_SCHEMA = "dagster/column_schema"
PREVIEW = "preview"
PATH = "path"
ROWS_BY_PARTITION = "rows_by_partition"  # {partition: rows stored}

# raw: what each window's extract read, so the next extract can tell nothing changed.
INPUTS = "inputs"  # {partition: {..., "unchanged": bool, "reused_from"?: partition}}
# normalized: per-column statistics, and what each file was made from (raw sha, fingerprint).
NORMALIZE_STATS = "normalize_stats"  # {partition: {"missing_columns": [...], "raw_columns": {...}, ...}}
NORMALIZED_FROM = "normalized_from"  # {partition: {"raw_sha256", "fingerprint", "sha256"}}
# validated: every check's outcome per partition, and the totals over the run's range.
CHECKS_BY_PARTITION = "checks_by_partition"  # {partition: [CheckOutcome.as_dict(), ...]}
CHECKS_PASSED = "checks_passed"
CHECKS_WARNED = "checks_warned"
CHECKS_FAILED = "checks_failed"
ROWS_QUARANTINED = "rows_quarantined"
QUARANTINED_BY_PARTITION = "quarantined_by_partition"  # {partition: rows set aside}
# What each partition's GX-run outcomes follow from, and the run whose GX validation made them.
QUALITY_FROM = "quality_from"  # {partition: {"normalized_sha256", "checks_sha256", "great_expectations", "document_sha256", "run_id"}}
# The partitions whose GX-run outcomes were reused, not validated again: {partition: run_id}.
QUALITY_REUSED_FROM = "quality_reused_from"
# loaded: the warehouse's counts per partition, their totals and the schema changes met.
COUNTS_BY_PARTITION = "counts_by_partition"  # {partition: LoadCounts.as_dict()}
LOAD_TOTALS = ("inserted", "updated", "unchanged", "deleted", "quarantined")
SCHEMA_DRIFT = "schema_drift"  # [{"partition": ..., **drift event}]
# report: the rendered report and where its files are.
REPORT = "report"
REPORT_PATH = "report_path"
REPORT_PATHS = "report_paths"  # {partition: {"html": path, "md": path}}
CHARTS_DRAWN = "charts_drawn"  # charts the step drew because their data changed
CHARTS_REUSED = "charts_reused"  # charts whose data had not, reused as first drawn
# Asset definition metadata (fixed per asset, not per materialization).
SOURCE_KIND = "source_kind"
TABLE_NAME = "dagster/table_name"
LOAD_STRATEGY = "load_strategy"


@dataclass(frozen=True)
class Recorded:
    """What the newest materialization of one asset for one partition recorded, as plain values."""

    metadata: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None  # the run that materialized it; None: never materialized

    def has(self, key: str, partition: str) -> bool:
        """Whether the per-partition fact `key` holds an entry for `partition`."""
        return partition in (self.metadata.get(key) or {})

    def for_partition(self, key: str, partition: str) -> Any:
        """The per-partition fact `key` for `partition` (None when absent)."""
        return (self.metadata.get(key) or {}).get(partition)


def recorded(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> Recorded:
    """The newest materialization of `key` for `partition` (an empty Recorded when there is none)."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    )
    if not result.records:
        return Recorded()
    record = result.records[0]
    mat = record.asset_materialization
    values = {k: getattr(v, "value", v) for k, v in (mat.metadata if mat else {}).items()}
    return Recorded(values, record.run_id)


def latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> dict[str, Any]:
    """Metadata of the newest materialization of `key` for `partition`, as plain values."""
    return dict(recorded(instance, key, partition).metadata)


def loaded_in_run(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str, run_id: str) -> bool:
    """Whether run `run_id` materialized `key` for `partition` (its newest materialization)."""
    return recorded(instance, key, partition).run_id == run_id
