"""End to end, as a user runs it: the CLI on a machine with no database configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from etl_assets.dev import embedded
from etl_assets_tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "etl_assets.cli"]


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETL_", "DAGSTER_"))}
    env["ETL_HOME"] = str(home)
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`etl-assets ARGS` in this process (the same outputs a subprocess gives: `run_cli`)."""
    return run_cli(env, *args, cwd=ROOT)


def cli_process(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`etl-assets ARGS` as a user starts it: a new process."""
    return subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def first_id(stdout: str) -> str:
    return stdout.splitlines()[0].split()[1]


@pytest.fixture
def home(tmp_path: Path):
    """An ETL_HOME whose embedded server this test keeps up, so it can read the warehouse."""
    h = tmp_path / "etl_home"
    with embedded.start(h) as server:
        embedded.ensure_databases(server)
        yield h, embedded.url(server, "warehouse")


@pytest.mark.slow
def test_demo_on_a_fresh_machine(home) -> None:
    h, warehouse = home
    env = clean_env(h)
    # The first two commands as a user starts them; the rest in this process.
    seeded = cli_process(env, "demo", "seed")
    assert seeded.returncode == 0, seeded.stderr
    assert seeded.stdout.startswith("seeded demo: ")

    first = cli_process(env, "run", "demo_sales", "--last", "4")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "SUCCESS" in first.stdout.splitlines()[0]
    report = Path(first.stdout.strip().splitlines()[-1].removeprefix("report: "))
    assert report.is_file() and report.suffix == ".html"
    assert report.parent == h / "storage" / "demo_sales" / "reports"

    again = cli(env, "run", "demo_sales", "--last", "4", "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["status"] == "success"
    assert len(summary["partitions"]) == 4
    for name, s in summary["sources"].items():
        assert (name, s["inserted"], s["updated"]) == (name, 0, 0)
        assert s["unchanged"] > 0

    latest = cli(env, "run", "demo_sales", "--latest", "--json")
    assert latest.returncode == 0, latest.stderr
    s = json.loads(latest.stdout)
    assert s["status"] == "success"
    [key] = s["partitions"]
    with psycopg.connect(warehouse) as conn:
        orders = conn.execute("SELECT count(*) FROM demo_sales.orders WHERE _partition = %s", (key,)).fetchone()[0]
        set_aside = conn.execute(
            "SELECT count(*) FROM demo_sales.orders__quarantine WHERE _partition = %s", (key,)
        ).fetchone()[0]
        products = conn.execute("SELECT count(*) FROM demo_sales.products").fetchone()[0]
    o = s["sources"]["orders"]
    assert o["inserted"] + o["updated"] + o["unchanged"] == orders > 100
    assert s["sources"]["products"]["rows_extracted"] == products == 19
    assert Path(s["report_path"]).is_file()

    # History: one row per run, newest first, with the counts the runs reported.
    hist = cli(env, "history", "demo_sales", "--json")
    assert hist.returncode == 0, hist.stderr
    runs = json.loads(hist.stdout)
    assert [r["run_id"] for r in runs] == [s["run_id"], summary["run_id"], first_id(first.stdout)]
    assert all(r["trigger"] == "cli" and r["status"] == "success" for r in runs)
    newest = runs[0]["sources"]
    # Whatever week today is (even weeks carry a negative quantity the `quarantine` check sets
    # aside), every extracted order is loaded or quarantined; normalize drops none, since the
    # seed's double submit carries a new order id.
    assert newest["orders"]["rows_quarantined"] == set_aside
    assert newest["orders"]["rows_extracted"] == o["rows_extracted"] == orders + set_aside
    assert newest["orders"]["inserted"] == s["sources"]["orders"]["inserted"]
    assert runs[2]["sources"]["orders"]["inserted"] == sum(
        r["sources"]["orders"]["inserted"] for r in runs
    )  # only the first run inserted anything
    last = json.loads(cli(env, "history", "demo_sales", "--last-success", "--json").stdout)
    assert last["run_id"] == s["run_id"]

    shown = cli(env, "show", s["run_id"][:8])
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    for heading in ("What ran", "When", "Inputs", "What changed", "Checks and failures", "Produced"):
        assert f"\n{heading}\n" in text
    assert f"Run {s['run_id']} of demo_sales: SUCCESS" in text
    assert '    query:\n      SELECT ' in text and '\n      FROM "shop"."orders"\n      WHERE "updated_at" >=' in text
    assert "products_core.csv sha256" in text
    assert "orders.not_null_customer_id warned: customer_id is never null" in text
    assert f"report: {s['report_path']}" in text

    # Retention on a fresh demo: nothing is old enough to go.
    pruned = cli(env, "prune", "--dry-run", "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout) == {"dry_run": True, "items": []}


@pytest.mark.slow
def test_step_without_upstream_says_which(home) -> None:
    h, _ = home
    env = clean_env(h)
    assert cli(env, "demo", "seed").returncode == 0
    out = cli(env, "run", "demo_sales", "--partition", "2025-06-01", "--step", "loaded", "--json")
    assert out.returncode == 1
    s = json.loads(out.stdout)
    assert s["status"] == "failed"
    assert s["sources"]["orders"]["error"].startswith(
        "demo_sales/validated/orders is missing for partition(s) 2025-06-01: materialize the validated step first"
    )
    said = cli(env, "run", "demo_sales", "--partition", "2025-06-01", "--step", "loaded")
    assert said.returncode == 1
    lines = (said.stdout + said.stderr).strip().splitlines()
    assert len(lines) <= 10, lines  # the summary, one sentence per failing source, the log's path
    assert "demo_sales orders 2025-06-01: step loaded failed: demo_sales/validated/orders is missing" in said.stdout
    report = cli(env, "run", "demo_sales", "--partition", "2025-06-01", "--step", "report")
    assert report.returncode == 2
    assert "demo_sales/loaded/orders has no materialization for 2025-06-01" in report.stderr

    raw = cli(env, "run", "demo_sales", "--partition", "2025-06-01", "--step", "raw", "--json")
    assert raw.returncode == 0, raw.stderr
    # The seed reaches back to the first partition: an early week has its orders too.
    assert json.loads(raw.stdout)["sources"]["orders"]["rows_extracted"] > 100
    bad = cli(env, "run", "demo_sales", "--partition", "2031-01-05")
    assert bad.returncode == 2
    assert "'2031-01-05' is not a complete partition key" in bad.stderr


def instance_env(tmp_path: Path, instance_url: str, warehouse_url: str) -> dict[str, str]:
    """A production-like environment: DAGSTER_HOME holds the project's dagster.yaml."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = clean_env(tmp_path / "etl_home")
    env.update(DAGSTER_HOME=str(dagster_home), ETL_INSTANCE_URL=instance_url, ETL_WAREHOUSE_URL=warehouse_url)
    return env


def test_instance_migrate_creates_the_schema_once_for_services_starting_together(
    tmp_path: Path, databases, warehouse_url: str
) -> None:
    """What the systemd units run before the daemon and the webserver: both at once on an empty
    instance database, as at first boot."""
    instance_db = databases.new("etl_instance")
    env = instance_env(tmp_path, instance_db.replace("postgresql://", "postgresql+psycopg2://"), warehouse_url)
    procs = [
        subprocess.Popen([*CLI, "instance", "migrate"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip() == f"Dagster instance up to date: {env['DAGSTER_HOME']}"
    with psycopg.connect(instance_db) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1
    assert {"runs", "event_logs", "jobs", "job_ticks", "instance_info", "alembic_version"} <= tables


def test_instance_migrate_names_an_unreachable_database_in_one_sentence(tmp_path: Path, warehouse_url: str) -> None:
    env = instance_env(tmp_path, "postgresql+psycopg2://etl:s3cret-pw@127.0.0.1:1/dagster", warehouse_url)
    out = cli(env, "instance", "migrate")
    assert out.returncode == 1
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("Error: cannot migrate the Dagster instance database (ETL_INSTANCE_URL): ")
    assert "s3cret-pw" not in out.stderr
