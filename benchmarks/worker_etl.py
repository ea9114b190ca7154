"""The variants that run etl-assets in-process, through Dagster.

  etl_assets  (c) raw → normalized → validated → loaded, one run of the job's weeks
  overhead    (c) on a tiny partition, broken down: imports, definitions, instance, each step
  small_etl   (c) on the five small-partitions sources, one run of the job's weeks

Imports are inside the functions: the worker measures its own import time.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import SCHEMAS, SMALL_SOURCES, small_spec_dict, spec_dict, week_key

LAYERS = ("raw", "normalized", "validated", "loaded")


def _etl_env(job: dict[str, Any]) -> None:
    os.environ["BENCH_SOURCE_URL"] = job["source_url"]
    os.environ["ETL_WAREHOUSE_URL"] = job["warehouse_url"]
    os.environ["ETL_STORAGE_DIR"] = job["storage_dir"]
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


def _partition_kwargs(job: dict[str, Any]) -> dict[str, Any]:
    keys = [week_key(w) for w in range(job["first_week"], job["first_week"] + job["weeks"])]
    if len(keys) == 1:
        return {"partition_key": keys[0]}
    return {
        "tags": {
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        }
    }


def _step_durations(instance: Any, run_id: str) -> dict[str, float]:
    import dagster as dg

    starts, out = {}, {}
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is None or not ev.step_key:
            continue
        if ev.event_type == dg.DagsterEventType.STEP_START:
            starts[ev.step_key] = entry.timestamp
        elif ev.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            out[ev.step_key.split("__")[1] if "__" in ev.step_key else ev.step_key] = round(
                entry.timestamp - starts.get(ev.step_key, entry.timestamp), 3
            )
    return out


def _loaded_counts(result: Any) -> dict[str, int]:
    """inserted / updated / unchanged, summed over the sources' `loaded` assets. A range run
    records the run's totals on every partition's materialization: one event per asset counts."""
    per_asset: dict[Any, Any] = {}
    for ev in result.get_asset_materialization_events():
        if ev.asset_key.path[1] == "loaded":
            per_asset[ev.asset_key] = ev.step_materialization_data.materialization.metadata
    counts: dict[str, int] = {}
    for md in per_asset.values():
        for f in ("inserted", "updated", "unchanged"):
            counts[f] = counts.get(f, 0) + int(getattr(md.get(f), "value", 0) or 0)
    return counts


def run_pipeline(job: dict[str, Any], spec_d: dict[str, Any], sources: list[str], instance_kind: str) -> dict[str, Any]:
    """One run of `spec_d` over the job's weeks; wall time and a breakdown of where it went."""
    t0 = time.perf_counter()
    _etl_env(job)
    import dagster as dg

    from etl_assets.definitions import build_defs
    from etl_assets.spec import parse_pipeline

    t_imports = time.perf_counter()
    spec = parse_pipeline(spec_d, "bench.yaml")
    defs = build_defs([spec])
    t_defs = time.perf_counter()
    dg.Definitions.validate_loadable(defs)
    t_validate = time.perf_counter()
    job_def = defs.resolve_job_def(f"{spec.name}_job")
    selection = [dg.AssetKey([spec.name, layer, source]) for source in sources for layer in LAYERS]
    t_job = time.perf_counter()
    with _instance(instance_kind, job) as instance:
        t_instance = time.perf_counter()
        result = job_def.execute_in_process(
            instance=instance,
            raise_on_error=True,
            asset_selection=selection,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            **_partition_kwargs(job),
        )
        t_run = time.perf_counter()
        steps = _step_durations(instance, result.run_id)
    t_end = time.perf_counter()
    run_s = t_run - t_instance
    return {
        # The measured wall time: build definitions, open the instance, run, close the instance.
        "wall_s": (t_end - t_imports) - (t_validate - t_defs),
        "rows": job["rows"],
        **_loaded_counts(result),
        "breakdown": {
            "imports_s": round(t_imports - t0, 3),
            "build_defs_s": round(t_defs - t_imports, 3),
            "validate_loadable_s": round(t_validate - t_defs, 3),
            "resolve_job_s": round(t_job - t_validate, 3),
            "instance_s": round(t_instance - t_job, 3),
            "execute_in_process_s": round(run_s, 3),
            "steps_s": steps,
            "run_overhead_s": round(run_s - sum(steps.values()), 3),
            "instance_close_s": round(t_end - t_run, 3),
        },
    }


def run_etl_assets(job: dict[str, Any], step: dict[str, Any], *, instance_kind: str = "persistent") -> dict[str, Any]:
    schema = SCHEMAS.get(job["variant"], SCHEMAS["etl_assets"])
    return run_pipeline(job, spec_dict(step["table"], target_schema=schema), ["orders"], instance_kind)


def run_small_etl(job: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    return run_pipeline(job, small_spec_dict(), [n for n, _, _ in SMALL_SOURCES], "persistent")


def run_overhead(job: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    out = run_etl_assets(job, step, instance_kind=step.get("instance", "test"))
    out["instance_kind"] = step.get("instance", "test")
    return out


class _instance:
    """`test`: dg.instance_for_test() (SQLite in a temp dir); `ephemeral`: in memory;
    `postgres`: a persistent instance on PostgreSQL, as production runs use; `persistent`: SQLite
    in the variant's state folder, kept across its runs (reset with it), as production's is."""

    def __init__(self, kind: str, job: dict[str, Any]):
        self.kind, self.job, self._cm, self._tmp = kind, job, None, None

    def __enter__(self):
        import dagster as dg

        if self.kind == "ephemeral":
            self._inst = dg.DagsterInstance.ephemeral()
            return self._inst
        if self.kind == "postgres":
            self._tmp = tempfile.TemporaryDirectory(prefix="bench_dagster_home_")
            # dagster-postgres speaks psycopg2; SQLAlchemy 2.1's bare postgresql:// means psycopg 3.
            url = self.job["instance_url"].replace("postgresql://", "postgresql+psycopg2://", 1)
            self._cm = dg.instance_for_test(
                temp_dir=self._tmp.name,
                overrides={"storage": {"postgres": {"postgres_url": url}}, "telemetry": {"enabled": False}},
            )
            return self._cm.__enter__()
        if self.kind == "persistent":
            home = Path(self.job["storage_dir"]).parent / "dagster_home"
            home.mkdir(parents=True, exist_ok=True)
            self._cm = dg.instance_for_test(temp_dir=str(home), overrides={"telemetry": {"enabled": False}})
            return self._cm.__enter__()
        self._cm = dg.instance_for_test(overrides={"telemetry": {"enabled": False}})
        return self._cm.__enter__()

    def __exit__(self, *exc):
        if self._cm is not None:
            self._cm.__exit__(*exc)
        if self._tmp is not None:
            self._tmp.cleanup()
        return False
