"""Spec errors name the file, the pipeline and the field, in one message."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl_assets.spec import SpecError, load_pipelines, parse_pipeline

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
        "must be one of upsert, replace_partition"
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
    assert "checks (not_null_custmer) names unknown column 'custmer'" in error_of(data)


def test_directory_errors_are_gathered(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(spec(timezone="Mars/Olympus")))
    (tmp_path / "b.yaml").write_text("name: [unclosed\n")
    with pytest.raises(SpecError) as e:
        load_pipelines(tmp_path)
    lines = str(e.value).splitlines()
    assert any(line.endswith("timezone: unknown timezone 'Mars/Olympus': use an IANA name such as America/Sao_Paulo") for line in lines)
    assert any("b.yaml: invalid YAML at line" in line for line in lines)


def test_shipped_demo_spec_is_valid() -> None:
    specs = load_pipelines(Path(__file__).resolve().parents[1] / "pipelines")
    assert [s.name for s in specs] == ["demo_sales"]
    assert specs[0].timezone == "America/Sao_Paulo"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "etl_assets.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_validate_reports_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "sales.yaml"
    bad.write_text(yaml.safe_dump(spec(sources__1__load={"strategy": "merge"})))
    out = _cli("validate", str(bad))
    assert out.returncode == 1
    assert "sources[1].load.strategy: must be one of upsert, replace_partition" in out.stderr
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
