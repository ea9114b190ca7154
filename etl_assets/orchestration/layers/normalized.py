"""normalized: the spec's names and types, UTC timestamps, de-duplicated and hashed."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import dagster as dg

from etl_assets.io import contract
from etl_assets.io.files import read_frame_bytes, sha256_of
from etl_assets.io.storage import KEEP, PartitionValue, Written
from etl_assets.ops.history import step_metrics, usage
from etl_assets.transform.normalize import normalize

if TYPE_CHECKING:
    from etl_assets.io.storage import PartitionFrames
    from etl_assets.orchestration.layers.step import Step
    from etl_assets.spec import PipelineSpec, SourceSpec

# Bump when normalize's output for the same input changes, so stored normalized files are redone.
NORMALIZE_VERSION = "2"


def fingerprint(spec: PipelineSpec, source: SourceSpec) -> str:
    """What a normalized file depends on besides the raw bytes: the source's spec, the timezone
    and the normalize code's version."""
    payload = json.dumps(
        {"v": NORMALIZE_VERSION, "tz": spec.timezone, "source": source.model_dump(mode="json")},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _kept(step: Step, partition: str, raw_sha: str, made_by: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(stats, lineage) of the stored file when it was normalized from these raw bytes under
    the same spec and code, and is still intact; None when it must be redone."""
    key = step.key("normalized")
    previous = contract.recorded(step.context.instance, key, partition)
    done = previous.for_partition(contract.NORMALIZED_FROM, partition) or {}
    if (
        done.get("raw_sha256") == raw_sha
        and done.get("fingerprint") == made_by
        and previous.has(contract.NORMALIZE_STATS, partition)
        and step.store.holds(key, partition, done.get("sha256"))
    ):
        return previous.for_partition(contract.NORMALIZE_STATS, partition), done
    return None


def normalize_partitions(step: Step, raw: PartitionFrames) -> dg.Output:
    """The normalized step: each raw file normalized and stored, or kept when already done.

    Normalizing depends only on the raw bytes and the fingerprint, so a partition whose raw file
    is byte for byte another's of this run (a full source's shared extract, empty windows)
    takes a copy of that partition's normalized file instead of normalizing it again.
    """
    started = usage()
    made_by = fingerprint(step.spec, step.source)
    frames: dict[str, PartitionValue] = {}
    stats: dict[str, Any] = {}
    lineage: dict[str, dict[str, Any]] = {}
    done: dict[str, str] = {}  # raw sha256 → the first partition of this run normalized from it
    for k in step.partitions:
        data = raw.read_bytes(k)
        raw_sha = sha256_of(data)
        kept = _kept(step, k, raw_sha, made_by)
        if kept is not None:
            # The same raw bytes under the same spec and code normalize to the same file.
            frames[k], (stats[k], lineage[k]) = KEEP, kept
        elif raw_sha in done:
            first = done[raw_sha]
            frames[k] = _copy(step, first, k, lineage[first]["sha256"])
            stats[k], lineage[k] = stats[first], lineage[first]
        else:
            with step.classified([k]):
                result = normalize(read_frame_bytes(data), step.source, step.spec.timezone)
            frames[k], sha = step.store.write_hashed(step.key("normalized"), k, result.frame)  # one window at a time
            stats[k] = result.stats
            lineage[k] = {"raw_sha256": raw_sha, "fingerprint": made_by, "sha256": sha}
        del data
        done.setdefault(raw_sha, k)
    return dg.Output(
        frames,
        metadata={
            contract.NORMALIZE_STATS: dg.MetadataValue.json(stats),
            contract.NORMALIZED_FROM: dg.MetadataValue.json(lineage),
            **step_metrics(started),
        },
    )


def _copy(step: Step, first: str, partition: str, sha256: str) -> Written:
    """Store partition `first`'s normalized file (hashing to `sha256`), made from the same raw
    bytes, as `partition`."""
    key = step.key("normalized")
    with step.classified([partition]):
        written, _ = step.store.reuse(step.store.path(key, first), key, partition, sha256)
    return written
