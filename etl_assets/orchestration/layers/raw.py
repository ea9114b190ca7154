"""raw: each window's rows as its source gives them, one stored file per window."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd

from etl_assets import sources
from etl_assets.core.secrets import MissingSecret
from etl_assets.io import contract
from etl_assets.io.storage import KEEP, PartitionValue
from etl_assets.ops.history import step_metrics, usage
from etl_assets.sources.base import Extract, ExtractRequest

if TYPE_CHECKING:
    from etl_assets.orchestration.layers.step import Step
    from etl_assets.spec import SourceSpec
    from etl_assets.warehouses.postgres import WarehouseResource

# Placeholders through which a request reads its partition's window.
WINDOW_PLACEHOLDERS = (":window_start", ":window_end", "{window_start}", "{window_end}")


def empty_frame(source: SourceSpec) -> pd.DataFrame:
    """What a skipped optional source stores: its declared columns, no rows."""
    return pd.DataFrame({c.source_name: pd.Series(dtype="string") for c in source.columns or []})


def extracted_once(source: SourceSpec) -> bool:
    """A full source whose request does not name the window reads the same data for every
    partition, so a run extracts it once and reuses the file for each of its partitions."""
    if source.mode != "full":
        return False
    request = json.dumps([getattr(source, f, None) for f in ("query", "url", "params", "path")])
    return not any(p in request for p in WINDOW_PLACEHOLDERS)


def _last_sync(step: Step, warehouse: WarehouseResource) -> dt.datetime | None:
    """The newest timestamp loaded, for a query that reads `:last_sync`; None otherwise."""
    source = step.source
    if source.mode != "incremental" or ":last_sync" not in (getattr(source, "query", None) or ""):
        return None
    assert source.timestamp_column is not None  # an incremental source names one (spec rule)
    with step.classified(retried=True):
        wh = warehouse.for_pipeline(step.spec)
        return wh.high_water_mark(step.spec.target(source), source.timestamp_column)


def _extract(step: Step, partition: str, last_sync: dt.datetime | None) -> tuple[PartitionValue, dict[str, Any]]:
    """Extract one window and store it unless its inputs are unchanged; (value, inputs)."""
    key = step.key("raw")
    previous = contract.recorded(step.context.instance, key, partition).for_partition(contract.INPUTS, partition)
    request = ExtractRequest(step.spec.name, step.window(partition), last_sync=last_sync, previous_inputs=previous)
    value: PartitionValue = KEEP
    with step.classified([partition], retried=True):
        try:
            ex = sources.extract(step.source, request)
        except MissingSecret as e:
            if not step.source.optional:
                raise
            step.context.log.warning(f"{step.where}: optional source skipped: {e}")
            ex = Extract(empty_frame(step.source), {"skipped": str(e), "rows": 0})
        if not ex.unchanged:
            assert ex.frame is not None  # only an unchanged extract comes without data
            # Written now, where a streamed extract's errors are classified and retried,
            # and so that a long range holds one window in memory, not all of them.
            value = step.store.write(key, partition, ex.frame)
    ex.frame = None
    # Complete now: a streamed extract finished its counts while it was written above.
    ex.inputs["unchanged"] = ex.unchanged
    if ex.unchanged:
        step.context.log.info(f"{step.where} {partition}: inputs unchanged since the last extract; kept")
    return value, ex.inputs


def _sha256(step: Step, partition: str) -> str | None:
    """The stored raw file's sha256, hashed once for all the copies a run makes of it (None when
    there is no file: the copies then fail as they would have)."""
    if len(step.partitions) < 2 or not step.store.path(step.key("raw"), partition).exists():
        return None
    return step.store.stored_sha256(step.key("raw"), partition)


def _reuse(
    step: Step, first: str, first_sha: str | None, partition: str, first_inputs: dict[str, Any]
) -> tuple[PartitionValue, dict[str, Any]]:
    """Store the file extracted for partition `first` (hashing to `first_sha`) as `partition` too."""
    key = step.key("raw")
    with step.classified([partition], retried=True):
        # Written, not KEEP: the IO manager then checks its own copy of the file too.
        written, kept = step.store.reuse(step.store.path(key, first), key, partition, first_sha)
    return written, {**first_inputs, "reused_from": first, "unchanged": kept}


def extract_partitions(step: Step, warehouse: WarehouseResource) -> dg.Output:
    """The raw step: every partition of the run extracted (or reused) and stored."""
    started = usage()
    values: dict[str, PartitionValue] = {}
    inputs: dict[str, dict[str, Any]] = {}
    last_sync = _last_sync(step, warehouse)
    once = extracted_once(step.source)
    shared: tuple[str, str | None] | None = None  # (partition, sha256) of the extract the others reuse
    for k in step.partitions:
        if shared is not None:
            values[k], inputs[k] = _reuse(step, *shared, k, inputs[shared[0]])
            continue
        values[k], inputs[k] = _extract(step, k, last_sync)
        if once:
            shared = k, _sha256(step, k)
    return dg.Output(
        values, metadata={contract.INPUTS: dg.MetadataValue.json(inputs), **step_metrics(started)}
    )
