"""loaded: each validated window upserted into the warehouse table, idempotently per window."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd

from etl_assets.io import contract
from etl_assets.io.files import PREVIEW_ROWS
from etl_assets.io.preview import markdown_table
from etl_assets.ops.history import step_metrics, usage
from etl_assets.orchestration.layers.validated import quarantines, stores_failures
from etl_assets.transform.normalize import infer_type
from etl_assets.warehouses.postgres import LoadCounts

if TYPE_CHECKING:
    from etl_assets.io.storage import PartitionFrames
    from etl_assets.orchestration.layers.step import Step
    from etl_assets.spec import SourceSpec
    from etl_assets.warehouses.postgres import BaseWarehouse, DriftEvent, WarehouseResource


def column_types(source: SourceSpec, frame: pd.DataFrame) -> dict[str, str]:
    """The declared column types, else the types inferred from the first frame loaded."""
    if source.columns:
        return {c.name: c.type for c in source.columns}
    return {c: infer_type(frame[c]) for c in frame.columns if c != "record_hash"}


def _ensure_table(step: Step, wh: BaseWarehouse, conn: Any, frame: pd.DataFrame) -> tuple[dict[str, str], list[DriftEvent]]:
    """Create or align the target table; (the types to load, the drift met)."""
    source = step.source
    types = column_types(source, frame)
    drift = wh.ensure_table(
        conn, step.spec.target(source), types, source.primary_key, quarantine=quarantines(source),
        not_null=[c.name for c in source.columns or [] if not c.nullable],
        strategy=source.load.strategy, failures=stores_failures(source), policy=source.schema_policy,
    )
    # schema.on_new_column: ignore leaves a new column out of the load.
    ignored = {e.column for e in drift if e.change == "ignored"}
    return {c: t for c, t in types.items() if c not in ignored}, drift


def _load(
    step: Step, wh: BaseWarehouse, conn: Any, partition: str, frame: pd.DataFrame,
    types: dict[str, str], drift: list[DriftEvent],
) -> LoadCounts:
    """Load one partition, with the rows its checks set aside; log what changed."""
    P, S, source, store = step.spec.name, step.source.name, step.source, step.store
    target = step.spec.target(source)
    counts = wh.load_partition(
        conn,
        target=target,
        frame=frame,
        types=types,
        key=source.primary_key,
        partition=partition,
        run_id=step.context.run_id,
        strategy=source.load.strategy,
        quarantine=store.read_side_frame(P, "quarantine", S, partition) if quarantines(source) else None,
        delete_missing=source.load.delete_missing,
        on_missing_column=source.schema_policy.on_missing_column,
        failures=store.read_side_frame(P, "failures", S, partition) if stores_failures(source) else None,
        window_start=step.window(partition).start,
        timestamp_column=source.timestamp_column,
    )
    counts.drift = [e.as_dict() for e in drift] + counts.drift
    for e in drift:
        step.context.log.warning(f"{step.where} schema drift: {e.sentence(target)}")
    step.context.log.info(
        f"{step.where} {partition} → {target}: {counts.inserted} inserted, {counts.updated} updated, "
        f"{counts.unchanged} unchanged, {counts.deleted} deleted"
    )
    return counts


def _metadata(
    wh: BaseWarehouse, by_partition: dict[str, dict[str, Any]], types: dict[str, str] | None, preview: pd.DataFrame
) -> dict[str, Any]:
    total = {f: sum(c[f] for c in by_partition.values()) for f in ("staged", *contract.LOAD_TOTALS)}
    return {
        contract.ROW_COUNT: dg.MetadataValue.int(total["staged"]),
        contract.COLUMN_SCHEMA: dg.TableSchema(
            columns=[dg.TableColumn(c, wh.column_type(t)) for c, t in (types or {}).items()]
        ),
        contract.PREVIEW: dg.MetadataValue.md(markdown_table(preview)),
        **{f: dg.MetadataValue.int(total[f]) for f in contract.LOAD_TOTALS},
        contract.COUNTS_BY_PARTITION: dg.MetadataValue.json(by_partition),
        # Columns added, left out, gone or widened, with the types before and after.
        contract.SCHEMA_DRIFT: dg.MetadataValue.json(
            [{"partition": k, **e} for k, c in by_partition.items() for e in c.get("drift", [])]
        ),
    }


def load_partitions(step: Step, validated: PartitionFrames, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The loaded step: every partition of the run loaded in one warehouse connection."""
    started = usage()
    by_partition: dict[str, dict[str, Any]] = {}
    types: dict[str, str] | None = None
    preview = pd.DataFrame()
    with step.classified(retried=True):
        wh = warehouse.for_pipeline(step.spec)
        with wh.connect() as conn:
            for k in step.partitions:
                frame = validated[k]
                if types is None and not step.source.columns and not len(frame.columns):
                    by_partition[k] = LoadCounts(k).as_dict()  # nothing extracted, nothing known
                    continue
                drift: list[DriftEvent] = []
                if types is None:
                    types, drift = _ensure_table(step, wh, conn, frame)
                by_partition[k] = _load(step, wh, conn, k, frame, types, drift).as_dict()
                if preview.empty:
                    preview = frame.head(PREVIEW_ROWS)
    return dg.MaterializeResult(metadata={**_metadata(wh, by_partition, types, preview), **step_metrics(started)})
