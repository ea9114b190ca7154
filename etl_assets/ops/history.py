"""Run history: what ran, when, on which inputs, what changed, what failed, what was produced.

A run's record is its `RunOutcome` (`core.outcome`), read from Dagster's event log by
`ops.outcome_reader`, so a run launched by the daemon, from the UI or by `etl-assets run` is
described the same way. It is stored in the warehouse schema `etl_meta` (versioned,
idempotent migrations, here) and as a JSON log per run (`ops.history_store`).
"""

from __future__ import annotations

import resource

import dagster as dg

from etl_assets.core import tags as tag
from etl_assets.core.outcome import (
    LOAD_COUNTS,
    SOURCE_LAYERS,
    TOTALS,
    PartitionOutcome,
    RunOutcome,
    SourceOutcome,
    StepOutcome,
)
from etl_assets.ops.history_schema import MIGRATIONS, SCHEMA, migrate
from etl_assets.ops.history_store import (
    count_runs,
    get_run,
    list_runs,
    missed_tick_note,
    set_pipeline_state,
    statuses,
    write_json_log,
    write_record,
)
from etl_assets.ops.outcome_reader import build_outcome, partitions_of, pipeline_of, trigger_of

# Re-exported: the CLI, the job API and the runner read history through this module.
__all__ = [
    "LOAD_COUNTS", "MIGRATIONS", "SCHEMA", "SOURCE_LAYERS", "STARTED_BY_TAG", "TOTALS",
    "PartitionOutcome", "RunOutcome", "SourceOutcome", "StepOutcome",
    "build_outcome", "count_runs", "get_run", "list_runs", "migrate", "missed_tick_note",
    "partitions_of", "pipeline_of", "set_pipeline_state", "statuses", "step_metrics",
    "trigger_of", "usage", "write_json_log", "write_record",
]

STARTED_BY_TAG = tag.STARTED_BY


# --- step metrics ---------------------------------------------------------------------------


def usage() -> resource.struct_rusage:
    """This process's resource use so far: a step's metrics are the difference."""
    return resource.getrusage(resource.RUSAGE_SELF)


def step_metrics(start: resource.struct_rusage) -> dict[str, dg.MetadataValue]:
    """CPU seconds of the step and peak RSS of its process, for the asset's metadata."""
    end = usage()
    cpu = (end.ru_utime + end.ru_stime) - (start.ru_utime + start.ru_stime)
    return {
        tag.CPU_S: dg.MetadataValue.float(round(cpu, 3)),
        tag.PEAK_RSS_MB: dg.MetadataValue.float(round(end.ru_maxrss / 1024, 1)),
    }

