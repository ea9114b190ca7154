"""When a partition's quality result may be reused instead of validated again.

The GX-run checks read only the frame, so their outcomes follow from three things: the
frame's content (the stored normalized file's sha256), the checks as the spec declares them
and the great-expectations version. When all three match an earlier validation, its outcomes
are re-emitted and GX is neither imported nor run. The local checks (relationship, anomaly,
freshness, schema) read the warehouse, the window or the raw columns, so they always run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from importlib import metadata
from typing import Any

from etl_assets.quality.checks import frame_only
from etl_assets.quality.results import CheckOutcome, Reused
from etl_assets.spec import SourceBase, check_name

# Bump when the outcome of a GX-run check for the same frame and spec changes, so no earlier
# result is reused.
QUALITY_VERSION = "1"


def checks_fingerprint(source: SourceBase) -> str:
    """The source's checks as declared, and the key `unique` defaults to and outcomes describe."""
    payload = json.dumps(
        {
            "v": QUALITY_VERSION,
            "checks": [c.model_dump(mode="json") for c in source.checks],
            "primary_key": source.primary_key,
        },
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@cache
def gx_version() -> str:
    """The installed great-expectations, read from its package metadata: importing it takes seconds."""
    return metadata.version("great_expectations")


def reusable_checks(source: SourceBase) -> set[str]:
    """The checks whose outcome a reuse re-emits; none when one of them sets rows aside
    (quarantine, store_failures): its failing rows are not recorded, only counted."""
    checks = [c for c in source.checks if frame_only(c)]
    if any(c.severity == "quarantine" or c.store_failures for c in checks):
        return set()
    return {check_name(c) for c in checks}


def lineage(source: SourceBase, normalized_sha256: str) -> dict[str, str]:
    """What a validation's frame-only outcomes depend on; equal lineages give equal outcomes."""
    return {
        "normalized_sha256": normalized_sha256,
        "checks_sha256": checks_fingerprint(source),
        "great_expectations": gx_version(),
    }


def from_record(names: set[str], outcomes: list[Mapping[str, Any]], document: Mapping[str, Any]) -> Reused | None:
    """The recorded outcomes of `names` (as `CheckOutcome.as_dict` wrote them) and the GX part of
    the stored quality document; None when any is missing."""
    by_name = {o["name"]: CheckOutcome.from_dict(o) for o in outcomes if o.get("name") in names}
    gx_document = document.get("great_expectations")
    if set(by_name) != names or not isinstance(gx_document, dict):
        return None
    return Reused(by_name, gx_document)


def from_result(names: set[str], outcomes: list[CheckOutcome], document: Mapping[str, Any]) -> Reused:
    """What a validation just made can stand for another partition of the same content."""
    return Reused({o.name: o for o in outcomes if o.name in names}, dict(document.get("great_expectations") or {}))
