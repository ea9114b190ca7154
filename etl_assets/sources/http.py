"""JSON APIs over HTTP: templated window parameters, auth from the environment, pagination.

`params` values may use {window_start}, {window_end} and {last_sync} (ISO-8601, pipeline
timezone). Auth headers are resolved from `${ENV}` at run time and never recorded: `inputs`
lists each page's URL and query parameters (secrets masked) and its record count.
Fetching the pages is `http_pages`; this module turns their records into frames.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd

from etl_assets.core.secrets import redact
from etl_assets.sources.base import Extract, SourceDataError, window_bounds
from etl_assets.sources.http_pages import Pages
from etl_assets.sources.tabular import RowConverter, counted, flatten, in_window, naive_zone

if TYPE_CHECKING:
    from etl_assets.sources.base import ExtractRequest
    from etl_assets.sources.http_pages import Records
    from etl_assets.spec import HttpSource


class _Framer:
    """Records → frames with one set of columns for the whole extract."""

    def __init__(self, source: HttpSource, request: ExtractRequest, where: str, streamed: bool):
        self.declared = [c.source_name for c in source.columns or []]
        self.streamed = streamed
        self.where = where
        self.converter: RowConverter | None = None
        self.by_time = source.timestamp_column_source if source.mode == "incremental" else None
        self.start, self.end = window_bounds(source, request)
        self.zone = naive_zone(source, request)

    def _converter(self, records: Records, found: dict[str, None]) -> RowConverter:
        absent = [c for c in self.declared if records and c not in found]
        if absent:
            raise SourceDataError(
                f"{self.where}: records have no field {absent[0]!r} (fields: {', '.join(found)})"
            )
        # Streamed with declared columns, those are the schema: a field that comes and
        # goes between batches cannot change it.
        keep_declared = self.streamed and self.declared
        extra = [] if keep_declared else [k for k in found if k not in self.declared]
        return RowConverter(self.declared + extra)

    def frame(self, records: Records) -> pd.DataFrame:
        found = dict.fromkeys(k for r in records for k in r)
        if self.converter is None:
            self.converter = self._converter(records, found)
        names = self.converter.names
        stray = [k for k in found if k not in names]
        if stray and not self.declared:
            raise SourceDataError(
                f"{self.where}: field {stray[0]!r} first appears after the first batch; "
                "declare the source's columns so every batch has the same ones"
            )
        frame = self.converter.frame([[r.get(k) for k in names] for r in records])
        if self.by_time:
            frame = in_window(frame, self.by_time, self.start, self.end, self.zone, f"{self.where}: ")
        return frame


def _frames(
    source: HttpSource, request: ExtractRequest, pages: Pages, size: int | None
) -> Iterator[pd.DataFrame]:
    """Records → frames of at most `size` rows (all of them in one frame when `size` is None)."""
    framer = _Framer(source, request, pages.where, streamed=size is not None)
    try:
        if size is None:
            yield framer.frame([flatten(r) for page in pages for r in page])
            return
        pending: Records = []
        yielded = False
        for page in pages:
            pending.extend(flatten(r) for r in page)
            while len(pending) >= size:
                chunk, pending = pending[:size], pending[size:]
                frame = framer.frame(chunk)
                if len(frame):
                    yielded = True
                    yield frame
        if pending or not yielded:
            yield framer.frame(pending)
    finally:
        pages.close()


def extract(source: HttpSource, request: ExtractRequest) -> Extract:
    pages = Pages(source, request)
    start, end = window_bounds(source, request)
    inputs: dict[str, Any] = {
        "kind": "http",
        "url": redact(pages.url),
        "params": {k: redact(v) for k, v in pages.params.items()},
        "pagination": source.pagination.type if source.pagination else None,
        "pages": pages.fetched,
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "rows": None,
    }
    if source.batch_size:
        stream = _frames(source, request, pages, source.batch_size)
        weakref.finalize(stream, pages.close)
        return Extract(counted(stream, inputs), inputs)
    frame = next(_frames(source, request, pages, None))
    inputs["rows"] = len(frame)
    return Extract(frame, inputs)
