"""`etl-assets demo seed`: every partition the demo pipeline lists has its week of orders."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg

from etl_assets.core.partitions import partitions_def, window_for
from etl_assets.dev import demo
from etl_assets.spec import load_pipeline_file

ROOT = Path(__file__).resolve().parents[2]


def test_the_seed_reaches_back_to_the_first_partition_and_is_deterministic(source_url: str, tmp_path: Path) -> None:
    spec = load_pipeline_file(ROOT / "pipelines" / "demo_sales.yaml")
    counts = demo.seed(source_url, tmp_path / "demo")
    keys = partitions_def(spec).get_partition_keys()
    assert keys[0] == spec.partitions.start.isoformat()
    with psycopg.connect(source_url) as conn:
        per_week = []
        for k in keys:
            w = window_for(partitions_def(spec), k)
            per_week.append(conn.execute(
                "SELECT count(*) FROM shop.orders WHERE ordered_at >= %s AND ordered_at < %s", (w.start, w.end)
            ).fetchone()[0])
        first = conn.execute("SELECT order_id, quantity, unit_price FROM shop.orders ORDER BY order_id").fetchall()
    empty = [k for k, n in zip(keys, per_week) if n < 100]
    assert empty == []  # no listed partition without its week of orders
    assert counts["weeks"] == len(keys) + 1  # and the week in progress

    demo.seed(source_url, tmp_path / "demo")
    with psycopg.connect(source_url) as conn:
        again = conn.execute("SELECT order_id, quantity, unit_price FROM shop.orders ORDER BY order_id").fetchall()
    assert again == first
    assert dt.date.fromisoformat(keys[-1]) < dt.date.today()
