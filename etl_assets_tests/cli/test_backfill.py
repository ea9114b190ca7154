"""`etl-assets backfill` against a real webserver, daemon and PostgreSQL."""

from __future__ import annotations

import json
import time

import pytest

from etl_assets_tests.dagster_services import DagsterServices
from etl_assets_tests.helpers import query

from .conftest import BAD_ORDER, BAD_WEEK, WEEKS

RUNS = """
query { runsOrError(filter: {tags: [{key: "etl/pipeline", value: "shop"}]}) {
  ... on Runs { results { runId status startTime endTime tags { key value } } } } }
"""


def shop_runs(services: DagsterServices) -> dict[str, dict]:
    """Every run of the pipeline by id, with its tags as a dict."""
    results = services.graphql(RUNS)["runsOrError"]["results"]
    return {r["runId"]: {**r, "tags": {t["key"]: t["value"] for t in r["tags"]}} for r in results}


def covered(run: dict) -> list[str]:
    tags = run["tags"]
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    first, last = tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]
    return [k for k in WEEKS if first <= k <= last]


def recorded(warehouse_url: str, run_ids: list[str], timeout: float = 180) -> dict[str, tuple]:
    """(trigger, status, partitions) per run, once the daemon's run-status sensor wrote them all."""
    deadline = time.monotonic() + timeout
    rows: list[tuple] = []
    while time.monotonic() < deadline:
        if query(warehouse_url, "SELECT to_regclass('etl_meta.runs') IS NOT NULL")[0][0]:
            rows = query(
                warehouse_url,
                "SELECT run_id, trigger, status, partitions FROM etl_meta.runs WHERE run_id = ANY(%s)",
                (run_ids,),
            )
            if len(rows) == len(run_ids):
                break
        time.sleep(1)
    return {r[0]: (r[1], r[2], list(r[3])) for r in rows}


def backfill(ops_cli, services: DagsterServices, *args: str) -> dict:
    done = ops_cli(services.env, "backfill", "shop", "--url", services.url, "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # several runs through a real queue on a shared, loaded machine
def test_backfill_launches_what_is_not_loaded_and_never_a_partition_in_flight(
    webserver: DagsterServices, start_daemon, ops_cli
) -> None:
    env, wh = webserver.env, webserver.env["ETL_WAREHOUSE_URL"]
    first, last = WEEKS[0], WEEKS[-1]
    loaded = ops_cli(env, "run", "shop", "--from", WEEKS[0], "--to", WEEKS[1])
    assert loaded.returncode == 0, loaded.stderr
    failed = ops_cli(env, "run", "shop", "--partition", BAD_WEEK)
    assert failed.returncode == 1, failed.stdout
    # No daemon yet: this run stays QUEUED.
    queued = ops_cli(env, "jobs", "--url", webserver.url, "run", "shop", "--partition", WEEKS[3])
    assert queued.returncode == 0, queued.stderr
    queued_id = queued.stdout.split()[1]

    plan = backfill(ops_cli, webserver, "--from", first, "--to", last, "--dry-run")
    assert [(p["partition"], p["state"], p["action"]) for p in plan["partitions"]] == [
        (WEEKS[0], "materialized", "skip: already loaded"),
        (WEEKS[1], "materialized", "skip: already loaded"),
        (BAD_WEEK, "failed", "launch"),
        (WEEKS[3], "queued", "skip: in flight"),
        (WEEKS[4], "missing", "launch"),
        (WEEKS[5], "missing", "launch"),
    ]
    assert plan["partitions"][3]["run_id"] == queued_id
    assert [r["partitions"] for r in plan["runs"]] == [[BAD_WEEK], [WEEKS[4], WEEKS[5]]]
    assert all(r["run_id"] is None for r in plan["runs"])

    text = ops_cli(env, "backfill", "shop", "--url", webserver.url, "--from", first, "--to", last, "--dry-run")
    assert text.returncode == 0, text.stderr
    assert f"{WEEKS[3]}  queued        skip: in flight (run {queued_id[:8]})" in text.stdout
    assert f"would launch 2 runs: {BAD_WEEK}; {WEEKS[4]} … {WEEKS[5]}" in text.stdout

    only_failed = backfill(ops_cli, webserver, "--from", first, "--to", last, "--dry-run", "--reprocess", "failed")
    assert [p["action"] for p in only_failed["partitions"]] == [
        "skip: already loaded", "skip: already loaded", "launch", "skip: in flight", "skip: not failed",
        "skip: not failed",
    ]
    assert len(shop_runs(webserver)) == 3  # dry runs launch nothing

    query(env["TEST_SOURCE_URL"], "UPDATE src.orders SET amount = 20 WHERE order_id = %s RETURNING 1", (BAD_ORDER,))
    launched = backfill(ops_cli, webserver, "--from", first, "--to", last)
    assert [r["partitions"] for r in launched["runs"]] == [[BAD_WEEK], [WEEKS[4], WEEKS[5]]]
    ids = [r["run_id"] for r in launched["runs"]]

    # Launched again, it finds everything loaded or in flight and launches nothing.
    again = backfill(ops_cli, webserver, "--from", first, "--to", last)
    assert again["runs"] == []
    assert [p["state"] for p in again["partitions"]][2:] == ["queued"] * 4

    runs = shop_runs(webserver)
    in_queue = {rid: covered(r) for rid, r in runs.items() if r["status"] == "QUEUED"}
    assert in_queue == {queued_id: [WEEKS[3]], ids[0]: [BAD_WEEK], ids[1]: [WEEKS[4], WEEKS[5]]}
    assert {runs[i]["tags"]["etl/trigger"] for i in ids} == {"backfill"}
    assert runs[ids[0]]["tags"]["etl/backfill"] == runs[ids[1]]["tags"]["etl/backfill"] == launched["backfill_id"]

    start_daemon(webserver)
    for run_id in (queued_id, *ids):
        assert webserver.wait_run(run_id, timeout=600) == "SUCCESS", webserver.log_tail()
    assert recorded(wh, [queued_id, *ids]) == {
        queued_id: ("manual", "success", [WEEKS[3]]),
        ids[0]: ("backfill", "success", [BAD_WEEK]),
        ids[1]: ("backfill", "success", [WEEKS[4], WEEKS[5]]),
    }
    assert query(wh, "SELECT count(*) FROM mart.orders") == [(3 * len(WEEKS),)]
    after = backfill(ops_cli, webserver, "--from", first, "--to", last, "--dry-run")
    assert {p["state"] for p in after["partitions"]} == {"materialized"}
    assert after["runs"] == []
    everything = backfill(ops_cli, webserver, "--from", first, "--to", last, "--dry-run", "--reprocess", "all")
    assert {p["action"] for p in everything["partitions"]} == {"launch"}
    assert [r["partitions"] for r in everything["runs"]] == [WEEKS]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # several runs through a real queue on a shared, loaded machine
def test_max_concurrent_runs_one_run_per_partition_at_most_n_at_once(
    webserver: DagsterServices, start_daemon, ops_cli
) -> None:
    env = webserver.env
    query(env["TEST_SOURCE_URL"], "UPDATE src.orders SET amount = 20 WHERE order_id = %s RETURNING 1", (BAD_ORDER,))
    start_daemon(webserver)
    launched = backfill(ops_cli, webserver, "--from", WEEKS[0], "--to", WEEKS[3], "--max-concurrent", "2")
    assert [r["partitions"] for r in launched["runs"]] == [[k] for k in WEEKS[:4]]
    ids = [r["run_id"] for r in launched["runs"]]
    for run_id in ids:
        assert webserver.wait_run(run_id, timeout=600) == "SUCCESS", webserver.log_tail()

    runs = shop_runs(webserver)
    assert [runs[i]["tags"]["dagster/partition"] for i in ids] == WEEKS[:4]
    assert [runs[i]["tags"]["etl/partition_lock"] for i in ids] == [f"shop:{k}" for k in WEEKS[:4]]
    lanes = [runs[i]["tags"]["etl/backfill_lane"] for i in ids]
    assert len(set(lanes)) == 2 and all(lane.startswith(launched["backfill_id"]) for lane in lanes)
    # The queue admitted at most two of them at any instant.
    spans = [(runs[i]["startTime"], runs[i]["endTime"]) for i in ids]
    for start, _ in spans:
        assert sum(s <= start < e for s, e in spans) <= 2, spans
    history = recorded(env["ETL_WAREHOUSE_URL"], ids)
    assert [history[i] for i in ids] == [("backfill", "success", [k]) for k in WEEKS[:4]]


def test_backfill_refuses_bad_requests_in_one_sentence(shop_env: dict[str, str], ops_cli) -> None:
    nowhere = "http://127.0.0.1:9"  # the discard port: nothing answers there
    cases = {
        ("nope", "--from", WEEKS[0], "--to", WEEKS[1]): "unknown pipeline 'nope' (pipelines: shop)",
        ("shop", "--from", "2024-12-29", "--to", WEEKS[1]): "shop: '2024-12-29' is not a complete partition key",
        ("shop", "--from", WEEKS[1], "--to", WEEKS[0]): f"--from {WEEKS[1]} is after --to {WEEKS[0]}",
        ("shop", "--from", WEEKS[0], "--to", WEEKS[1]): f"the Dagster webserver at {nowhere} did not answer",
    }
    for args, message in cases.items():
        done = ops_cli(shop_env, "backfill", *args, "--url", nowhere)
        assert done.returncode != 0, (args, done.stdout)
        assert done.stdout == ""
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("error: ") and message in line, (args, line)
