"""Steps on Celery workers, with the shipped deploy/celery configuration.

Two real `dagster-celery` workers on the local Redis (broker and result backend), a persistent
instance on a fresh PostgreSQL database, the Parquet layers in a folder both workers share.
One run of a two-source pipeline goes through `celery_executor`; its steps must have run on
both workers, and the warehouse must end up exactly as after an in-process run of the same spec.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import redis
import yaml
from dagster._core.definitions.reconstruct import ReconstructableRepository

from etl_assets.definitions import build_defs
from etl_assets.spec import parse_pipeline
from etl_assets_tests.dagster_services import stop_process_groups
from etl_assets_tests.helpers import create_orders, make_spec, query

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "celery"
BIN = Path(sys.executable).parent
REDIS_URL = os.environ.get("ETL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PARTITIONS = ("2025-03-09", "2025-03-16")
COMPARED = "order_id, customer, amount, updated_at, record_hash, _partition"


pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    # dagster-celery re-registers its task on each submission; harmless.
    pytest.mark.filterwarnings("ignore:Task name 'execute_plan' is already registered"),
]


def _source(name: str, target: str) -> dict[str, Any]:
    base = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")["sources"][0]
    return {
        **base,
        "name": name,
        "load": {"target": target, "strategy": "upsert"},
        "checks": [
            {"type": "unique", "severity": "error"},
            {"type": "not_null", "column": "customer", "severity": "warn"},
        ],
    }


# Two sources: two independent chains of steps, so two steps are ready at the same time.
SPEC = {
    "name": "shop",
    "owners": ["team:data"],
    "timezone": "America/New_York",
    "partitions": {"cadence": "weekly", "start": "2025-01-05"},
    "retries": {"max": 0},
    "sources": [_source("orders", "mart.orders"), _source("orders_copy", "mart_copy.orders")],
    "report": {
        "kpis": [
            {
                "name": "revenue",
                "sql": "SELECT count(*) AS orders, sum(amount) AS revenue FROM mart.orders "
                "WHERE updated_at >= :window_start AND updated_at < :window_end",
            }
        ]
    },
}
RANGE_TAGS = {
    "dagster/asset_partition_range_start": PARTITIONS[0],
    "dagster/asset_partition_range_end": PARTITIONS[-1],
}


def _rows() -> list[tuple]:
    start = dt.datetime(2025, 3, 9, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    return [(i, f"cust{i % 7}" if i % 11 else None, f"{i}.25", start + i * dt.timedelta(minutes=90)) for i in range(1, 201)]


class CeleryWorkers:
    """`dagster-celery worker start` processes, each in its own session, stopped whole at exit."""

    def __init__(self, names: list[str], config: Path, env: dict[str, str], logs: Path):
        self.names, self.config, self.env, self.logs = names, config, env, logs
        self.procs: list[subprocess.Popen] = []

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def __enter__(self) -> CeleryWorkers:
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            for name in self.names:
                out = open(self.log(name), "wb")
                self.procs.append(
                    subprocess.Popen(
                        [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                         "-y", str(self.config), "-n", name, "-l", "INFO",
                         "--", "--concurrency=1", "--without-gossip", "--without-mingle"],
                        cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    )
                )
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.names)
        while pending and time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a Celery worker exited early:\n{self.log_tail()}")
            pending = {n for n in pending if " ready." not in self.log(n).read_text(errors="replace")}
            time.sleep(0.3)
        if pending:
            raise TimeoutError(f"Celery worker(s) {sorted(pending)} not ready:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "".join(
            f"--- {n}\n" + "\n".join(self.log(n).read_text(errors="replace").splitlines()[-lines:]) + "\n"
            for n in self.names
            if self.log(n).exists()
        )

    def stop(self) -> None:
        stop_process_groups(self.procs)  # SIGTERM: a warm shutdown of each worker and its pool

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _workers_by_step(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Step key → the Celery worker that executed it, from the run's engine events."""
    out: dict[str, str] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        data = event.engine_event_data if event else None
        worker = (data.metadata or {}).get("Celery worker") if data else None
        if worker is not None and event.step_key:
            out[event.step_key] = getattr(worker, "value", worker)
    return out


@pytest.fixture
def redis_prefix():
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"no Redis at {REDIS_URL} ({exc}); start it: redis-server --daemonize yes --port 6379")
    prefix = f"etl_test_{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


def test_steps_run_on_two_celery_workers(
    tmp_path: Path, databases, monkeypatch: pytest.MonkeyPatch, redis_prefix: str
) -> None:
    uid = redis_prefix.split("_")[-1].rstrip(":")
    source_url = databases.new("etl_src")
    warehouse_url = databases.new("etl_wh")
    reference_url = databases.new("etl_wh")
    instance_url = databases.new("etl_inst")
    create_orders(source_url, _rows())

    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "shop.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    # The shipped Celery settings, with every Redis key of this test under its own prefix:
    # a worker of anything else on this Redis never takes our steps, nor we theirs.
    config = yaml.safe_load((DEPLOY / "celery.yaml").read_text())
    options = config["execution"]["config"]["config_source"].setdefault("broker_transport_options", {})
    options["global_keyprefix"] = redis_prefix
    celery_yaml = tmp_path / "celery.yaml"
    celery_yaml.write_text(yaml.safe_dump(config))

    env = {
        "DAGSTER_HOME": str(home),
        # dagster-postgres speaks psycopg2; SQLAlchemy 2.1's bare postgresql:// means psycopg 3.
        "ETL_INSTANCE_URL": instance_url.replace("postgresql://", "postgresql+psycopg2://", 1),
        "ETL_PIPELINES_DIR": str(pipelines),
        "ETL_STORAGE_DIR": str(tmp_path / "shared_storage"),  # what every worker reaches
        "ETL_WAREHOUSE_URL": warehouse_url,
        "ETL_HOME": str(tmp_path / "home"),
        "TEST_SOURCE_URL": source_url,
        "ETL_CELERY_CONFIG": str(celery_yaml),
        "ETL_CELERY_BROKER_URL": REDIS_URL,
        "ETL_CELERY_BACKEND_URL": REDIS_URL,
        "GX_ANALYTICS_ENABLED": "false",
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    worker_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT)}
    names = [f"etl-a-{uid}", f"etl-b-{uid}"]

    with CeleryWorkers(names, celery_yaml, worker_env, tmp_path / "logs") as workers:
        recon_job = ReconstructableRepository.for_file(
            str(DEPLOY / "definitions.py"), "defs", working_directory=str(ROOT)
        ).get_reconstructable_job("shop_job")
        with dg.DagsterInstance.get() as instance:
            result = dg.execute_job(recon_job, instance=instance, tags=RANGE_TAGS)
            assert result.success, workers.log_tail()
            by_step = _workers_by_step(instance, result.run_id)
            run = instance.get_run_by_id(result.run_id)
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS

    # Every step went through Celery, and both workers took some.
    steps = {f"shop__{layer}__{s}" for layer in ("raw", "normalized", "validated", "loaded")
             for s in ("orders", "orders_copy")} | {"shop__report"}
    assert set(by_step) == steps, by_step
    hosts = {h.split("@")[0] for h in by_step.values()}
    assert hosts == set(names), by_step

    # The same spec in-process, into another warehouse: the same rows, hashes and partitions.
    monkeypatch.setenv("ETL_WAREHOUSE_URL", reference_url)
    monkeypatch.setenv("ETL_STORAGE_DIR", str(tmp_path / "reference_storage"))
    defs = build_defs([parse_pipeline(SPEC, "shop.yaml")])
    with dg.instance_for_test() as instance:
        reference = defs.resolve_job_def("shop_job").execute_in_process(instance=instance, tags=RANGE_TAGS)
    assert reference.success
    for table in ("mart.orders", "mart_copy.orders"):
        got = query(warehouse_url, f"SELECT {COMPARED} FROM {table} ORDER BY order_id")
        want = query(reference_url, f"SELECT {COMPARED} FROM {table} ORDER BY order_id")
        assert len(got) == 200
        assert got == want
    # The Parquet layers went to the shared storage, one file per partition.
    for layer in ("raw", "normalized", "validated"):
        for k in PARTITIONS:
            assert (tmp_path / "shared_storage" / "shop" / layer / "orders" / f"{k}.parquet").exists()

