"""The pipeline specs as the commands see them: an invalid spec or an unknown name is a
usage error in click's style."""

from __future__ import annotations

from etl_assets.cli.group import _fail
from etl_assets.core import settings
from etl_assets.spec import PipelineSpec, SpecError, load_pipelines


def _specs() -> list[PipelineSpec]:
    try:
        return load_pipelines(settings.pipelines_dir())
    except SpecError as e:
        _fail(str(e))


def _spec(name: str) -> PipelineSpec:
    for spec in _specs():
        if spec.name == name:
            return spec
    names = ", ".join(s.name for s in _specs()) or "none"
    _fail(f"unknown pipeline {name!r} (pipelines: {names})")
