"""The code location loads, and every asset describes itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from etl_assets.definitions import defs

ROOT = Path(__file__).resolve().parents[1]


def test_all_definitions_load() -> None:
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    for source in ("orders", "products", "customers"):
        for layer in ("raw", "normalized", "validated", "loaded"):
            assert f"demo_sales/{layer}/{source}" in keys
    assert "demo_sales/report" in keys
    job = defs.resolve_job_def("demo_sales_job")
    assert job.partitions_def is not None


def test_assets_describe_themselves() -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name == "demo_sales"
        assert node.owners == ["team:data"]
        assert node.kinds, key
        assert node.description and "\n" not in node.description, key
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
    validated = dg.AssetKey(["demo_sales", "validated", "orders"])
    checks = {c.name: c for c in defs.resolve_assets_def(validated).check_specs}
    assert checks["unique_key"].blocking is True
    assert checks["not_null_customer_id"].blocking is False


def test_loaded_depends_on_validated_and_report_on_every_loaded() -> None:
    graph = defs.resolve_asset_graph()
    report = graph.get(dg.AssetKey(["demo_sales", "report"]))
    assert {k.to_user_string() for k in report.parent_keys} == {
        "demo_sales/loaded/orders",
        "demo_sales/loaded/products",
        "demo_sales/loaded/customers",
    }
    # The warn relationship check reads products from what the warehouse holds: a failed
    # products load must not skip orders, so it does not wait for that load.
    validated = graph.get(dg.AssetKey(["demo_sales", "validated", "orders"]))
    assert dg.AssetKey(["demo_sales", "loaded", "products"]) not in validated.parent_keys


def test_dagster_definitions_validate(databases) -> None:
    instance_db = databases.new("etl_instance").replace("postgresql://", "postgresql+psycopg2://")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_HOME", "ETL_"))}
    env["ETL_INSTANCE_URL"] = instance_db
    out = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful for code location etl_assets" in out.stdout + out.stderr
