"""Spec errors name the file, the pipeline and the field, in one message."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl_assets.spec import SpecError, load_pipelines, parse_pipeline
from etl_assets_tests.helpers import run_cli

BASE: dict[str, Any] = {
    "name": "sales",
    "timezone": "Europe/Berlin",
    "partitions": {"start": "2025-01-05"},
    "sources": [
        {
            "name": "orders",
            "kind": "postgres",
            "connection": {"url": "${SRC_URL}"},
            "table": "public.orders",
            "timestamp_column": "updated_at",
            "primary_key": ["id"],
        },
        {
            "name": "products",
            "kind": "csv",
            "path": "/data/products/*.csv",
            "mode": "full",
            "primary_key": ["sku"],
        },
    ],
}


def spec(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = data
        parts = path.split("__")
        for p in parts[:-1]:
            node = node[int(p)] if p.isdigit() else node[p]
        last = parts[-1]
        if value is DELETE:
            del node[last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return data


DELETE = object()


def error_of(data: dict[str, Any], file: str = "pipelines/sales.yaml") -> str:
    with pytest.raises(SpecError) as e:
        parse_pipeline(data, file)
    return str(e.value)


def test_valid_spec_defaults() -> None:
    s = parse_pipeline(spec(), "pipelines/sales.yaml")
    assert s.partitions.cadence == "weekly"
    assert s.target(s.sources[0]) == "sales.orders"
    assert s.sources[0].load.strategy == "upsert"
    assert s.retries.max == 3


def test_bad_strategy_names_file_pipeline_and_field() -> None:
    msg = error_of(spec(sources__1__load={"strategy": "merge"}))
    assert msg == (
        "pipelines/sales.yaml (pipeline sales): sources[1].load.strategy: "
        "must be one of upsert, delete_insert, replace_partition, append, scd2"
    )


def test_unknown_key() -> None:
    msg = error_of(spec(sources__0__tabel="x"))
    assert "pipelines/sales.yaml (pipeline sales): sources[0].tabel: unknown field" in msg


def test_bad_identifier() -> None:
    msg = error_of(spec(sources__0__load={"target": "sales.order-lines"}))
    assert "sources[0].load.target: 'order-lines' is not a valid identifier" in msg


def test_unknown_timezone_suggests_a_name() -> None:
    msg = error_of(spec(timezone="America/Sao_Pualo"))
    assert "timezone: unknown timezone 'America/Sao_Pualo'" in msg
    assert "did you mean 'America/Sao_Paulo'" in msg


def test_duplicate_source_name() -> None:
    data = spec()
    data["sources"][1]["name"] = "orders"
    assert "sources: duplicate source name 'orders'" in error_of(data)


def test_upsert_needs_primary_key() -> None:
    msg = error_of(spec(sources__0__primary_key=[]))
    assert "sources[0]: load.strategy upsert needs a primary_key" in msg


def test_unknown_kind() -> None:
    msg = error_of(spec(sources__0__kind="oracle_magic"))
    assert msg.endswith("sources[0].kind: must be one of postgres, csv, mysql, sql, http")
    data = spec()
    del data["sources"][0]["kind"]
    assert error_of(data).endswith("sources[0].kind: is required")


def test_literal_password_is_refused() -> None:
    msg = error_of(spec(sources__0__connection={"url": "postgresql://app:hunter2@db/x"}))
    assert "sources[0].connection.url: the URL holds a literal password" in msg
    assert "hunter2" not in msg


def test_check_on_unknown_column() -> None:
    data = spec()
    data["sources"][0]["columns"] = [{"name": "id", "type": "integer"}, {"name": "updated_at", "type": "timestamp"}]
    data["sources"][0]["checks"] = [{"type": "not_null", "column": "custmer"}]
    assert "sources[0].checks[0].column: column 'custmer' is not in the source's columns: id, updated_at" in error_of(data)


def test_directory_errors_are_gathered(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(spec(timezone="Mars/Olympus")))
    (tmp_path / "b.yaml").write_text("name: [unclosed\n")
    with pytest.raises(SpecError) as e:
        load_pipelines(tmp_path)
    lines = str(e.value).splitlines()
    assert any(line.endswith("timezone: unknown timezone 'Mars/Olympus': use an IANA name such as America/Sao_Paulo") for line in lines)
    assert any("b.yaml: invalid YAML at line" in line for line in lines)


def test_shipped_demo_spec_is_valid() -> None:
    specs = load_pipelines(Path(__file__).resolve().parents[2] / "pipelines")
    assert [s.name for s in specs] == ["demo_sales"]
    assert specs[0].timezone == "America/Sao_Paulo"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_cli(os.environ if env is None else env, *args)


def test_cli_validate_reports_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "sales.yaml"
    bad.write_text(yaml.safe_dump(spec(sources__1__load={"strategy": "merge"})))
    out = _cli("validate", str(bad))
    assert out.returncode == 1
    assert "sources[1].load.strategy: must be one of upsert, delete_insert, replace_partition, append, scd2" in out.stderr
    assert "Traceback" not in out.stderr
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(spec()))
    out = _cli("validate", str(good))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok: sales (2 sources, weekly, Europe/Berlin)")


def test_cli_schema_is_json_schema() -> None:
    out = _cli("schema")
    assert out.returncode == 0
    schema = json.loads(out.stdout)
    assert schema["title"] == "etl-assets pipeline"
    assert "sources" in schema["properties"]


# --- partition starts on a cadence boundary -------------------------------------------------


def test_weekly_start_off_week_start_names_both() -> None:
    msg = error_of(spec(partitions={"start": "2025-01-07", "week_start": "sunday"}))
    assert msg == (
        "pipelines/sales.yaml (pipeline sales): partitions.start: "
        "2025-01-07 is a Tuesday, but week_start is sunday"
    )
    ok = parse_pipeline(spec(partitions={"start": "2025-01-07", "week_start": "tuesday"}), "s.yaml")
    assert ok.partitions.start.isoformat() == "2025-01-07"


def test_monthly_start_must_be_the_first() -> None:
    msg = error_of(spec(partitions={"cadence": "monthly", "start": "2025-01-05"}))
    assert msg == (
        "pipelines/sales.yaml (pipeline sales): partitions.start: "
        "2025-01-05 is not the 1st of a month, and monthly partitions start on the 1st"
    )


@pytest.mark.parametrize("cadence", ["15min", "30min", "hourly", "daily"])
def test_shorter_cadences_start_on_any_date(cadence: str) -> None:
    s = parse_pipeline(spec(partitions={"cadence": cadence, "start": "2025-01-07"}), "s.yaml")
    assert s.partitions.cadence == cadence


# --- reserved schemas -------------------------------------------------------------------------


@pytest.mark.parametrize("schema", ["etl_meta", "public", "pg_catalog", "information_schema", "pg_toast", "ETL_META"])
def test_history_and_system_schemas_are_not_targets(schema: str) -> None:
    msg = error_of(spec(sources__0__load={"target": f"{schema}.runs"}))
    assert msg.startswith("pipelines/sales.yaml (pipeline sales): sources[0].load.target: ")
    assert f"schema {schema!r} is reserved" in msg
    assert "\n" not in msg


def test_a_pipeline_cannot_be_named_after_a_reserved_schema() -> None:
    msg = error_of(spec(name="etl_meta"))
    assert msg.startswith("pipelines/sales.yaml (pipeline etl_meta): name: ")
    assert "'etl_meta' is reserved" in msg


# --- one target, one owner ----------------------------------------------------------------------


def _write(folder: Path, file: str, data: dict[str, Any]) -> None:
    (folder / file).write_text(yaml.safe_dump(data))


def _claiming(name: str, **load: Any) -> dict[str, Any]:
    data = spec(name=name)
    data["sources"][0]["load"] = {"target": "shared.t", **load}
    return data


def test_two_pipelines_loading_one_target_is_a_spec_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # files are shown relative to the working directory
    _write(tmp_path, "a.yaml", _claiming("alpha", strategy="replace_partition"))
    _write(tmp_path, "b.yaml", _claiming("beta", strategy="replace_partition"))
    with pytest.raises(SpecError) as e:
        load_pipelines(tmp_path)
    (line,) = str(e.value).splitlines()
    assert line.startswith("b.yaml (pipeline beta): sources[0].load.target: shared.t is also loaded by ")
    assert "a.yaml (pipeline alpha, source orders)" in line


def test_a_default_target_claimed_by_another_pipeline_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # files are shown relative to the working directory
    _write(tmp_path, "a.yaml", spec(name="alpha"))
    other = spec(name="beta")
    other["sources"][0]["load"] = {"target": "alpha.orders"}
    _write(tmp_path, "b.yaml", other)
    with pytest.raises(SpecError) as e:
        load_pipelines(tmp_path)
    assert "alpha.orders is also loaded by a.yaml (pipeline alpha, source orders)" in str(e.value)


def test_a_target_declared_shared_by_both_upserting_pipelines_loads(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", _claiming("alpha", shared=True))
    _write(tmp_path, "b.yaml", _claiming("beta", shared=True))
    assert [s.name for s in load_pipelines(tmp_path)] == ["alpha", "beta"]


def test_shared_on_one_side_only_is_still_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # files are shown relative to the working directory
    _write(tmp_path, "a.yaml", _claiming("alpha", shared=True))
    _write(tmp_path, "b.yaml", _claiming("beta"))
    with pytest.raises(SpecError) as e:
        load_pipelines(tmp_path)
    assert "set load.shared: true on both" in str(e.value)


@pytest.mark.parametrize(
    ("load", "why"),
    [
        ({"strategy": "replace_partition"}, "load.shared needs strategy upsert"),
        ({"delete_missing": True}, "load.shared cannot delete_missing"),
    ],
)
def test_a_shared_target_never_deletes_the_other_pipelines_rows(load: dict[str, Any], why: str) -> None:
    data = spec()
    data["sources"][1]["load"] = {"target": "shared.t", "shared": True, **load}
    msg = error_of(data)
    assert msg.startswith("pipelines/sales.yaml (pipeline sales): sources[1].load: ")
    assert why in msg


def test_two_sources_of_one_pipeline_may_share_only_when_both_say_so() -> None:
    data = spec()
    data["sources"][0]["load"] = {"target": "shared.t", "shared": True}
    data["sources"][1]["load"] = {"target": "shared.t"}
    assert "sources 'orders' and 'products' both load into shared.t" in error_of(data)
    data["sources"][1]["load"] = {"target": "shared.t", "shared": True}
    assert parse_pipeline(data, "s.yaml").sources[1].load.shared is True


def test_pipelines_on_different_warehouses_do_not_collide(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", _claiming("alpha"))
    other = _claiming("beta")
    other["warehouse"] = {"kind": "clickhouse", "url": "chdb:///tmp/ch"}
    _write(tmp_path, "b.yaml", other)
    assert [s.name for s in load_pipelines(tmp_path)] == ["alpha", "beta"]


def test_cli_schema_describes_every_property() -> None:
    """Editors show each property's description as hover help."""
    from click.testing import CliRunner

    from etl_assets.cli import main

    out = CliRunner().invoke(main, ["schema"])
    assert out.exit_code == 0, out.output
    schema = json.loads(out.output)
    undescribed = [
        f"{model}.{name}"
        for model, definition in [("PipelineSpec", schema), *schema.get("$defs", {}).items()]
        for name, prop in (definition.get("properties") or {}).items()
        if not (prop.get("description") or "").strip()
    ]
    total = sum(len(d.get("properties") or {}) for d in [schema, *schema.get("$defs", {}).values()])
    assert total > 200
    assert not undescribed, f"{len(undescribed)} of {total} properties have no description: {undescribed}"
