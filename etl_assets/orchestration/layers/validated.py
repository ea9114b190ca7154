"""validated: the normalized rows after the source's checks; failing error checks stop the load."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg

from etl_assets import quality
from etl_assets.io import contract
from etl_assets.io.storage import Written
from etl_assets.ops.history import step_metrics, usage
from etl_assets.quality import reuse
from etl_assets.spec import RelationshipCheck

if TYPE_CHECKING:
    from etl_assets.io.storage import PartitionFrames
    from etl_assets.orchestration.layers.step import Step
    from etl_assets.spec import SourceSpec
    from etl_assets.warehouses.postgres import BaseWarehouse, WarehouseResource


def quarantines(source: SourceSpec) -> bool:
    """Whether failing rows are set aside (and loaded to `<table>__quarantine`)."""
    return any(c.severity == "quarantine" for c in source.checks)


def stores_failures(source: SourceSpec) -> bool:
    """Whether failing rows are kept for `<table>__failures`."""
    return any(c.store_failures for c in source.checks)


def referenced_sources(source: SourceSpec, *, blocking_only: bool = False) -> set[str]:
    """The sources `source`'s relationship checks refer to (only non-warn ones if `blocking_only`)."""
    return {
        c.to.source for c in source.checks
        if isinstance(c, RelationshipCheck) and not (blocking_only and c.severity == "warn")
    }


def _check_context(step: Step, wh: BaseWarehouse, partition: str) -> quality.CheckContext:
    """What the checks of `partition` may consult beyond the frame."""
    spec, window = step.spec, step.window(partition)
    normalized = contract.recorded(step.context.instance, step.key("normalized"), partition)
    stats = normalized.for_partition(contract.NORMALIZE_STATS, partition) or {}
    return quality.CheckContext(
        window_start=window.start, window_end=window.end, partition=partition,
        missing_columns=stats.get("missing_columns") or [],
        raw_columns=stats.get("raw_columns") or {},
        warehouse=wh, targets={s.name: spec.target(s) for s in spec.sources}, own_target=spec.target(step.source),
        not_loaded={
            name for name in referenced_sources(step.source)
            if not contract.loaded_in_run(step.context.instance, step.key("loaded", name), partition, step.context.run_id)
        },
    )


def _store(step: Step, normalized: PartitionFrames, partition: str, result: quality.PartitionQuality) -> tuple[Written, str]:
    """Store the partition's validated file and the files beside it; (file, quality document's sha256)."""
    P, S, store, source = step.spec.name, step.source.name, step.store, step.source
    # The validated layer is the normalized data that passed: the same file when every
    # row passed, written now either way so memory holds one window at a time.
    key = step.key("validated")
    if quarantines(source) and not result.keep.all():
        written = store.write(key, partition, normalized[partition][result.keep].reset_index(drop=True))
    else:
        written = store.copy(normalized.path(partition), key, partition)
    document_sha = store.write_document(P, "quality", S, partition, result.document)
    if quarantines(source):
        store.write_side_frame(P, "quarantine", S, partition, result.quarantine)
    if stores_failures(source):  # loaded writes them to <table>__failures with the partition
        store.write_side_frame(P, "failures", S, partition, result.failures)
    return written, document_sha


# An earlier validation of the same content, and the run whose GX validation made it.
Earlier = tuple[quality.Reused, str]


def _recorded(step: Step, partition: str, made_of: dict[str, str], names: set[str]) -> Earlier | None:
    """The last validated materialization of `partition`, when its frame-only outcomes still hold:
    the same normalized content, checks and great-expectations, and its quality document intact."""
    previous = contract.recorded(step.context.instance, step.key("validated"), partition)
    done = previous.for_partition(contract.QUALITY_FROM, partition) or {}
    if any(done.get(f) != v for f, v in made_of.items()) or not done.get("run_id"):
        return None
    document = step.store.read_document(
        step.spec.name, "quality", step.source.name, partition, done.get("document_sha256")
    )
    outcomes = previous.for_partition(contract.CHECKS_BY_PARTITION, partition)
    if not isinstance(document, dict) or not isinstance(outcomes, list):
        return None
    reused = reuse.from_record(names, outcomes, document)
    return (reused, done["run_id"]) if reused is not None else None


def _metadata(
    per_partition: dict[str, list[quality.CheckOutcome]], merged: list[quality.CheckOutcome],
    quarantined: dict[str, int], lineage: dict[str, dict[str, str]], reused_from: dict[str, str],
) -> dict[str, Any]:
    return {
        contract.CHECKS_BY_PARTITION: dg.MetadataValue.json(
            {k: [o.as_dict() for o in v] for k, v in per_partition.items()}
        ),
        contract.CHECKS_PASSED: dg.MetadataValue.int(sum(o.passed for o in merged)),
        contract.CHECKS_WARNED: dg.MetadataValue.int(sum(not o.passed and not o.blocks for o in merged)),
        contract.CHECKS_FAILED: dg.MetadataValue.int(sum(o.blocks for o in merged)),
        contract.ROWS_QUARANTINED: dg.MetadataValue.int(sum(quarantined.values())),
        contract.QUARANTINED_BY_PARTITION: dg.MetadataValue.json(quarantined),
        contract.QUALITY_FROM: dg.MetadataValue.json(lineage),
        contract.QUALITY_REUSED_FROM: dg.MetadataValue.json(reused_from),
    }


def validate_partitions(
    step: Step, normalized: PartitionFrames, warehouse: WarehouseResource
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """The validated step: checks per partition, the passing rows stored, one result per check.

    A partition whose normalized content, checks and great-expectations are those of an earlier
    validation (of this partition in an earlier run, or of another partition in this run)
    re-emits that validation's GX-run outcomes instead of running the suite again.
    """
    started = usage()
    with step.classified():
        wh = warehouse.for_pipeline(step.spec)
    per_partition: dict[str, list[quality.CheckOutcome]] = {}
    written: dict[str, Written] = {}
    quarantined: dict[str, int] = {}
    lineage: dict[str, dict[str, str]] = {}
    reused_from: dict[str, str] = {}
    names = reuse.reusable_checks(step.source)
    in_run: dict[str, Earlier] = {}  # by normalized sha256: this run's validations
    for k in step.partitions:
        ctx = _check_context(step, wh, k)
        made_of = reuse.lineage(step.source, normalized.sha256(k)) if names else {}
        sha = made_of.get("normalized_sha256", "")
        earlier = (in_run.get(sha) or _recorded(step, k, made_of, names)) if names else None
        with step.classified([k]):
            result = quality.run_checks(normalized[k], step.source, ctx, earlier[0] if earlier else None)
        per_partition[k] = result.outcomes
        written[k], document_sha = _store(step, normalized, k, result)
        if quarantines(step.source):
            quarantined[k] = len(result.quarantine)
        if not names:
            continue
        origin = earlier[1] if earlier else step.context.run_id
        lineage[k] = {**made_of, "document_sha256": document_sha, "run_id": origin}
        in_run.setdefault(sha, (reuse.from_result(names, result.outcomes, result.document), origin))
        if earlier:
            reused_from[k] = origin
            step.context.log.info(f"{step.where} {k}: content and checks unchanged; GX results of run {origin} reused")
    merged = quality.merge_outcomes(list(per_partition.values()))
    metadata = _metadata(per_partition, merged, quarantined, lineage, reused_from)
    yield dg.Output(written, metadata={**metadata, **step_metrics(started)})
    for outcome in merged:
        yield quality.check_result(step.key("validated"), outcome, step.partitions, per_partition)
    failed = [o.name for o in merged if o.blocks]
    if failed:
        step.context.log.error(f"{step.where}: blocking check(s) failed: {', '.join(failed)}; not loading")
