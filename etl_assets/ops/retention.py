"""Retention: prune old Dagster runs, history rows and files, keeping what still matters.

Dagster never prunes its runs or event logs, so its storage grows forever. `prune` deletes,
per pipeline's `retention` settings, Dagster runs (with their event logs, through the public
`DagsterInstance.delete_run`), `etl_meta` history rows, and Parquet intermediates, JSON run
logs and reports past their age. It never deletes the latest successful run of any partition,
nor a run that is not finished, nor the files of a partition a running run is processing.
"""

import datetime as dt
from dataclasses import dataclass
from typing import Any

import dagster as dg
import psycopg
from upath import UPath

from etl_assets.core import tags as tag
from etl_assets.core.settings import storage_dir as default_storage_dir
from etl_assets.ops import history
from etl_assets.spec import PipelineSpec
from etl_assets.warehouses.postgres import WarehouseResource

FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
FILE_KINDS = ("raw", "normalized", "validated", "quarantine", "quality", "reports")


@dataclass
class Item:
    kind: str  # dagster_run | history | artifact | run_log
    pipeline: str
    what: str
    age_days: float

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "pipeline": self.pipeline, "what": self.what, "age_days": round(self.age_days, 1)}


def _runs_by_pipeline(instance: dg.DagsterInstance, specs: dict[str, PipelineSpec]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {p: [] for p in specs}
    cursor = None
    while True:
        page = instance.get_run_records(limit=500, cursor=cursor)
        if not page:
            return out
        for rec in page:
            p = history.pipeline_of(rec.dagster_run, instance)
            if p in out:
                out[p].append(rec)
        cursor = page[-1].dagster_run.run_id


def prune(
    instance: dg.DagsterInstance,
    specs: list[PipelineSpec],
    *,
    warehouse_url: str,
    storage_dir: str,
    now: dt.datetime | None = None,
    dry_run: bool = False,
) -> list[Item]:
    now = now or dt.datetime.now(dt.timezone.utc)
    by_name = {s.name: s for s in specs}
    items: list[Item] = []
    runs = _runs_by_pipeline(instance, by_name)
    with psycopg.connect(warehouse_url) as conn:
        history.migrate(conn)
        for name, spec in by_name.items():
            r = spec.retention
            run_cutoff = now - dt.timedelta(days=r.runs_days)
            file_cutoff = now - dt.timedelta(days=r.artifacts_days)
            protected: set[str] = set()
            in_flight: set[str] = set()
            newest: dict[str, tuple[float, str]] = {}
            for rec in runs[name]:
                run = rec.dagster_run
                keys = history.partitions_of(run, spec)
                if run.status not in FINISHED:
                    protected.add(run.run_id)
                    in_flight.update(keys)
                elif run.status == dg.DagsterRunStatus.SUCCESS:
                    ended = rec.end_time or rec.create_timestamp.timestamp()
                    for k in keys:
                        if k not in newest or ended > newest[k][0]:
                            newest[k] = (ended, run.run_id)
            # The history table knows successes whose Dagster runs are already pruned.
            for run_id, keys, finished in conn.execute(
                "SELECT run_id, partitions, finished_at FROM etl_meta.runs WHERE pipeline = %s AND status = 'success'",
                (name,),
            ):
                ended = finished.timestamp() if finished else 0.0
                for k in keys:
                    if k not in newest or ended > newest[k][0]:
                        newest[k] = (ended, run_id)
            if r.keep_last_success:
                protected.update(run_id for _, run_id in newest.values())

            for rec in runs[name]:
                run = rec.dagster_run
                created = rec.create_timestamp
                if run.run_id in protected or run.status not in FINISHED or created >= run_cutoff:
                    continue
                items.append(Item("dagster_run", name, run.run_id, (now - created).total_seconds() / 86400))
                if not dry_run:
                    instance.delete_run(run.run_id)
            old = conn.execute(
                "SELECT run_id, started_at FROM etl_meta.runs WHERE pipeline = %s AND started_at < %s "
                "AND NOT (run_id = ANY(%s)) ORDER BY started_at",
                (name, run_cutoff, list(protected)),
            ).fetchall()
            for run_id, started in old:
                items.append(Item("history", name, run_id, (now - started).total_seconds() / 86400))
            if old and not dry_run:
                conn.execute("DELETE FROM etl_meta.runs WHERE run_id = ANY(%s)", ([r[0] for r in old],))
                conn.commit()
            items.extend(_prune_files(storage_dir, name, file_cutoff, now, in_flight, protected, dry_run))
    return items


def _prune_files(
    base: str, pipeline: str, cutoff: dt.datetime, now: dt.datetime, in_flight: set[str],
    protected_runs: set[str], dry_run: bool,
) -> list[Item]:
    root = UPath(base) / pipeline
    items: list[Item] = []
    if not root.exists():
        return items
    limit = cutoff.timestamp()
    for kind in FILE_KINDS:
        folder = root / kind
        if not folder.exists():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = path.name.split(".", 1)[0]
            mtime = path.stat().st_mtime
            if key in in_flight or mtime >= limit:
                continue
            items.append(Item("artifact", pipeline, str(path), (now.timestamp() - mtime) / 86400))
            if not dry_run:
                path.unlink()
    logs = root / "runs"
    if logs.exists():
        for path in sorted(logs.glob("*.json")):
            run_id = path.name.removesuffix(".json")
            mtime = path.stat().st_mtime
            if run_id in protected_runs or mtime >= limit:
                continue
            items.append(Item("run_log", pipeline, str(path), (now.timestamp() - mtime) / 86400))
            if not dry_run:
                path.unlink()
    return items


def build_retention(specs: list[PipelineSpec]) -> tuple[Any, Any]:
    """The daily `etl_retention_schedule` and the job it runs: the same code as `etl-assets prune`."""
    @dg.op(description="Prune runs, history and files past each pipeline's retention.")
    def prune_expired(context: dg.OpExecutionContext, warehouse: WarehouseResource) -> None:
        removed = prune(context.instance, specs, warehouse_url=warehouse.url, storage_dir=default_storage_dir())
        for item in removed:
            context.log.info(f"pruned {item.kind} {item.pipeline} {item.what} ({item.age_days:.0f} days old)")
        context.log.info(f"retention: {len(removed)} item(s) pruned")

    @dg.job(name="etl_retention_job", description="Retention: prune what is past its age.", tags={tag.TRIGGER: "retention"})
    def retention_job() -> None:
        prune_expired()

    schedule = dg.ScheduleDefinition(
        name="etl_retention_schedule",
        job=retention_job,
        cron_schedule="30 3 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Daily at 03:30 UTC: prune runs, history and files past their retention.",
    )
    return retention_job, schedule
