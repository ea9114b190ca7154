"""The one interface every source kind implements: extract one time window."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from etl_assets.partitions import Window


@dataclass
class Extract:
    """What a source read for one window, and how: the data plus a record of its inputs."""

    frame: pd.DataFrame
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExtractRequest:
    pipeline: str
    window: Window
    last_sync: dt.datetime | None = None

    @property
    def extract_start(self) -> dt.datetime:
        return self.window.start


class Extractor(Protocol):
    def __call__(self, source: Any, request: ExtractRequest) -> Extract: ...


class SourceDataError(Exception):
    """The source's data or schema is wrong: retrying cannot help."""
