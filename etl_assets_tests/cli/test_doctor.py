"""`etl-assets doctor` against a real webserver, daemon and PostgreSQL, and against nothing."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from etl_assets_tests.dagster_services import ROOT, DagsterServices, free_port


def checks(report: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


@pytest.mark.slow
@pytest.mark.timeout(1800)  # services and a daemon starting on a shared, loaded machine
def test_doctor_names_the_daemon_down_until_it_runs(webserver: DagsterServices, start_daemon, ops_cli) -> None:
    args = ("doctor", "--url", webserver.url)
    down = ops_cli(webserver.env, *args)
    assert down.returncode == 1, down.stdout + down.stderr
    lines = down.stdout.splitlines()
    daemons = [line for line in lines if line.startswith("daemon ")]
    assert daemons and all(" DOWN " in line and "no heartbeat" in line for line in daemons), lines
    assert any(line.startswith("daemon SCHEDULER ") for line in daemons), daemons
    for name in ("webserver", "instance", "warehouse"):
        [line] = [x for x in lines if x.split()[0] == name]
        assert line.split()[1] == "OK", line

    report = json.loads(ops_cli(webserver.env, *args, "--json").stdout)  # pure JSON
    assert report["ok"] is False
    assert checks(report)["daemon QUEUED_RUN_COORDINATOR"] == "DOWN"
    assert checks(report)["webserver"] == "OK"

    start_daemon(webserver)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        up = ops_cli(webserver.env, *args, "--json")
        if up.returncode == 0:
            break
        time.sleep(2)
    assert up.returncode == 0, up.stdout + webserver.log_tail()
    report = json.loads(up.stdout)
    assert report["ok"] is True and set(checks(report).values()) == {"OK"}
    assert "daemon SCHEDULER" in checks(report)
    text = ops_cli(webserver.env, *args)
    assert text.returncode == 0
    assert text.stdout and all(" OK " in line for line in text.stdout.splitlines()), text.stdout


def test_doctor_reports_unreachable_services_without_their_passwords(tmp_path: Path, ops_cli) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()  # nothing listens there
    secret = "Sup3rS3cretPassw0rd"
    env = {
        "ETL_HOME": str(tmp_path / "etl_home"),
        "DAGSTER_HOME": str(home),
        "ETL_WAREHOUSE_URL": f"postgresql://etl:{secret}@127.0.0.1:{port}/warehouse",
        "ETL_INSTANCE_URL": f"postgresql+psycopg2://etl:{secret}@127.0.0.1:{port}/dagster",
    }
    done = ops_cli(env, "doctor", "--url", f"http://127.0.0.1:{port}")
    assert done.returncode == 1
    assert secret not in done.stdout + done.stderr
    assert done.stderr == ""
    by_name = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert set(by_name) == {"daemon", "webserver", "instance", "warehouse"}, done.stdout
    assert all(line.split()[1] == "DOWN" for line in by_name.values()), done.stdout
    assert f"127.0.0.1:{port}" in by_name["warehouse"]
    assert "instance" in by_name["daemon"]  # heartbeats live in the instance it cannot reach

    as_json = ops_cli(env, "doctor", "--url", f"http://127.0.0.1:{port}", "--json")
    assert as_json.returncode == 1 and secret not in as_json.stdout
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and set(checks(report).values()) == {"DOWN"}
