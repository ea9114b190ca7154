"""The job API against a real dagster-webserver, daemon and PostgreSQL: every endpoint with
each role, and a pipeline's life through it: create, list, run, history, delete.

The tests share one set of services and run in file order; later ones read what earlier ones did.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import yaml

from etl_assets.ops import history
from etl_assets_tests.dagster_services import ROOT
from etl_assets_tests.helpers import query

from .conftest import SHOP, Stack

pytestmark = pytest.mark.slow

SHOP2 = copy.deepcopy(SHOP)
SHOP2["name"] = "shop2"
SHOP2["sources"][0]["load"]["target"] = "mart.orders2"
YAML = {"Content-Type": "application/yaml"}


def location_jobs(stack: Stack) -> set[str]:
    """The jobs the UI's code location shows."""
    data = stack.services.graphql(
        '{ repositoryOrError(repositorySelector: {repositoryLocationName: "etl_assets", '
        'repositoryName: "__repository__"}) { ... on Repository { jobs { name } } } }'
    )
    return {j["name"] for j in data["repositoryOrError"]["jobs"]}


def wait_recorded(stack: Stack, run_id: str, timeout: float = 600) -> None:
    """Until the daemon's run-status sensor has written the run's history."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if query(stack.api.warehouse_url, "SELECT count(*) FROM etl_meta.runs WHERE run_id = %s", (run_id,)) == [(1,)]:
            return
        time.sleep(1)
    raise TimeoutError(f"run {run_id} was not recorded:\n{stack.services.log_tail()}")


def test_every_role_reads_the_pipelines(stack: Stack) -> None:
    for role in ("viewer", "operator", "admin"):
        r = stack.api.call("GET", "/pipelines", role)
        assert r.status_code == 200, r.text
        [p] = r.json()
        assert {k: p[k] for k in ("name", "schedule", "cron", "schedule_words", "timezone", "state", "last_run")} == {
            "name": "shop", "schedule": "shop_schedule", "cron": "0 6 * * 1",
            "schedule_words": "every Monday at 06:00 America/New_York, for the week that just ended",
            "timezone": "America/New_York", "state": "active", "last_run": None,
        }
        assert p["next_tick"] is not None
        assert p["sources"] == [{"name": "orders", "kind": "postgres", "mode": "incremental", "target": "mart.orders"}]
    one = stack.api.call("GET", "/pipelines/shop", "viewer").json()
    assert one["spec"]["sources"][0]["table"] == "src.orders"
    assert stack.api.call("GET", "/pipelines/nope", "viewer").json() == {"detail": "no pipeline named 'nope'"}


def test_operators_pause_and_resume_a_schedule(stack: Stack) -> None:
    assert stack.api.call("POST", "/pipelines/shop/disable", "viewer").status_code == 403
    r = stack.api.call("POST", "/pipelines/shop/disable", "operator")
    assert r.json() == {"pipeline": "shop", "schedule": "shop_schedule", "state": "STOPPED"}, r.text
    [p] = stack.api.call("GET", "/pipelines", "viewer").json()
    assert (p["state"], p["state_reason"]) == ("paused", "paused through the API by operator")
    r = stack.api.call("POST", "/pipelines/shop/enable", "admin")
    assert r.json()["state"] == "RUNNING"
    assert stack.api.call("GET", "/pipelines", "viewer").json()[0]["state"] == "active"
    assert [a[:6] for a in stack.api.audit()] == [
        ("viewer", "viewer", "schedule.disable", "shop", "refused", 403),
        ("operator", "operator", "schedule.disable", "shop", "allowed", 200),
        ("admin", "admin", "schedule.enable", "shop", "allowed", 200),
    ]


def test_admins_create_a_pipeline_validated_as_validate_does(stack: Stack, tmp_path) -> None:
    bad = copy.deepcopy(SHOP2)
    bad["sources"][0]["load"]["strategy"] = "merge"
    # What `etl-assets validate` says of the same file.
    (tmp_path / "shop2.yaml").write_text(yaml.safe_dump(bad))
    said = subprocess.run([sys.executable, "-m", "etl_assets.cli", "validate", str(tmp_path / "shop2.yaml")],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert said.returncode == 1
    message = re.sub(r"^(?i:error): ", "", said.stderr.strip())
    expected = message.replace(str(tmp_path), str(stack.api.pipelines))
    r = stack.api.call("POST", "/pipelines", "admin", data=yaml.safe_dump(bad), headers=dict(YAML))
    assert (r.status_code, r.json()) == (422, {"detail": expected})
    assert "sources[0].load.strategy" in expected

    r = stack.api.call("POST", "/pipelines", "admin", data="name: [unclosed", headers=dict(YAML))
    assert r.json() == {"detail": "request body: invalid YAML at line 1, column 16: expected ',' or ']', but got "
                        "'<stream end>'"}

    shared = copy.deepcopy(SHOP2)
    shared["sources"][0]["load"]["target"] = "mart.orders"
    r = stack.api.call("POST", "/pipelines", "admin", data=yaml.safe_dump(shared), headers=dict(YAML))
    assert r.status_code == 422 and "mart.orders is also loaded by" in r.json()["detail"], r.text

    r = stack.api.call("POST", "/pipelines", "operator", data=yaml.safe_dump(SHOP2), headers=dict(YAML))
    assert r.status_code == 403
    r = stack.api.call("POST", "/pipelines", "admin", data=yaml.safe_dump(SHOP), headers=dict(YAML))
    assert r.status_code == 409 and r.json()["detail"].startswith("pipeline 'shop' already exists in "), r.text
    assert sorted(p.name for p in stack.api.pipelines.iterdir()) == ["shop.yaml"]  # nothing written

    r = stack.api.call("POST", "/pipelines", "admin", data=yaml.safe_dump(SHOP2), headers=dict(YAML))
    assert r.status_code == 201, r.text
    assert r.json() == {"name": "shop2", "path": str(stack.api.pipelines / "shop2.yaml")}
    assert [p["name"] for p in stack.api.call("GET", "/pipelines", "viewer").json()] == ["shop", "shop2"]
    assert "shop2_job" in location_jobs(stack)

    # PUT replaces it under the same checks.
    changed = copy.deepcopy(SHOP2)
    changed["description"] = "orders again"
    r = stack.api.call("PUT", "/pipelines/shop2", "admin", data=yaml.safe_dump(changed), headers=dict(YAML))
    assert r.status_code == 200, r.text
    assert stack.api.call("GET", "/pipelines/shop2", "viewer").json()["description"] == "orders again"
    r = stack.api.call("PUT", "/pipelines/shop2", "admin", data=yaml.safe_dump(SHOP), headers=dict(YAML))
    assert r.status_code == 422 and r.json()["detail"].endswith("name: must stay 'shop2' (the pipeline replaced)")
    assert stack.api.call("PUT", "/pipelines/nope", "admin", data=yaml.safe_dump(SHOP2),
                          headers=dict(YAML)).status_code == 404


def test_operators_run_a_partition_and_read_its_history(stack: Stack) -> None:
    assert stack.api.call("POST", "/pipelines/shop2/runs", "viewer", json={"partition": "2025-03-09"}).status_code == 403
    r = stack.api.call("POST", "/pipelines/shop2/runs", "operator", json={"partition": "2025-13-09"})
    assert r.status_code == 422 and r.json()["detail"].startswith("shop2: '2025-13-09' is not a complete partition key")
    r = stack.api.call("POST", "/pipelines/shop2/runs", "operator", json={"partition": "2025-03-09", "from": "2025-03-02"})
    assert r.json() == {"detail": "shop2: give either partition, or both from and to"}

    r = stack.api.call("POST", "/pipelines/shop2/runs", "operator", json={"partition": "2025-03-09"})
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]
    assert r.json() == {"run_id": run_id, "pipeline": "shop2", "partitions": ["2025-03-09"], "started_by": "operator"}
    assert stack.services.wait_run(run_id, timeout=900) == "SUCCESS", stack.services.log_tail()
    assert query(stack.env["ETL_WAREHOUSE_URL"], "SELECT count(*) FROM mart.orders2") == [(30,)]
    wait_recorded(stack, run_id)

    page = stack.api.call("GET", "/pipelines/shop2/runs", "viewer").json()
    assert [(r["run_id"], r["status"], r["partitions"], r["trigger"]) for r in page["runs"]] == [
        (run_id, "success", ["2025-03-09"], "manual")
    ]
    assert stack.api.call("GET", "/pipelines/shop2/runs?status=failed", "viewer").json()["runs"] == []
    assert stack.api.call("GET", "/pipelines/shop2/runs?page=2&page_size=1", "viewer").json()["runs"] == []
    assert stack.api.call("GET", "/pipelines/shop2/runs?status=bogus", "viewer").status_code == 422

    # `etl-assets show --json` prints the recorded run as JSON (json.dumps(default=str)).
    with psycopg.connect(stack.api.warehouse_url) as conn:
        shown = json.loads(json.dumps(history.get_run(conn, run_id), default=str))
    assert shown["started_by"] == "operator"  # history says who started the run
    explained = stack.api.call("GET", f"/runs/{run_id}", "viewer").json()
    assert explained == shown
    assert stack.api.call("GET", "/runs/0123456789ab", "viewer").json() == {"detail": "no run matches '0123456789ab'"}
    [p] = [p for p in stack.api.call("GET", "/pipelines", "viewer").json() if p["name"] == "shop2"]
    assert (p["last_run"], p["last_status"], p["success_rate"]) == (run_id, "SUCCESS", 1.0)


def test_operators_cancel_a_run(stack: Stack) -> None:
    r = stack.api.call("POST", "/pipelines/shop2/runs", "operator", json={"from": "2025-02-02", "to": "2025-03-02"})
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]
    assert r.json()["partitions"] == ["2025-02-02", "2025-02-09", "2025-02-16", "2025-02-23", "2025-03-02"]
    assert stack.api.call("POST", f"/runs/{run_id}/cancel", "viewer").status_code == 403
    r = stack.api.call("POST", f"/runs/{run_id}/cancel", "operator")
    assert r.status_code == 200, r.text
    assert stack.services.wait_run(run_id, timeout=900) == "CANCELED"
    r = stack.api.call("POST", f"/runs/{run_id}/cancel", "operator")
    assert r.status_code == 409 and r.json()["detail"].startswith(f"run {run_id} cannot be canceled"), r.text
    r = stack.api.call("POST", "/runs/0123456789ab/cancel", "operator")
    assert (r.status_code, r.json()) == (404, {"detail": "no run 0123456789ab"})


def test_admins_delete_a_pipeline_and_keep_its_data(stack: Stack) -> None:
    assert stack.api.call("DELETE", "/pipelines/shop2", "operator").status_code == 403
    r = stack.api.call("DELETE", "/pipelines/shop2", "admin")
    assert r.status_code == 200, r.text
    archived = r.json()["archived_to"]
    assert archived.startswith(str(stack.api.pipelines / "archive" / "shop2."))
    assert yaml.safe_load(Path(archived).read_text())["name"] == "shop2"
    assert [p["name"] for p in stack.api.call("GET", "/pipelines", "viewer").json()] == ["shop"]
    assert "shop2_job" not in location_jobs(stack)
    assert query(stack.env["ETL_WAREHOUSE_URL"], "SELECT count(*) FROM mart.orders2") == [(30,)]
    assert stack.api.call("DELETE", "/pipelines/shop2", "admin").status_code == 404


def test_the_audit_trail_has_a_row_for_each_change(stack: Stack) -> None:
    assert stack.api.call("GET", "/audit", "operator").status_code == 403
    entries = stack.api.call("GET", "/audit?page_size=500", "admin").json()["entries"]
    got = [(e["token_name"], e["action"], e["target"], e["outcome"], e["status"]) for e in reversed(entries)]
    assert got[3:] == [
        ("admin", "pipeline.create", "shop2", "failed", 422),
        ("admin", "pipeline.create", None, "failed", 422),
        ("admin", "pipeline.create", "shop2", "failed", 422),
        ("operator", "pipeline.create", None, "refused", 403),
        ("admin", "pipeline.create", "shop", "failed", 409),
        ("admin", "pipeline.create", "shop2", "allowed", 201),
        ("admin", "pipeline.update", "shop2", "allowed", 200),
        ("admin", "pipeline.update", "shop2", "failed", 422),
        ("admin", "pipeline.update", "nope", "failed", 404),
        ("viewer", "run.start", "shop2", "refused", 403),
        ("operator", "run.start", "shop2", "failed", 422),
        ("operator", "run.start", "shop2", "failed", 422),
        ("operator", "run.start", "shop2", "allowed", 202),
        ("operator", "run.start", "shop2", "allowed", 202),
        ("viewer", "run.cancel", entries[-1 - 17]["target"], "refused", 403),
        ("operator", "run.cancel", entries[-1 - 17]["target"], "allowed", 200),
        ("operator", "run.cancel", entries[-1 - 17]["target"], "failed", 409),
        ("operator", "run.cancel", "0123456789ab", "failed", 404),
        ("operator", "pipeline.delete", "shop2", "refused", 403),
        ("admin", "pipeline.delete", "shop2", "allowed", 200),
        ("admin", "pipeline.delete", "shop2", "failed", 404),
    ]
    assert {e["client"] for e in entries} == {"127.0.0.1"}
    page2 = stack.api.call("GET", "/audit?page=2&page_size=2", "admin").json()["entries"]
    assert [e["id"] for e in page2] == [e["id"] for e in entries[2:4]]
