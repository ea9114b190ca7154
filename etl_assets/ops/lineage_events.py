"""The OpenLineage event of a run and its delivery: facets, datasets and the client.

Imported by `ops.lineage.emit` only when a collector is configured and an event is due:
openlineage-python takes a noticeable part of a second to import, which no other run, command
or code-location load should pay. Everything built here comes from what the run's event log
recorded; names come from `ops.lineage_naming`.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import (
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
    set_producer,
)
from openlineage.client.facet_v2 import (
    DatasetFacet,
    InputDatasetFacet,
    OutputDatasetFacet,
    documentation_job,
    error_message_run,
    input_statistics_input_dataset,
    job_type_job,
    nominal_time_run,
    output_statistics_output_dataset,
    processing_engine_run,
    schema_dataset,
)
from openlineage.client.facet_v2 import data_quality_assertions_dataset as dqa

from etl_assets.core.outcome import RunOutcome, SourceOutcome
from etl_assets.core.partitions import partitions_def, window_for
from etl_assets.core.secrets import MissingSecret, redact, resolve
from etl_assets.ops import history
from etl_assets.ops.lineage_naming import (
    EVENT_TYPES,
    database_location,
    file_dataset,
    job_namespace,
    table_name,
    url_dataset,
    warehouse_location,
)
from etl_assets.spec import CsvSource, HttpSource, PipelineSpec, SourceSpec, check_name

log = logging.getLogger("etl_assets")
_ENV_LOCK = threading.Lock()


# --- facets from what the run recorded ------------------------------------------------------


def _latest(instance: dg.DagsterInstance, key: list[str]) -> dict[str, Any]:
    """Metadata of the asset's newest materialization, any partition, as plain values."""
    result = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(key)), limit=1)
    mat = result.records[0].asset_materialization if result.records else None
    return {k: getattr(v, "value", v) for k, v in (mat.metadata if mat else {}).items()}


def _schema(fields: list[tuple[str, str]]) -> dict[str, DatasetFacet]:
    if not fields:
        return {}
    return {"schema": schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in fields]
    )}


def source_fields(instance: dg.DagsterInstance, spec: PipelineSpec, source: SourceSpec) -> list[tuple[str, str]]:
    """The source's columns as it names them: declared types, else the types last read."""
    if source.columns:
        return [(c.source_name, c.type) for c in source.columns]
    stats = _latest(instance, [spec.name, "normalized", source.name]).get("normalize_stats") or {}
    first: dict[str, Any] = next(iter(stats.values()), {})
    raw = first.get("raw_columns") or {}
    return [(str(n), str(t)) for n, t in raw.items()]


def target_fields(instance: dg.DagsterInstance, spec: PipelineSpec, source: SourceSpec) -> list[tuple[str, str]]:
    """The warehouse table's columns as the newest load wrote them."""
    table = _latest(instance, [spec.name, "loaded", source.name]).get("dagster/column_schema")
    return [(c.name, c.type) for c in table.columns] if table is not None else []


def assertions(source: SourceSpec, outcome: SourceOutcome | None) -> dict[str, Any]:
    """One assertion per check, failed if it failed in any of the run's partitions.

    Any: the facet goes among the output's dataset facets, which openlineage's types (it
    declares an input facet) do not allow for.
    """
    checks = {check_name(c): c for c in source.checks}
    passed: dict[str, bool] = {}
    for c in outcome.checks if outcome else []:
        passed[c["name"]] = passed.get(c["name"], True) and bool(c.get("passed"))
    found = [
        dqa.Assertion(
            assertion=checks[n].type, success=ok, column=getattr(checks[n], "column", None),
            severity=checks[n].severity, name=n,
        )
        for n, ok in passed.items() if n in checks
    ]
    return {"dataQualityAssertions": dqa.DataQualityAssertionsDatasetFacet(assertions=found)} if found else {}


# --- datasets -------------------------------------------------------------------------------


def _source_locations(spec: PipelineSpec, source: SourceSpec, outcome: SourceOutcome | None) -> Iterator[tuple[str, str, int | None, int | None]]:
    """(namespace, name, rows, bytes) of what a source reads."""
    where = f"{spec.name}.sources.{source.name}"
    if isinstance(source, CsvSource):
        seen: set[str] = set()
        for inputs in (outcome.inputs if outcome else {}).values():
            for f in inputs.get("files") or []:
                if f.get("path") and f["path"] not in seen:
                    seen.add(f["path"])
                    yield (*file_dataset(inputs.get("path") or source.path, f["path"]), f.get("rows"), f.get("size"))
        return
    rows = outcome.rows_extracted if outcome else None
    if isinstance(source, HttpSource):
        yield (*url_dataset(resolve(source.url, where=f"{where}.url")), rows, None)
    elif source.table:  # a query's tables are not named here
        namespace, database = database_location(resolve(source.connection.url, where=f"{where}.connection.url"))
        yield namespace, table_name(namespace, database, source.table), rows, None


def input_datasets(
    instance: dg.DagsterInstance, spec: PipelineSpec, outcome: RunOutcome | None, logger: Any
) -> list[InputDataset]:
    stats = input_statistics_input_dataset
    datasets = []
    for source in spec.sources:
        s_outcome = outcome.sources.get(source.name) if outcome else None
        try:
            locations = list(_source_locations(spec, source, s_outcome))
        except MissingSecret as e:  # an optional source whose settings are not set
            logger.info(f"{spec.name}/{source.name}: no lineage input: {e}")
            continue
        fields = source_fields(instance, spec, source) if locations else []
        for namespace, name, rows, size in locations:
            input_facets: dict[str, InputDatasetFacet] = {}
            if rows is not None:
                input_facets["inputStatistics"] = stats.InputStatisticsInputDatasetFacet(rowCount=rows, size=size)
            datasets.append(InputDataset(
                namespace=redact(namespace), name=redact(name), facets=_schema(fields), inputFacets=input_facets,
            ))
    return datasets


def output_datasets(
    instance: dg.DagsterInstance, spec: PipelineSpec, outcome: RunOutcome | None, warehouse_url: str
) -> list[OutputDataset]:
    stats = output_statistics_output_dataset
    namespace, database = warehouse_location(spec, warehouse_url)
    datasets = []
    for source in spec.sources:
        s_outcome = outcome.sources.get(source.name) if outcome else None
        output_facets: dict[str, OutputDatasetFacet] = {}
        if s_outcome is not None and s_outcome.inserted is not None:
            written = (s_outcome.inserted or 0) + (s_outcome.updated or 0)
            output_facets["outputStatistics"] = stats.OutputStatisticsOutputDatasetFacet(rowCount=written)
        datasets.append(OutputDataset(
            namespace=redact(namespace),
            name=redact(table_name(namespace, database, spec.target(source))),
            facets={**_schema(target_fields(instance, spec, source)), **assertions(source, s_outcome)},
            outputFacets=output_facets,
        ))
    return datasets


# --- the event ------------------------------------------------------------------------------


def _iso(ts: float | None) -> str:
    when = dt.datetime.fromtimestamp(ts, dt.timezone.utc) if ts else dt.datetime.now(dt.timezone.utc)
    return when.isoformat()


def _version() -> str:
    try:
        return importlib.metadata.version("etl-assets")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def producer() -> str:
    return f"https://pypi.org/project/etl-assets/{_version()}/"


def run_facets(run: dg.DagsterRun, spec: PipelineSpec, outcome: RunOutcome | None, event_type: str) -> dict[str, Any]:
    facets: dict[str, Any] = {
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=dg.__version__, name="Dagster", openlineageAdapterVersion=_version()
        )
    }
    keys = history.partitions_of(run, spec)
    if keys:
        pdef = partitions_def(spec)
        facets["nominalTime"] = nominal_time_run.NominalTimeRunFacet(
            nominalStartTime=window_for(pdef, keys[0]).start_utc.isoformat(),
            nominalEndTime=window_for(pdef, keys[-1]).end_utc.isoformat(),
        )
    if event_type in ("FAIL", "ABORT"):
        default = "the run failed" if event_type == "FAIL" else "the run was canceled"
        message = (outcome.error_summary if outcome else None) or default
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=redact(message), programmingLanguage="python"
        )
    return facets


def build_event(
    instance: dg.DagsterInstance, run: dg.DagsterRun, spec: PipelineSpec, status: dg.DagsterRunStatus,
    *, warehouse_url: str, logger: Any = None,
) -> RunEvent:
    """The OpenLineage event for `run` reaching `status`, from its event log."""
    set_producer(producer())  # the facets built below name this project as their producer
    event_type = EVENT_TYPES[status]
    outcome = None if event_type == "START" else history.build_outcome(instance, run.run_id, spec)
    record = instance.get_run_record_by_id(run.run_id)
    when = (record.start_time if event_type == "START" else record.end_time) if record else None
    job_facets: dict[str, Any] = {
        "jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="DAGSTER", jobType="JOB")
    }
    if spec.description:
        job_facets["documentation"] = documentation_job.DocumentationJobFacet(description=spec.description)
    return RunEvent(
        eventType=RunState(event_type),
        eventTime=_iso(when),
        run=Run(runId=run.run_id, facets=run_facets(run, spec, outcome, event_type)),
        job=Job(namespace=job_namespace(), name=spec.name, facets=job_facets),
        inputs=input_datasets(instance, spec, outcome, logger or log),
        outputs=output_datasets(instance, spec, outcome, warehouse_url),
        producer=producer(),
    )


def _client(factory: Callable[[], OpenLineageClient]) -> OpenLineageClient:
    """A client configured as its documentation says, leaving the environment as it was.

    Building one copies OPENLINEAGE_URL into `OPENLINEAGE__TRANSPORT__…` variables of the
    process and, once they exist, ignores a later OPENLINEAGE_URL: undone here, each event
    follows the configuration of its moment.
    """
    with _ENV_LOCK:
        before = {k: v for k, v in os.environ.items() if k.startswith("OPENLINEAGE__")}
        try:
            return factory()
        finally:
            for k in [k for k in os.environ if k.startswith("OPENLINEAGE__") and k not in before]:
                del os.environ[k]
            os.environ.update(before)


def send(
    instance: dg.DagsterInstance, run: dg.DagsterRun, spec: PipelineSpec, status: dg.DagsterRunStatus,
    *, warehouse_url: str, logger: Any,
) -> None:
    """Build the run's event and send it with a client of the current configuration; raises
    what building or sending raised, for the caller to log."""
    event = build_event(instance, run, spec, status, warehouse_url=warehouse_url, logger=logger)
    client = _client(OpenLineageClient)
    try:
        client.emit(event)
    finally:
        client.close()
