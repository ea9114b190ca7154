"""What the UI shows about each asset of the demo comes from its definition and from the
metadata on its materialization events: check both for every layer."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from etl_assets.core.partitions import partitions_def
from etl_assets.definitions import build_defs
from etl_assets.dev import demo
from etl_assets.orchestration.assets import LAYERS, asset_key

from .conftest import demo_spec

KINDS = {"normalized": {"pandas", "parquet"}, "validated": {"great_expectations", "parquet"}, "loaded": {"postgres"}}


@pytest.fixture
def demo_env(tmp_path: Path, warehouse_url: str, source_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    home = tmp_path / "etl_home"
    demo.seed(source_url, home / "demo")
    env = {
        "ETL_HOME": str(home),
        "ETL_STORAGE_DIR": str(tmp_path / "storage"),
        "ETL_WAREHOUSE_URL": warehouse_url,
        "ETL_DEMO_SOURCE_URL": source_url,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def test_every_layer_describes_itself_and_its_data(demo_env) -> None:
    spec = demo_spec()
    defs = build_defs([spec])

    # The definitions: description, owners and kinds on every asset.
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    expected_keys = {asset_key(spec.name, layer, s.name) for s in spec.sources for layer in LAYERS}
    assert set(specs) == expected_keys | {asset_key(spec.name, "report")}
    for key, a in specs.items():
        assert a.description and len(a.description) > 20, key
        assert a.owners == spec.owners == ["team:data"], key
        assert a.kinds, key
    for source in spec.sources:
        assert source.name in specs[asset_key(spec.name, "raw", source.name)].description
        for layer in LAYERS:  # the graph titles all four boxes after the source: they say their layer
            a = specs[asset_key(spec.name, layer, source.name)]
            assert a.description.startswith(f"{layer} · {source.name}:"), a.description
            assert layer in a.kinds, (layer, a.kinds)
        assert {source.kind, "parquet"} <= specs[asset_key(spec.name, "raw", source.name)].kinds
        for layer, kinds in KINDS.items():
            assert kinds <= specs[asset_key(spec.name, layer, source.name)].kinds, (layer, source.name)
    assert {"markdown", "html"} <= specs[asset_key(spec.name, "report")].kinds

    # One week, materialized in-process as `etl-assets run` does.
    key = partitions_def(spec).get_last_partition_key()
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def(f"{spec.name}_job").execute_in_process(
            instance=instance, partition_key=key, raise_on_error=False
        )
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        events = {e.asset_key: e.materialization for e in result.get_asset_materialization_events()}
    assert set(events) == set(specs)

    with_data = {"orders", "products"}
    for source in spec.sources:
        for layer in LAYERS:
            k = asset_key(spec.name, layer, source.name)
            md = events[k].metadata
            assert {"dagster/column_schema", "dagster/row_count", "preview"} <= set(md), (k, sorted(md))
            assert isinstance(md["dagster/column_schema"], dg.TableSchemaMetadataValue), k
            assert isinstance(md["dagster/row_count"], dg.IntMetadataValue), k
            assert isinstance(md["preview"], dg.MarkdownMetadataValue), k
            if source.name in with_data:
                columns = [c.name for c in md["dagster/column_schema"].schema.columns]
                assert columns and all(c in columns for c in source.primary_key), (k, columns)
                assert md["dagster/row_count"].value > 0, k
                assert "|" in md["preview"].value, k  # a Markdown table of the first rows
        loaded = events[asset_key(spec.name, "loaded", source.name)].metadata
        for count in ("inserted", "updated", "unchanged"):
            assert isinstance(loaded[count], dg.IntMetadataValue), (source.name, count)
        if source.name in with_data:
            assert loaded["inserted"].value + loaded["updated"].value + loaded["unchanged"].value == (
                loaded["dagster/row_count"].value
            )

    report_md = events[asset_key(spec.name, "report")].metadata
    assert "dagster/row_count" not in report_md  # one report is not a row count
    assert isinstance(report_md["report_path"], dg.TextMetadataValue)
    report = report_md["report"]
    assert isinstance(report, dg.MarkdownMetadataValue)
    assert report.value.startswith(f"# {spec.report.title}")
    assert f"`{key}`" in report.value.split("\n\n")[1]  # "**week of …, São Paulo time** · `<key>`"
    assert "São Paulo time" in report.value.split("\n\n")[1]
    assert "![" in report.value and "](data:image/png;base64," in report.value
