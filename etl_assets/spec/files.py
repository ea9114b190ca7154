"""Reading spec files: strict YAML, one clear error per problem, and the JSON Schema.

The models live in the sibling modules; this is where text becomes a `PipelineSpec`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from etl_assets.core.exceptions import SpecError
from etl_assets.spec.kinds import SOURCE_KINDS, SourceSpec
from etl_assets.spec.pipeline import PipelineSpec


def _format_loc(loc: Iterable[Any]) -> str:
    out = ""
    prev: Any = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(prev, int) and (part in SOURCE_KINDS or part in _CHECK_TYPES):
            pass  # a discriminator tag after a list index says nothing the user wrote
        else:
            out += ("." if out else "") + str(part)
        prev = part
    return out


_CHECK_TYPES = (
    "not_null", "unique", "between", "in_set", "regex", "row_count",
    "schema", "relationship", "row_count_anomaly", "freshness", "expectation",
)


def _format_error(err: ErrorDetails) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "literal_error":
        return "must be one of " + ", ".join(re.findall(r"'([^']*)'", ctx.get("expected", "")))
    if kind == "union_tag_invalid":
        return "must be one of " + ", ".join(re.findall(r"'([^']*)'", ctx.get("expected_tags", "")))
    if kind == "union_tag_not_found":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "is required"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def format_validation_error(file: str, pipeline: str | None, exc: ValidationError) -> str:
    where = f"{file} (pipeline {pipeline})" if pipeline else file
    lines = []
    for e in exc.errors():
        loc = list(e["loc"])
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc.append(str((e.get("ctx") or {}).get("discriminator", "kind")).strip("'"))
        field = _format_loc(loc)
        lines.append(f"{where}: {field + ': ' if field else ''}{_format_error(e)}")
    return "\n".join(lines)


def parse_pipeline(data: Any, file: str) -> PipelineSpec:
    if not isinstance(data, dict):
        raise SpecError(f"{file}: expected a mapping at the top level, got {type(data).__name__}")
    name = data.get("name") if isinstance(data.get("name"), str) else None
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_validation_error(file, name, e)) from None


class _SpecLoader(yaml.SafeLoader):
    """YAML read as a spec means it: only true/false are booleans (as in YAML 1.2, so `on:`
    is a key), a date that does not exist stays text for its field to reject, and a key
    given twice is an error instead of the last one silently winning."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else []:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<:` merges are overridden by the mapping's own keys by design
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # unhashable: the base constructor says so
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first.line + 1})", key_node.start_mark
                )
        return super().construct_mapping(node, deep)

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:
            return self.construct_scalar(node)


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_SpecLoader.add_constructor("tag:yaml.org,2002:timestamp", _SpecLoader.construct_yaml_timestamp)


def _read_yaml(raw: bytes, shown: str) -> Any:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise SpecError(
            f"{shown}: not UTF-8 text: byte 0x{raw[e.start]:02x} at line {line}, column {column}; "
            "save the file as UTF-8"
        ) from None
    try:
        return yaml.load(text, Loader=_SpecLoader)
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        column = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        raise SpecError(
            f"{shown}: invalid YAML at line {line}, column {column}: character #x{e.character:04x}: {e.reason}"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{shown}: invalid YAML{at}: {problem}") from None
    except RecursionError:
        raise SpecError(f"{shown}: invalid YAML: nested too deeply") from None


MAX_VALUES = 100_000  # a real spec holds a few thousand values at most


def _expanded_size(value: Any, memo: dict[int, int], active: set[int]) -> int:
    """How many values validation visits, with every YAML alias expanded in place."""
    if not isinstance(value, (dict, list)):
        return 1
    if id(value) in memo:
        return memo[id(value)]
    if id(value) in active:
        return 1  # a cycle: validation reports it
    active.add(id(value))
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
    size = 1
    for item in items:
        size += _expanded_size(item, memo, active)
        if size > MAX_VALUES:
            break
    active.discard(id(value))
    memo[id(value)] = size
    return size


def parse_pipeline_bytes(raw: bytes, shown: str) -> PipelineSpec:
    """A spec file's bytes as a pipeline, or one SpecError per problem."""
    data = _read_yaml(raw, shown)
    try:
        too_big = _expanded_size(data, {}, set()) > MAX_VALUES
    except RecursionError:
        raise SpecError(f"{shown}: invalid YAML: nested too deeply") from None
    if too_big:
        raise SpecError(f"{shown}: the document expands to more than {MAX_VALUES} values through YAML aliases")
    return parse_pipeline(data, shown)


def load_pipeline_file(path: Path, display: str | None = None) -> PipelineSpec:
    shown = display or str(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SpecError(f"{shown}: cannot read: {e.strerror}") from None
    return parse_pipeline_bytes(raw, shown)


def pipeline_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_pipelines(directory: Path) -> list[PipelineSpec]:
    """Every pipeline in `directory`; all problems are gathered into one SpecError."""
    if not directory.is_dir():
        raise SpecError(f"{directory}: pipelines directory not found (set ETL_PIPELINES_DIR)")
    specs: list[PipelineSpec] = []
    errors: list[str] = []
    where: dict[str, str] = {}
    for path in pipeline_files(directory):
        shown = display_path(path)
        try:
            spec = load_pipeline_file(path, shown)
        except SpecError as e:
            errors.append(str(e))
            continue
        if spec.name in where:
            errors.append(f"{shown}: name: pipeline {spec.name!r} is already defined in {where[spec.name]}")
            continue
        where[spec.name] = shown
        specs.append(spec)
    errors += shared_target_errors(specs, where)
    if errors:
        raise SpecError("\n".join(errors))
    return specs


def shared_target_errors(specs: list[PipelineSpec], files: dict[str, str]) -> list[str]:
    """A table loaded by two pipelines, unless both say it is shared: each would replace or
    delete the other's rows. Tables are told apart by warehouse as well as by name."""
    errors: list[str] = []
    claims: dict[tuple[str | None, ...], tuple[str, str, SourceSpec]] = {}
    for spec in specs:
        wh = spec.warehouse
        where = (wh.kind, wh.url) if wh and (wh.kind != "postgres" or wh.url) else ("postgres", None)
        for i, s in enumerate(spec.sources):
            table = spec.target(s)
            claim = claims.setdefault((*where, table), (files[spec.name], spec.name, s))
            other_file, other_pipeline, other = claim
            if other_pipeline == spec.name or (other.load.shared and s.load.shared):
                continue
            errors.append(
                f"{files[spec.name]} (pipeline {spec.name}): sources[{i}].load.target: {table} is also "
                f"loaded by {other_file} (pipeline {other_pipeline}, source {other.name}); give each "
                "its own target, or set load.shared: true on both (upsert only)"
            )
    return errors


def json_schema() -> dict[str, Any]:
    schema = PipelineSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "etl-assets pipeline"
    return schema
