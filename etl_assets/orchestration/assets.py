"""The asset factory: for each pipeline P and source S,
`P/raw/S` → `P/normalized/S` → `P/validated/S` → `P/loaded/S`, and one `P/report`.

Every asset shares P's time-window partitions and has a single-run backfill policy, so each
one iterates over `context.partition_keys` (one window per key) rather than assuming one.
Each asset's body is a module-level function in `orchestration.layers`; the functions here
only declare the assets and hand them their context, inputs and resources.
"""

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg

from etl_assets import quality
from etl_assets.core import tags
from etl_assets.core.keys import LAYERS, asset_key
from etl_assets.core.partitions import partitions_def
from etl_assets.io import contract
from etl_assets.io.contract import latest_metadata
from etl_assets.io.storage import ParquetIOManager, PartitionFrames
from etl_assets.orchestration.executors import executor_for
from etl_assets.orchestration.layers.loaded import load_partitions
from etl_assets.orchestration.layers.normalized import normalize_partitions
from etl_assets.orchestration.layers.raw import extract_partitions
from etl_assets.orchestration.layers.report import report_partitions
from etl_assets.orchestration.layers.step import Step
from etl_assets.orchestration.layers.validated import referenced_sources, validate_partitions
from etl_assets.orchestration.memory import bounded
from etl_assets.report.partition import (
    render_partition,
    render_range_report,
    report_run,
    source_summary,
    warehouse_kind,
)
from etl_assets.spec import PipelineSpec, RetrySpec, SourceSpec
from etl_assets.transform.normalize import normalize
from etl_assets.warehouses.postgres import WarehouseResource

if TYPE_CHECKING:
    from etl_assets.dagster_internal import AssetJob

# What other modules import from here. `latest_metadata` and `normalize` are names
# benchmarks/profile.py wraps with timers.
__all__ = [
    "LAYERS",
    "asset_key",
    "build_job",
    "build_pipeline_assets",
    "latest_metadata",
    "normalize",
    "render_partition",
    "render_range_report",
    "report_run",
    "source_summary",
]

# Single-run backfills are the point of these assets; the parameter's beta label is noise.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

# The IO manager stores the raw, normalized and validated layers; steps write through its store.
IO_MANAGER = "parquet_io"


def retry_policy(r: RetrySpec) -> dg.RetryPolicy | None:
    if r.max == 0:
        return None
    return dg.RetryPolicy(
        max_retries=r.max,
        delay=r.delay_seconds,
        backoff={"exponential": dg.Backoff.EXPONENTIAL, "linear": dg.Backoff.LINEAR}.get(r.backoff),
        jitter=dg.Jitter.PLUS_MINUS if r.jitter else None,
    )


def _common(spec: PipelineSpec, pdef: dg.TimeWindowPartitionsDefinition) -> dict[str, Any]:
    return {
        "partitions_def": pdef,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "group_name": spec.name,
        "owners": spec.owners or None,
    }


def load_first(spec: PipelineSpec) -> dict[str, int]:
    """Step priority per source: a source that relationship checks refer to runs its steps
    before theirs when both are ready, so a warn check, which does not wait for that load,
    still usually sees it in the same run."""
    refs = {s.name: referenced_sources(s) for s in spec.sources}
    priority = dict.fromkeys(refs, 0)
    for _ in spec.sources:  # a chain is at most as long as the sources; a cycle stops here
        for name, targets in refs.items():
            for t in targets:
                priority[t] = max(priority[t], min(priority[name] + 1, len(refs)))
    return priority


def _source_common(spec: PipelineSpec, source: SourceSpec, pdef: dg.TimeWindowPartitionsDefinition) -> dict[str, Any]:
    common = _common(spec, pdef)
    priority = load_first(spec)[source.name]
    if priority:
        common["op_tags"] = {"dagster/priority": str(priority)}
    return common


def build_raw_asset(spec: PipelineSpec, source: SourceSpec, pdef: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    S, retry = source.name, retry_policy(source.retries or spec.retries)

    @dg.asset(
        key=asset_key(spec.name, "raw", S),
        description=f"raw · {S}: rows read from its {source.kind} source, one file per window.",
        kinds={"raw", source.kind, "parquet"},
        io_manager_key=IO_MANAGER,
        retry_policy=retry,
        pool=source.pool_name,
        metadata={contract.SOURCE_KIND: source.kind},
        **_source_common(spec, source, pdef),
    )
    @bounded(spec, S)
    def raw(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource,
        parquet_io: dg.ResourceParam[ParquetIOManager],
    ) -> dg.Output:
        return extract_partitions(Step(spec, source, pdef, context, parquet_io.store, retry), warehouse)

    return raw


def build_normalized_asset(spec: PipelineSpec, source: SourceSpec, pdef: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    S = source.name

    @dg.asset(
        key=asset_key(spec.name, "normalized", S),
        description=f"normalized · {S}: the spec's names and types, UTC timestamps, de-duplicated and hashed.",
        kinds={"normalized", "pandas", "parquet"},
        io_manager_key=IO_MANAGER,
        ins={"raw": dg.AssetIn(asset_key(spec.name, "raw", S))},
        **_source_common(spec, source, pdef),
    )
    @bounded(spec, S)
    def normalized(
        context: dg.AssetExecutionContext, raw: PartitionFrames, parquet_io: dg.ResourceParam[ParquetIOManager]
    ) -> dg.Output:
        return normalize_partitions(Step(spec, source, pdef, context, parquet_io.store), raw)

    return normalized


def build_validated_asset(spec: PipelineSpec, source: SourceSpec, pdef: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    S = source.name
    key = asset_key(spec.name, "validated", S)
    # Only checks that change what loads wait for their source's load: a warn relationship
    # checks against what the warehouse holds, so a failed source cannot skip this one.
    related = sorted(referenced_sources(source, blocking_only=True))

    @dg.asset(
        key=key,
        description=f"validated · {S}: after its great-expectations checks; failing error checks stop the load.",
        kinds={"validated", "great_expectations", "parquet"},
        io_manager_key=IO_MANAGER,
        ins={"normalized": dg.AssetIn(asset_key(spec.name, "normalized", S))},
        deps=[asset_key(spec.name, "loaded", name) for name in related],
        check_specs=quality.check_specs(key, source),
        **_source_common(spec, source, pdef),
    )
    @bounded(spec, S)
    def validated(
        context: dg.AssetExecutionContext, normalized: PartitionFrames, warehouse: WarehouseResource,
        parquet_io: dg.ResourceParam[ParquetIOManager],
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        yield from validate_partitions(Step(spec, source, pdef, context, parquet_io.store), normalized, warehouse)

    return validated


def build_loaded_asset(spec: PipelineSpec, source: SourceSpec, pdef: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    S, target, retry = source.name, spec.target(source), retry_policy(source.retries or spec.retries)

    @dg.asset(
        key=asset_key(spec.name, "loaded", S),
        description=f"loaded · {S}: upserted into the warehouse table {target}, idempotently per window.",
        kinds={"loaded", warehouse_kind(spec)},
        ins={"validated": dg.AssetIn(asset_key(spec.name, "validated", S))},
        retry_policy=retry,
        metadata={contract.TABLE_NAME: target, contract.LOAD_STRATEGY: source.load.strategy},
        **_source_common(spec, source, pdef),
    )
    @bounded(spec, S)
    def loaded(
        context: dg.AssetExecutionContext, validated: PartitionFrames, warehouse: WarehouseResource,
        parquet_io: dg.ResourceParam[ParquetIOManager],
    ) -> dg.MaterializeResult:
        # The IO manager's store, for the rows the validated step set aside beside its files.
        return load_partitions(Step(spec, source, pdef, context, parquet_io.store, retry), validated, warehouse)

    return loaded


def build_source_assets(spec: PipelineSpec, source: SourceSpec, pdef: dg.TimeWindowPartitionsDefinition) -> list[dg.AssetsDefinition]:
    return [build(spec, source, pdef) for build in (build_raw_asset, build_normalized_asset, build_validated_asset, build_loaded_asset)]


def build_report_asset(spec: PipelineSpec, pdef: dg.TimeWindowPartitionsDefinition) -> dg.AssetsDefinition:
    P = spec.name
    retry = retry_policy(spec.retries) if spec.report.kpis else None

    @dg.asset(
        key=asset_key(P, "report"),
        description=f"report · {P}: KPIs against the previous window, per-source counts and check outcomes, "
        "rendered per window (and over the range of a backfill).",
        kinds={"html", "markdown"},
        deps=[asset_key(P, "loaded", s.name) for s in spec.sources],
        retry_policy=retry,
        **_common(spec, pdef),
    )
    @bounded(spec)
    def report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        return report_partitions(spec, pdef, context, warehouse, retry)

    return report


def build_pipeline_assets(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    pdef = partitions_def(spec)
    assets: list[dg.AssetsDefinition] = []
    for source in spec.sources:
        assets.extend(build_source_assets(spec, source, pdef))
    assets.append(build_report_asset(spec, pdef))
    return assets


def build_job(spec: PipelineSpec) -> "AssetJob":
    return dg.define_asset_job(
        name=f"{spec.name}_job",
        selection=dg.AssetSelection.groups(spec.name),
        partitions_def=partitions_def(spec),
        description=f"Every asset of {spec.name}: extract, normalize, validate, load, report.",
        executor_def=executor_for(spec),
        tags={
            tags.PIPELINE: spec.name,
            **({"dagster/max_runtime": str(spec.timeout_minutes * 60)} if spec.timeout_minutes else {}),
        },
    )
