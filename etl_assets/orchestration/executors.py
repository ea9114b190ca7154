"""Where a run's steps execute: one process for the whole run, or a process per step.

`in_process` (the default) runs every step in the run's own worker process, as `etl-assets run`
does: a one-partition run launched from the UI then costs what the CLI's does, with no step
paying for its own interpreter, imports and great-expectations context. `multiprocess` runs up
to four steps at once, each in a process forked from a server that imported the code location
and great-expectations once per run: for pipelines whose sources are big enough that running
them side by side beats the forks (README "Performance"). A pipeline picks one with
`executor:`; the code location's default serves the rest and the UI's asset materializations,
and a deployment may replace that default (deploy/celery).
"""

from __future__ import annotations

import dagster as dg

from etl_assets.spec import PipelineSpec

# Imported once per run by the forkserver, so no step process imports them again.
PRELOAD = ["etl_assets.definitions", "great_expectations", "etl_assets.quality.gx"]

MULTIPROCESS = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": PRELOAD}}, "max_concurrent": 4},
    name="multiprocess",
)
IN_PROCESS = dg.in_process_executor

DEFAULT = IN_PROCESS


def executor_for(spec: PipelineSpec) -> dg.ExecutorDefinition | None:
    """`spec`'s own executor, or None for the code location's default."""
    if spec.executor is None:
        return None
    return MULTIPROCESS if spec.executor == "multiprocess" else IN_PROCESS
