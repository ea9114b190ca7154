"""The one interface every source kind implements: extract one time window.

`extract(source, request) -> Extract`. A source returns either one DataFrame or, when it
streams (`batch_size`), an iterator of DataFrames that the Parquet layer writes batch by
batch, so memory holds one batch rather than the whole window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from etl_assets.core.errors import SourceDataError, TransientSourceError  # noqa: F401  (sources raise them)
from etl_assets.core.partitions import Window

if TYPE_CHECKING:
    from etl_assets.spec import SourceBase


@dataclass
class Extract:
    """What a source read for one window, and how: the data plus a record of its inputs.

    `inputs` is JSON-able and shown in metadata and history: query text with bound window,
    files with sha256/size/rows, pages fetched. It must never hold a secret.
    `unchanged=True` (with `frame=None`) means the source proved that nothing changed since
    `request.previous_inputs` (e.g. the same file hashes), so the stored raw file is kept.
    When `frame` is an iterator, `inputs["rows"]` (and similar counts) are only final once
    it is exhausted, so record `inputs` after writing the batches.
    """

    frame: pd.DataFrame | Iterable[pd.DataFrame] | None
    inputs: dict[str, Any] = field(default_factory=dict)
    unchanged: bool = False


@dataclass(frozen=True)
class ExtractRequest:
    pipeline: str
    window: Window
    # High-water mark of the last successful load of this source (for `:last_sync`).
    last_sync: dt.datetime | None = None
    # The `inputs` recorded by the previous successful extract of this partition, if any.
    previous_inputs: dict[str, Any] | None = None


def window_bounds(source: SourceBase, request: ExtractRequest) -> tuple[dt.datetime, dt.datetime]:
    """The instants an incremental read covers: the lookback widens only the start.

    The lookback is elapsed time, subtracted from the UTC instant: arithmetic on a zoneinfo
    datetime is wall-clock and drops `fold`, which moved the repeated fall-back hour's
    start an hour early.
    """
    start, end = request.window.start, request.window.end
    widened = request.window.start_utc - source.lookback_delta
    return widened.astimezone(start.tzinfo), end
