"""Reruns skip what provably did not change (issue 18), on real PostgreSQL.

A no-change rerun reuses a partition's GX results instead of validating again; a `mode: full`
source is extracted once per multi-partition run and its shared content processed once.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from etl_assets.core.keys import asset_key
from etl_assets.quality import gx
from etl_assets.spec import PipelineSpec
from etl_assets_tests.helpers import create_orders, make_spec, materialize, meta, ny, orders_rows
from etl_assets_tests.stubs import JsonApi

WEEK = "2025-03-09"
VALIDATED = asset_key("shop", "validated", "orders")
CHECKS = [
    {"type": "unique", "severity": "error"},
    {"type": "not_null", "column": "customer", "severity": "warn"},
    {"type": "between", "column": "amount", "min": 0, "max": 20, "severity": "warn"},
    {"type": "freshness", "max_age": "30d", "severity": "warn"},
]


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def _orders_spec(checks: list[dict[str, Any]]) -> PipelineSpec:
    source = make_spec().sources[0].model_dump(by_alias=True, exclude_none=True, mode="json")
    return make_spec(sources=[{**source, "checks": checks}])


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, tuple[Any, ...]]:
    """Each check's result as the UI and history see it: passed, severity, description, metadata."""
    return {
        e.check_name: (e.passed, e.severity, e.description, {k: v.value for k, v in e.metadata.items()})
        for e in result.get_asset_check_evaluations()
    }


def test_a_no_change_rerun_reuses_the_gx_results_and_a_change_validates_again(etl_env, instance) -> None:
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(30, ny(2025, 3, 9, 2), dt.timedelta(hours=2)))
    spec = _orders_spec(CHECKS)
    before = gx.validations_run
    first = materialize(spec, etl_env, instance, partition_key=WEEK)
    assert first.success
    assert gx.validations_run == before + 1
    assert meta(first, VALIDATED)["quality_reused_from"] == {}
    checks = meta(first, VALIDATED)["checks_by_partition"]
    assert not _evaluations(first)["between_amount"][0]  # 20.5 .. 30.5 are out of range

    again = materialize(spec, etl_env, instance, partition_key=WEEK)
    assert again.success
    assert gx.validations_run == before + 1  # GX did not run
    m = meta(again, VALIDATED)
    assert m["quality_reused_from"] == {WEEK: first.run_id}
    assert m["checks_by_partition"] == checks
    assert _evaluations(again) == _evaluations(first)
    assert m["quality_from"][WEEK]["run_id"] == first.run_id

    # A third no-change run still names the run whose GX validation it reuses.
    third = materialize(spec, etl_env, instance, partition_key=WEEK)
    assert meta(third, VALIDATED)["quality_reused_from"] == {WEEK: first.run_id}
    assert gx.validations_run == before + 1

    # Changed content: validated again, and the results say so.
    with psycopg.connect(etl_env["TEST_SOURCE_URL"]) as conn:
        conn.execute("UPDATE src.orders SET amount = 1 WHERE order_id > 19")
    changed = materialize(spec, etl_env, instance, partition_key=WEEK)
    assert changed.success
    assert gx.validations_run == before + 2
    assert meta(changed, VALIDATED)["quality_reused_from"] == {}
    assert _evaluations(changed)["between_amount"][0]

    # Changed checks over the same content: validated again.
    stricter = _orders_spec([*CHECKS[:2], {**CHECKS[2], "max": 0.5}, CHECKS[3]])
    redone = materialize(stricter, etl_env, instance, partition_key=WEEK)
    assert gx.validations_run == before + 3
    assert meta(redone, VALIDATED)["quality_reused_from"] == {}
    assert not _evaluations(redone)["between_amount"][0]


def test_a_tampered_quality_document_is_not_reused(etl_env, instance) -> None:
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(5, ny(2025, 3, 9, 2), dt.timedelta(hours=2)))
    spec = _orders_spec(CHECKS[:1])
    assert materialize(spec, etl_env, instance, partition_key=WEEK).success
    doc = Path(etl_env["ETL_STORAGE_DIR"]) / "shop" / "quality" / "orders" / f"{WEEK}.json"
    doc.write_text(doc.read_text().replace('"rows": 5', '"rows": 6'))
    before = gx.validations_run
    again = materialize(spec, etl_env, instance, partition_key=WEEK)
    assert again.success
    assert gx.validations_run == before + 1
    assert meta(again, VALIDATED)["quality_reused_from"] == {}
    assert '"rows": 5' in doc.read_text()


def test_quarantining_checks_are_always_validated(etl_env, instance) -> None:
    create_orders(etl_env["TEST_SOURCE_URL"], orders_rows(5, ny(2025, 3, 9, 2), dt.timedelta(hours=2)))
    spec = _orders_spec([{"type": "between", "column": "amount", "max": 3, "severity": "quarantine"}])
    assert materialize(spec, etl_env, instance, partition_key=WEEK).success
    before = gx.validations_run
    again = materialize(spec, etl_env, instance, partition_key=WEEK)
    assert gx.validations_run == before + 1
    assert meta(again, VALIDATED)["quality_reused_from"] == {}
    assert meta(again, VALIDATED)["quarantined_by_partition"] == {WEEK: 3}


@pytest.fixture
def catalog_api(json_api: Callable[[Any], JsonApi]) -> tuple[str, list[str]]:
    """A JSON API on 127.0.0.1 serving a three-product catalog: its URL and the paths requested."""
    api = json_api([{"sku": s, "price": p} for s, p in (("A", 1.5), ("B", 2.0), ("C", 3.0))])
    return f"{api.url}/products", api.requested


def test_a_full_source_is_extracted_and_processed_once_per_range_run(etl_env, instance, catalog_api) -> None:
    url, requested = catalog_api
    spec = make_spec(
        sources=[{
            "name": "products", "kind": "http", "url": url, "mode": "full", "primary_key": ["sku"],
            "columns": [{"name": "sku"}, {"name": "price", "type": "float"}],
            "load": {"target": "mart.products"}, "checks": [{"type": "unique", "severity": "error"}],
        }],
        report={},
    )
    weeks = ["2025-03-02", "2025-03-09", "2025-03-16"]
    tags = {"dagster/asset_partition_range_start": weeks[0], "dagster/asset_partition_range_end": weeks[-1]}
    before = gx.validations_run
    result = materialize(spec, etl_env, instance, tags=tags)
    assert result.success
    assert requested == ["/products"]  # one read of the source for three partitions
    raw = meta(result, asset_key("shop", "raw", "products"))["inputs"]
    assert [raw[k].get("reused_from") for k in weeks] == [None, weeks[0], weeks[0]]
    # Normalized once and validated once: the shared content is one file and one GX run.
    lineage = meta(result, asset_key("shop", "normalized", "products"))["normalized_from"]
    assert len({json.dumps(lineage[k]) for k in weeks}) == 1
    assert gx.validations_run == before + 1
    validated = meta(result, asset_key("shop", "validated", "products"))
    assert validated["quality_reused_from"] == {weeks[1]: result.run_id, weeks[2]: result.run_id}
    by_partition = validated["checks_by_partition"]
    assert by_partition[weeks[1]] == by_partition[weeks[2]] == by_partition[weeks[0]]
    # Each partition still loads the whole table and reports its own counts, as before.
    counts = meta(result, asset_key("shop", "loaded", "products"))["counts_by_partition"]
    assert {k: (c["inserted"], c["updated"], c["unchanged"], c["deleted"]) for k, c in counts.items()} == {
        weeks[0]: (3, 0, 0, 0), weeks[1]: (0, 0, 3, 0), weeks[2]: (0, 0, 3, 0)
    }
