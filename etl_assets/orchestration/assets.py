"""The asset factory: for each pipeline P and source S,
`P/raw/S` → `P/normalized/S` → `P/validated/S` → `P/loaded/S`, and one `P/report`.

Every asset shares P's time-window partitions and has a single-run backfill policy, so each
one iterates over `context.partition_keys` (one window per key) rather than assuming one.
"""



import hashlib
import json
import warnings
from typing import Any

import dagster as dg
import pandas as pd
from upath import UPath

from etl_assets import quality, sources
from etl_assets.core.keys import LAYERS, asset_key
from etl_assets.core.partitions import partitions_def, window_for
from etl_assets.core.secrets import MissingSecret
from etl_assets.core.settings import storage_dir
from etl_assets.io.storage import (
    KEEP,
    PartitionFrames,
    Written,
    copy_file,
    frame_bytes,
    layer_path,
    read_frame,
    read_frame_bytes,
    same_file,
    side_path,
    write_atomic,
    write_frame,
    write_partition,
)
from etl_assets.ops.history import step_metrics, usage
from etl_assets.orchestration.memory import bounded
from etl_assets.orchestration.steps import classified
from etl_assets.report import markdown_table
from etl_assets.report.partition import (
    latest_metadata,
    loaded_in_run,
    render_partition,
    render_range_report,
    report_run,
    source_summary,
    warehouse_kind,
)
from etl_assets.sources.base import Extract, ExtractRequest
from etl_assets.spec import PipelineSpec, RetrySpec
from etl_assets.transform.normalize import infer_type, normalize
from etl_assets.warehouses.postgres import LoadCounts, WarehouseResource

# Single-run backfills are the point of these assets; the parameter's beta label is noise.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

PREVIEW_ROWS = 10


def retry_policy(r: RetrySpec) -> dg.RetryPolicy | None:
    if r.max == 0:
        return None
    return dg.RetryPolicy(
        max_retries=r.max,
        delay=r.delay_seconds,
        backoff={"exponential": dg.Backoff.EXPONENTIAL, "linear": dg.Backoff.LINEAR}.get(r.backoff),
        jitter=dg.Jitter.PLUS_MINUS if r.jitter else None,
    )


def empty_frame(source: Any) -> pd.DataFrame:
    return pd.DataFrame({c.source_name: pd.Series(dtype="string") for c in source.columns or []})


def column_types(source: Any, frame: pd.DataFrame) -> dict[str, str]:
    if source.columns:
        return {c.name: c.type for c in source.columns}
    return {c: infer_type(frame[c]) for c in frame.columns if c != "record_hash"}


def _common(spec: PipelineSpec, pdef: dg.PartitionsDefinition) -> dict[str, Any]:
    return {
        "partitions_def": pdef,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "group_name": spec.name,
        "owners": spec.owners or None,
    }


# Bump when normalize's output for the same input changes, so stored normalized files are redone.
NORMALIZE_VERSION = "2"


def fingerprint(spec: PipelineSpec, source: Any) -> str:
    """What a normalized file depends on besides the raw bytes: the source's spec, the timezone
    and the normalize code's version."""
    payload = json.dumps(
        {"v": NORMALIZE_VERSION, "tz": spec.timezone, "source": source.model_dump(mode="json")},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


# Placeholders through which a request reads its partition's window.
WINDOW_PLACEHOLDERS = (":window_start", ":window_end", "{window_start}", "{window_end}")


def extracted_once(source: Any) -> bool:
    """A full source whose request does not name the window reads the same data for every
    partition, so a run extracts it once and reuses the file for each of its partitions."""
    if source.mode != "full":
        return False
    request = json.dumps([getattr(source, f, None) for f in ("query", "url", "params", "path")])
    return not any(p in request for p in WINDOW_PLACEHOLDERS)


def build_source_assets(spec: PipelineSpec, source: Any, pdef: Any) -> list[dg.AssetsDefinition]:
    P, S = spec.name, source.name
    keys = {layer: asset_key(P, layer, S) for layer in LAYERS}
    retry = retry_policy(source.retries or spec.retries)
    common = _common(spec, pdef)
    priority = load_first(spec)[S]
    if priority:
        common["op_tags"] = {"dagster/priority": str(priority)}
    normalize_fingerprint = fingerprint(spec, source)
    target = spec.target(source)

    @dg.asset(
        key=keys["raw"],
        description=f"raw · {S}: rows read from its {source.kind} source, one file per window.",
        kinds={"raw", source.kind, "parquet"},
        io_manager_key="parquet_io",
        retry_policy=retry,
        pool=source.pool_name,
        metadata={"source_kind": source.kind},
        **common,
    )
    @bounded(spec, S)
    def raw(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.Output:
        started = usage()
        values, inputs = {}, {}
        last_sync = None
        if source.mode == "incremental" and ":last_sync" in (getattr(source, "query", None) or ""):
            with classified(context, pipeline=P, source=S, partitions=list(context.partition_keys), policy=retry):
                last_sync = warehouse.for_pipeline(spec).high_water_mark(target, source.timestamp_column)
        once = extracted_once(source)
        shared: tuple[str, UPath, dict[str, Any]] | None = None  # (partition, file, inputs) of that extract
        for k in context.partition_keys:
            path = layer_path(storage_dir(), keys["raw"], k)
            if shared is not None:
                first, first_path, first_inputs = shared
                with classified(context, pipeline=P, source=S, partitions=[k], policy=retry):
                    kept = same_file(first_path, path)
                    if not kept:
                        copy_file(first_path, path)
                # Written, not KEEP: the IO manager then checks its own copy of the file too.
                values[k] = Written(path)
                inputs[k] = {**first_inputs, "reused_from": first, "unchanged": kept}
                continue
            previous = latest_metadata(context.instance, keys["raw"], k).get("inputs", {}).get(k)
            request = ExtractRequest(P, window_for(pdef, k), last_sync=last_sync, previous_inputs=previous)
            with classified(context, pipeline=P, source=S, partitions=[k], policy=retry):
                try:
                    ex = sources.extract(source, request)
                except MissingSecret as e:
                    if not source.optional:
                        raise
                    context.log.warning(f"{P}/{S}: optional source skipped: {e}")
                    ex = Extract(empty_frame(source), {"skipped": str(e), "rows": 0})
                if not ex.unchanged:
                    # Written now, where a streamed extract's errors are classified and retried,
                    # and so that a long range holds one window in memory, not all of them.
                    write_partition(path, ex.frame)
            values[k] = KEEP if ex.unchanged else Written(path)
            ex.frame = None
            # Complete now: a streamed extract finished its counts while it was written above.
            ex.inputs["unchanged"] = ex.unchanged
            inputs[k] = ex.inputs
            if ex.unchanged:
                context.log.info(f"{P}/{S} {k}: inputs unchanged since the last extract; kept")
            if once:
                shared = (k, path, ex.inputs)
        return dg.Output(
            values, metadata={"inputs": dg.MetadataValue.json(inputs), **step_metrics(started)}
        )

    @dg.asset(
        key=keys["normalized"],
        description=f"normalized · {S}: the spec's names and types, UTC timestamps, de-duplicated and hashed.",
        kinds={"normalized", "pandas", "parquet"},
        io_manager_key="parquet_io",
        ins={"raw": dg.AssetIn(keys["raw"])},
        **common,
    )
    @bounded(spec, S)
    def normalized(context: dg.AssetExecutionContext, raw: PartitionFrames) -> dg.Output:
        started = usage()
        frames, stats, lineage = {}, {}, {}
        for k in context.partition_keys:
            data = UPath(raw.path(k)).read_bytes()
            source_sha = hashlib.sha256(data).hexdigest()
            path = layer_path(storage_dir(), keys["normalized"], k)
            previous = latest_metadata(context.instance, keys["normalized"], k)
            done = (previous.get("normalized_from") or {}).get(k) or {}
            if (
                done.get("raw_sha256") == source_sha
                and done.get("fingerprint") == normalize_fingerprint
                and k in (previous.get("normalize_stats") or {})
                and path.exists()
                and hashlib.sha256(path.read_bytes()).hexdigest() == done.get("sha256")
            ):
                # The same raw bytes under the same spec and code normalize to the same file.
                frames[k], stats[k], lineage[k] = KEEP, previous["normalize_stats"][k], done
                continue
            with classified(context, pipeline=P, source=S, partitions=[k], policy=None):
                result = normalize(read_frame_bytes(data), source, spec.timezone)
            del data
            written = frame_bytes(result.frame)
            write_atomic(path, written)  # one window in memory at a time
            frames[k], stats[k] = Written(path), result.stats
            lineage[k] = {"raw_sha256": source_sha, "fingerprint": normalize_fingerprint,
                          "sha256": hashlib.sha256(written).hexdigest()}
        return dg.Output(
            frames,
            metadata={
                "normalize_stats": dg.MetadataValue.json(stats),
                "normalized_from": dg.MetadataValue.json(lineage),
                **step_metrics(started),
            },
        )

    quarantines = any(c.severity == "quarantine" for c in source.checks)
    stores_failures = any(c.store_failures for c in source.checks)
    referenced = {c.to.source for c in source.checks if getattr(c, "type", None) == "relationship"}
    # Only checks that change what loads wait for their source's load: a warn relationship
    # checks against what the warehouse holds, so a failed source cannot skip this one.
    related = sorted(
        {c.to.source for c in source.checks if getattr(c, "type", None) == "relationship" and c.severity != "warn"}
    )

    @dg.asset(
        key=keys["validated"],
        description=f"validated · {S}: after its great-expectations checks; failing error checks stop the load.",
        kinds={"validated", "great_expectations", "parquet"},
        io_manager_key="parquet_io",
        ins={"normalized": dg.AssetIn(keys["normalized"])},
        deps=[asset_key(P, "loaded", name) for name in related],
        check_specs=quality.check_specs(keys["validated"], source),
        **common,
    )
    @bounded(spec, S)
    def validated(context: dg.AssetExecutionContext, normalized: PartitionFrames, warehouse: WarehouseResource):
        started = usage()
        with classified(context, pipeline=P, source=S, partitions=list(context.partition_keys), policy=None):
            wh = warehouse.for_pipeline(spec)
        per_partition: dict[str, list[quality.CheckOutcome]] = {}
        written: dict[str, Written] = {}
        quarantined: dict[str, int] = {}
        base = storage_dir()
        for k in context.partition_keys:
            window = window_for(pdef, k)
            stats = (latest_metadata(context.instance, keys["normalized"], k).get("normalize_stats") or {}).get(k, {})
            ctx = quality.CheckContext(
                window_start=window.start, window_end=window.end, partition=k,
                missing_columns=stats.get("missing_columns") or [],
                raw_columns=stats.get("raw_columns") or {},
                warehouse=wh, targets={s.name: spec.target(s) for s in spec.sources}, own_target=target,
                not_loaded={
                    name for name in referenced
                    if not loaded_in_run(context.instance, asset_key(P, "loaded", name), k, context.run_id)
                },
            )
            with classified(context, pipeline=P, source=S, partitions=[k], policy=None):
                result = quality.run_checks(normalized[k], source, ctx)
            per_partition[k] = result.outcomes
            # The validated layer is the normalized data that passed: the same file when every
            # row passed, written now either way so memory holds one window at a time.
            path = layer_path(base, keys["validated"], k)
            if quarantines and not result.keep.all():
                write_partition(path, normalized[k][result.keep].reset_index(drop=True))
            else:
                copy_file(UPath(normalized.path(k)), path)
            written[k] = Written(path)
            write_atomic(
                side_path(base, P, "quality", S, k, "json"),
                json.dumps(result.document, default=str, indent=1).encode(),
            )
            if quarantines:
                write_frame(side_path(base, P, "quarantine", S, k, "parquet"), result.quarantine)
                quarantined[k] = len(result.quarantine)
            if stores_failures:  # loaded writes them to <table>__failures with the partition
                write_frame(side_path(base, P, "failures", S, k, "parquet"), result.failures)
        merged = quality.merge_outcomes(list(per_partition.values()))
        warned = [o.name for o in merged if not o.passed and not o.blocks]
        failed = [o.name for o in merged if o.blocks]

        yield dg.Output(
            written,
            metadata={
                "checks_by_partition": dg.MetadataValue.json(
                    {k: [o.as_dict() for o in v] for k, v in per_partition.items()}
                ),
                "checks_passed": dg.MetadataValue.int(sum(o.passed for o in merged)),
                "checks_warned": dg.MetadataValue.int(len(warned)),
                "checks_failed": dg.MetadataValue.int(len(failed)),
                "rows_quarantined": dg.MetadataValue.int(sum(quarantined.values())),
                "quarantined_by_partition": dg.MetadataValue.json(quarantined),
                **step_metrics(started),
            },
        )
        for outcome in merged:
            yield quality.check_result(keys["validated"], outcome, list(context.partition_keys), per_partition)
        if failed:
            context.log.error(f"{P}/{S}: blocking check(s) failed: {', '.join(failed)}; not loading")

    @dg.asset(
        key=keys["loaded"],
        description=f"loaded · {S}: upserted into the warehouse table {target}, idempotently per window.",
        kinds={"loaded", warehouse_kind(spec)},
        ins={"validated": dg.AssetIn(keys["validated"])},
        retry_policy=retry,
        metadata={"dagster/table_name": target, "load_strategy": source.load.strategy},
        **common,
    )
    @bounded(spec, S)
    def loaded(
        context: dg.AssetExecutionContext, validated: PartitionFrames, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        started = usage()
        by_partition, types, preview = {}, None, pd.DataFrame()
        not_null = [c.name for c in source.columns or [] if not c.nullable]
        with classified(context, pipeline=P, source=S, partitions=list(context.partition_keys), policy=retry):
            wh = warehouse.for_pipeline(spec)
            with wh.connect() as conn:
                for k in context.partition_keys:
                    frame = validated[k]
                    if types is None and not source.columns and not len(frame.columns):
                        by_partition[k] = LoadCounts(k).as_dict()  # nothing extracted, nothing known
                        continue
                    drift = []
                    if types is None:
                        types = column_types(source, frame)
                        drift = wh.ensure_table(
                            conn, target, types, source.primary_key, quarantine=quarantines, not_null=not_null,
                            strategy=source.load.strategy, failures=stores_failures, policy=source.schema_policy,
                        )
                        # schema.on_new_column: ignore leaves a new column out of the load.
                        types = {c: t for c, t in types.items() if c not in {e.column for e in drift if e.change == "ignored"}}
                    q = (
                        read_frame(side_path(storage_dir(), P, "quarantine", S, k, "parquet"))
                        if quarantines else None
                    )
                    failing = (
                        read_frame(side_path(storage_dir(), P, "failures", S, k, "parquet"))
                        if stores_failures else None
                    )
                    counts = wh.load_partition(
                        conn,
                        target=target,
                        frame=frame,
                        types=types,
                        key=source.primary_key,
                        partition=k,
                        run_id=context.run_id,
                        strategy=source.load.strategy,
                        quarantine=q,
                        delete_missing=source.load.delete_missing,
                        on_missing_column=source.schema_policy.on_missing_column,
                        failures=failing,
                        window_start=window_for(pdef, k).start,
                        timestamp_column=source.timestamp_column,
                    )
                    counts.drift = [e.as_dict() for e in drift] + counts.drift
                    for e in drift:
                        context.log.warning(f"{P}/{S} schema drift: {e.sentence(target)}")
                    by_partition[k] = counts.as_dict()
                    if preview.empty:
                        preview = frame.head(PREVIEW_ROWS)
                    context.log.info(
                        f"{P}/{S} {k} → {target}: {counts.inserted} inserted, {counts.updated} updated, "
                        f"{counts.unchanged} unchanged, {counts.deleted} deleted"
                    )
        total = {
            f: sum(c[f] for c in by_partition.values())
            for f in ("staged", "inserted", "updated", "unchanged", "deleted", "quarantined")
        }
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": dg.MetadataValue.int(total["staged"]),
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(c, wh.column_type(t)) for c, t in (types or {}).items()]
                ),
                "preview": dg.MetadataValue.md(markdown_table(preview)),
                "inserted": dg.MetadataValue.int(total["inserted"]),
                "updated": dg.MetadataValue.int(total["updated"]),
                "unchanged": dg.MetadataValue.int(total["unchanged"]),
                "deleted": dg.MetadataValue.int(total["deleted"]),
                "quarantined": dg.MetadataValue.int(total["quarantined"]),
                "counts_by_partition": dg.MetadataValue.json(by_partition),
                # Columns added, left out, gone or widened, with the types before and after.
                "schema_drift": dg.MetadataValue.json(
                    [{"partition": k, **e} for k, c in by_partition.items() for e in c.get("drift", [])]
                ),
                **step_metrics(started),
            }
        )

    return [raw, normalized, validated, loaded]


def build_report_asset(spec: PipelineSpec, pdef: Any) -> dg.AssetsDefinition:
    P = spec.name
    deps = [asset_key(P, "loaded", s.name) for s in spec.sources]
    report_retry = retry_policy(spec.retries) if spec.report.kpis else None

    @dg.asset(
        key=asset_key(P, "report"),
        description=f"report · {P}: KPIs against the previous window, per-source counts and check outcomes, "
        "rendered per window (and over the range of a backfill).",
        kinds={"html", "markdown"},
        deps=deps,
        retry_policy=report_retry,
        **_common(spec, pdef),
    )
    @bounded(spec)
    def report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        started = usage()
        keys = list(context.partition_keys)
        run = report_run(context.run_id)
        with classified(context, pipeline=P, source=None, partitions=keys, policy=report_retry):
            wh = warehouse.for_pipeline(spec)
        paths, last_md = {}, ""
        for k in keys:
            summaries = [source_summary(context.instance, spec, s, k) for s in spec.sources]
            with classified(context, pipeline=P, source=None, partitions=[k], policy=report_retry):
                last_md, written = render_partition(context.instance, spec, pdef, wh, k, run, summaries)
            paths[k] = {"html": written.html_path, "md": written.md_path}
        shown = paths[keys[-1]]
        if len(keys) > 1:  # a backfill's range, read as one report
            with classified(context, pipeline=P, source=None, partitions=keys, policy=report_retry):
                ranged = render_range_report(context.instance, spec, wh, keys, run)
            last_md, shown = ranged.markdown, {"html": ranged.html_path, "md": ranged.md_path}
        return dg.MaterializeResult(
            metadata={
                # The rendered report itself: a local path is nothing a browser can open.
                "report": dg.MetadataValue.md(last_md),
                "report_path": dg.MetadataValue.text(shown["html"]),
                "report_paths": dg.MetadataValue.json(paths),
                **step_metrics(started),
            }
        )

    return report


def load_first(spec: PipelineSpec) -> dict[str, int]:
    """Step priority per source: a source that relationship checks refer to runs its steps
    before theirs when both are ready, so a warn check, which does not wait for that load,
    still usually sees it in the same run."""
    refs = {s.name: {c.to.source for c in s.checks if getattr(c, "type", None) == "relationship"} for s in spec.sources}
    priority = dict.fromkeys(refs, 0)
    for _ in spec.sources:  # a chain is at most as long as the sources; a cycle stops here
        for name, targets in refs.items():
            for t in targets:
                priority[t] = max(priority[t], min(priority[name] + 1, len(refs)))
    return priority


def build_pipeline_assets(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    pdef = partitions_def(spec)
    assets: list[dg.AssetsDefinition] = []
    for source in spec.sources:
        assets.extend(build_source_assets(spec, source, pdef))
    assets.append(build_report_asset(spec, pdef))
    return assets


def build_job(spec: PipelineSpec) -> Any:
    return dg.define_asset_job(
        name=f"{spec.name}_job",
        selection=dg.AssetSelection.groups(spec.name),
        partitions_def=partitions_def(spec),
        description=f"Every asset of {spec.name}: extract, normalize, validate, load, report.",
        tags={
            "etl/pipeline": spec.name,
            **({"dagster/max_runtime": str(spec.timeout_minutes * 60)} if spec.timeout_minutes else {}),
        },
    )


def to_json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)
