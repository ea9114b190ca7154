"""Asset keys: `<pipeline>/<layer>/<source>` and `<pipeline>/report`, named in one place."""

from __future__ import annotations

import dagster as dg

LAYERS = ("raw", "normalized", "validated", "loaded")


def asset_key(pipeline: str, layer: str, source: str | None = None) -> dg.AssetKey:
    return dg.AssetKey([pipeline, layer] if source is None else [pipeline, layer, source])
