"""The CLI and UI scenarios: what a user waits for, process start to exit.

- `cli_run`: `etl-assets run demo_sales --partition K`, one demo partition, process wall.
- `ui_run`: the same partition launched as the UI does (GraphQL `launchRun` on a real
  dagster-webserver, queued and run by a real dagster-daemon), from the launch request to the
  run's end as the instance records it. Each path has its own deployment (a PostgreSQL-backed
  instance in a temp DAGSTER_HOME, storage folder and warehouse), so each run is a first load.
- `cli_history`: `etl-assets history demo_sales --limit 5` after the CLI runs.
- `tiny_run`: `etl-assets run` of the 100-row `src.orders_tiny` partition, process wall.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import yaml

from benchmarks import datagen
from benchmarks.common import SCHEMAS, pg_url, spec_dict, week_key
from benchmarks.process import child_env, run_cli
from benchmarks.scenarios.services import Services

if TYPE_CHECKING:
    from benchmarks.run import Suite

DEMO = "demo_sales"
# One demo partition per repetition, the same for both paths.
DEMO_PARTITIONS = ["2025-03-02", "2025-03-09", "2025-03-16", "2025-03-23", "2025-03-30"]
VARIANTS = ("cli_run", "ui_run", "cli_history", "tiny_run")


# The demo's customers come from MariaDB when one answers here: a database of the suite's own.
MYSQL = os.environ.get("ETL_BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306")


def _databases(suite: Suite) -> dict[str, str]:
    prefix = suite.src_db.removesuffix("_src")
    return {k: f"{prefix}_{k}" for k in ("demo", "wh_cli", "wh_ui", "inst_cli", "inst_ui", "crm")}


def _mysql(sql_text: str | None = None) -> bool:
    """Run one statement on the MariaDB server (or only connect); False if none answers."""
    import pymysql  # only here: the rest of the suite does not need MariaDB

    u = urlparse(MYSQL)
    try:
        conn = pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username or "root",
                               password=u.password or "", connect_timeout=2)
    except pymysql.MySQLError:
        return False
    try:
        if sql_text:
            conn.cursor().execute(sql_text)
    finally:
        conn.close()
    return True


@functools.cache
def _mysql_up() -> bool:
    return _mysql()


def _env(suite: Suite, dbs: dict[str, str], path: str) -> dict[str, str]:
    """`path` (cli or ui) has a deployment of its own: instance, storage and warehouse."""
    home = suite.work / "cli_home"
    return child_env(suite.code_dir, {
        "ETL_HOME": str(home),
        "ETL_STORAGE_DIR": str(home / f"storage_{path}"),
        "DAGSTER_HOME": str(home / f"dagster_home_{path}"),
        "ETL_INSTANCE_URL": pg_url(dbs[f"inst_{path}"], "psycopg2"),
        "ETL_WAREHOUSE_URL": pg_url(dbs[f"wh_{path}"]),
        "ETL_DEMO_SOURCE_URL": pg_url(dbs["demo"]),
        **({"ETL_DEMO_MYSQL_URL": f"{MYSQL}/{dbs['crm']}"} if _mysql_up() else {}),
        "ETL_PIPELINES_DIR": str(suite.code_dir / "pipelines"),
        "BENCH_SOURCE_URL": pg_url(suite.src_db),
    })


def _record(suite: Suite, variant: str, rep: int, wall: float, **extra: Any) -> None:
    suite.runs.append({"variant": variant, "label": "cli", "scenario": variant, "rep": rep,
                       "wall_s": round(wall, 3), **extra})
    suite.log(f"{variant:<14} rep {rep}: {wall:.2f} s")


def _cli(suite: Suite, env: dict[str, str], args: list[str], name: str) -> tuple[str, dict[str, Any]]:
    return run_cli(args, cwd=suite.code_dir, env=env, log_dir=suite.log_dir, name=name, timeout=suite.timeout)


def _prepare(suite: Suite, dbs: dict[str, str]) -> dict[str, str]:
    for key, db in dbs.items():
        if key != "crm":
            datagen.drop_database(db)
            datagen.ensure_database(db)
    for path in ("ui", "cli"):
        env = _env(suite, dbs, path)
        home = Path(env["DAGSTER_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(suite.code_dir / "dagster.yaml", home / "dagster.yaml")
        _cli(suite, env, ["instance", "migrate"], f"migrate_{path}")
    _cli(suite, env, ["demo", "seed"], "seed")
    return env


def _cli_runs(suite: Suite, env: dict[str, str]) -> None:
    for rep in range(suite.p.cli_reps):
        _, proc = _cli(suite, env, ["run", DEMO, "--partition", DEMO_PARTITIONS[rep]], "run")
        _record(suite, "cli_run", rep, proc["process_wall_s"], peak_rss_mb=proc["peak_rss_mb"],
                partition=DEMO_PARTITIONS[rep])
    for rep in range(suite.p.cli_reps):
        out, proc = _cli(suite, env, ["history", DEMO, "--limit", "5"], "history")
        _record(suite, "cli_history", rep, proc["process_wall_s"], peak_rss_mb=proc["peak_rss_mb"],
                lines=len(out.splitlines()))
    for rep in range(suite.p.cli_reps):
        # A pipelines folder of its own, and a new target each time: every run is a first load.
        pdir = suite.work / f"pipelines_tiny_{rep}"
        pdir.mkdir(exist_ok=True)
        spec = spec_dict("src.orders_tiny", name="bench_tiny", target_schema=f"{SCHEMAS['overhead']}_cli_{rep}")
        (pdir / "bench_tiny.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        _, proc = _cli(suite, {**env, "ETL_PIPELINES_DIR": str(pdir)},
                       ["run", "bench_tiny", "--partition", week_key(0)], "tiny")
        _record(suite, "tiny_run", rep, proc["process_wall_s"], peak_rss_mb=proc["peak_rss_mb"])


def _ui_runs(suite: Suite, dbs: dict[str, str]) -> None:
    with Services(suite.code_dir, _env(suite, dbs, "ui"), suite.work / "services_logs") as services:
        for rep in range(suite.p.cli_reps):
            partition = DEMO_PARTITIONS[rep]
            requested = time.time()
            run_id = services.launch_partition(DEMO, partition)
            run = services.wait_run(run_id, suite.timeout)
            if run["status"] != "SUCCESS":
                raise RuntimeError(f"UI run {run_id} of {partition}: {run['status']}\n{services.log_tail()}")
            _record(suite, "ui_run", rep, run["endTime"] - requested, partition=partition,
                    queued_s=round(run["startTime"] - requested, 3))


def run_cli_scenarios(suite: Suite) -> None:
    """Every CLI run first, then the UI runs (no daemon is up while the CLI runs)."""
    dbs = _databases(suite)
    try:
        env = _prepare(suite, dbs)
        _cli_runs(suite, env)
        _ui_runs(suite, dbs)
    except (RuntimeError, TimeoutError) as e:  # one failed scenario does not lose the others
        suite.log(str(e))
        suite.notes.append(f"CLI/UI scenarios failed: {str(e).splitlines()[0][:300]}")
    finally:
        if not suite.args.keep_databases:
            for key, db in dbs.items():
                if key != "crm":
                    datagen.drop_database(db)
            if _mysql_up():
                _mysql(f"DROP DATABASE IF EXISTS `{dbs['crm']}`")  # the name is the suite's own
