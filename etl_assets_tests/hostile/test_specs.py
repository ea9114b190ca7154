"""Hostile spec files: whatever bytes a pipelines folder holds, validation answers in one
sentence naming the file, the pipeline and the field, and never with a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl_assets.cli import main
from etl_assets.spec import SpecError, parse_pipeline_bytes

GOOD = """\
name: sales
timezone: Europe/Berlin
partitions: {cadence: daily, start: 2026-02-01}
sources:
  - name: orders
    kind: postgres
    connection: {url: "${SRC_URL}"}
    table: shop.orders
    timestamp_column: updated_at
    primary_key: [id]
"""


def validate(tmp_path: Path, text: str | bytes) -> Result:
    path = tmp_path / "sales.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return CliRunner().invoke(main, ["validate", str(path)])


def spec_error(result: Result) -> str:
    """The one line `validate` prints for a bad spec; it exits 1 as for any invalid spec."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ")
    return line.removeprefix("Error: ")


def test_the_good_spec_validates(tmp_path: Path) -> None:
    result = validate(tmp_path, GOOD)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: sales (1 sources, daily, Europe/Berlin)")


def test_a_date_that_does_not_exist_names_the_field(tmp_path: Path) -> None:
    line = spec_error(validate(tmp_path, GOOD.replace("2026-02-01", "2026-02-30")))
    assert line.startswith(f"{tmp_path}/sales.yaml (pipeline sales): partitions.start: ")
    assert "2026-02-30" in line or "day value is outside expected range" in line


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    text = GOOD.replace("name: sales\n", "name: sales\ndescription: Caf\xe9 orders\n")
    line = spec_error(validate(tmp_path, text.encode("latin-1")))
    assert line == (
        f"{tmp_path}/sales.yaml: not UTF-8 text: byte 0xe9 at line 2, column 17; "
        "save the file as UTF-8"
    )


def test_control_characters_are_a_yaml_error_on_one_line(tmp_path: Path) -> None:
    line = spec_error(validate(tmp_path, GOOD.replace("Europe/Berlin", "Europe/\x00Berlin")))
    assert line.startswith(f"{tmp_path}/sales.yaml: invalid YAML at line 2, column ")


@pytest.mark.parametrize(
    ("extra", "key", "first"),
    [
        ("name: other\n", "name", 1),
        ("sources: []\n", "sources", 4),
        ('schedule: {at: "06:00", at: "07:00"}\n', "at", 11),
    ],
)
def test_a_duplicated_key_is_an_error_naming_key_and_line(
    tmp_path: Path, extra: str, key: str, first: int
) -> None:
    line = spec_error(validate(tmp_path, GOOD + extra))  # the extra line is line 11
    assert line.startswith(f"{tmp_path}/sales.yaml: invalid YAML at line 11, column ")
    assert line.endswith(f"duplicate key {key!r} (first at line {first})")


def test_the_readme_notify_example_validates(tmp_path: Path) -> None:
    text = GOOD + (
        "notify:\n"
        '  slack: {channel: "#data-alerts", on: [success, failure, partial, paused]}\n'
        "  email: {to: [data@example.com, oncall@example.com], on: [failure, partial, paused]}\n"
    )
    result = validate(tmp_path, text)
    assert result.exit_code == 0, result.output
    spec = parse_pipeline_bytes(text.encode(), "sales.yaml")
    assert spec.notify.slack is not None and spec.notify.slack.on == ["success", "failure", "partial", "paused"]


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = GOOD.replace(
        "partitions: {cadence: daily, start: 2026-02-01}",
        "partitions: {<<: {cadence: weekly, start: 2026-02-01}, cadence: daily}",
    )
    result = validate(tmp_path, text)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: sales (1 sources, daily, Europe/Berlin)")


def test_deep_nesting_is_one_sentence(tmp_path: Path) -> None:
    assert spec_error(validate(tmp_path, "[" * 20000)) == f"{tmp_path}/sales.yaml: invalid YAML: nested too deeply"


def test_alias_expansion_is_refused_before_validation(tmp_path: Path) -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
    )
    line = spec_error(validate(tmp_path, GOOD.replace("sources:", "x-sources:") + laughs + "sources: *i\n"))
    assert line == f"{tmp_path}/sales.yaml: the document expands to more than 100000 values through YAML aliases"


def test_a_cyclic_alias_is_a_field_error(tmp_path: Path) -> None:
    text = GOOD.replace("    primary_key: [id]", "    primary_key: &k [*k]")
    line = spec_error(validate(tmp_path, text))
    assert line.startswith(f"{tmp_path}/sales.yaml (pipeline sales): sources[0].primary_key")


# --- any input at all -----------------------------------------------------------------------

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.dates()
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12) | st.integers(), inner, max_size=5),
    max_leaves=25,
)
FIELDS = ["name", "timezone", "partitions", "sources", "schedule", "notify", "catchup", "warehouse", "report"]
BASE = yaml.safe_load(GOOD)


def _mutated(base: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    data = dict(base)
    data[field] = value
    return data


def _only_spec_errors(data: bytes) -> None:
    try:
        parse_pipeline_bytes(data, "fuzz.yaml")
    except SpecError as e:
        assert str(e), "a spec error says what is wrong"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_only_ever_a_spec_error(data: bytes) -> None:
    _only_spec_errors(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text_is_only_ever_a_spec_error(text: str) -> None:
    _only_spec_errors(text.encode())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_arbitrary_yaml_documents_are_only_ever_a_spec_error(document: Any) -> None:
    _only_spec_errors(yaml.safe_dump(document).encode())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), DOCUMENTS)
def test_a_valid_spec_with_any_field_replaced_is_only_ever_a_spec_error(field: str, value: Any) -> None:
    _only_spec_errors(yaml.safe_dump(_mutated(BASE, field, value)).encode())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["name", "kind", "connection", "table", "load", "checks", "columns", "lookback", "primary_key"]), DOCUMENTS)
def test_a_valid_source_with_any_field_replaced_is_only_ever_a_spec_error(field: str, value: Any) -> None:
    source = _mutated(BASE["sources"][0], field, value)
    _only_spec_errors(yaml.safe_dump(_mutated(BASE, "sources", [source])).encode())
