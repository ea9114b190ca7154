"""JSON APIs over HTTP: templated window parameters, auth from the environment, pagination.

`params` values may use {window_start}, {window_end} and {last_sync} (ISO-8601, pipeline
timezone). Auth headers are resolved from `${ENV}` at run time and never recorded: `inputs`
lists each page's URL and query parameters (secrets masked) and its record count.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import weakref
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import pandas as pd
import requests

from etl_assets.secrets import redact, resolve
from etl_assets.sources.base import (
    Extract,
    ExtractRequest,
    SourceDataError,
    TransientSourceError,
    window_bounds,
)
from etl_assets.sources.tabular import RowConverter, counted, flatten, in_window

_TEMPLATES = ("window_start", "window_end", "last_sync")


def _template(value: Any, values: dict[str, str], where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = resolve(str(value), where=where)
    for name in _TEMPLATES:
        text = text.replace("{" + name + "}", values[name])
    return text


def _headers(source: Any, where: str) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    headers.update({k: resolve(v, where=f"{where}.headers.{k}") for k, v in source.headers.items()})
    auth = source.auth
    if auth is not None and auth.type == "bearer":
        headers["Authorization"] = "Bearer " + resolve(auth.token, where=f"{where}.auth.token")
    elif auth is not None:
        headers[auth.header] = resolve(auth.value, where=f"{where}.auth.value")
    return headers


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` is either seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def _dig(body: Any, path: str | None) -> Any:
    """The value at a dotted path such as `data.items`; KeyError names the missing step."""
    value = body
    for step in path.split(".") if path else []:
        if not isinstance(value, dict) or step not in value:
            raise KeyError(step)
        value = value[step]
    return value


class _Pages:
    """Fetches pages one after another and remembers what it fetched, for `inputs`."""

    def __init__(self, source: Any, request: ExtractRequest):
        self.source = source
        self.where = f"{request.pipeline}.sources.{source.name}"
        start, end = window_bounds(source, request)
        values = {
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "last_sync": request.last_sync.isoformat() if request.last_sync else "",
        }
        self.url = resolve(source.url, where=f"{self.where}.url")
        self.params = {
            k: _template(v, values, f"{self.where}.params.{k}") for k, v in source.params.items()
        }
        self.headers = _headers(source, self.where)
        self.session = requests.Session()
        self.fetched: list[dict[str, Any]] = []

    def close(self) -> None:
        self.session.close()

    def _get(self, url: str, params: dict[str, str] | None) -> Any:
        n = len(self.fetched) + 1
        if n > self.source.max_pages:
            raise SourceDataError(
                f"{self.where}: the API has more than max_pages ({self.source.max_pages}) pages "
                "for this window; raise max_pages or use a shorter partition cadence"
            )
        try:
            response = self.session.get(
                url, params=params, headers=self.headers, timeout=self.source.timeout_seconds
            )
        except requests.RequestException as e:
            # Same type (so it is still retried), but the message may hold a query-string key.
            raise type(e)(f"{self.where}: {redact(str(e))}") from None
        shown = redact(response.url)
        page: dict[str, Any] = {"url": shown, "status": response.status_code}
        self.fetched.append(page)
        status = response.status_code
        if status in (408, 429) or status >= 500:
            wait = _retry_after(response.headers.get("Retry-After"))
            hint = f"; retry after {wait:g}s" if wait is not None else ""
            raise TransientSourceError(
                f"{self.where}: HTTP {status} {response.reason} from {shown} (page {n}){hint}",
                retry_after=wait,
            )
        if status in (401, 403):
            raise SourceDataError(
                f"{self.where}: HTTP {status} {response.reason} from {shown}: authentication "
                "failed; check the auth settings and the credential in the environment"
            )
        if status >= 400:
            snippet = redact(response.text[:200].strip())
            raise SourceDataError(
                f"{self.where}: HTTP {status} {response.reason} from {shown} (page {n}): {snippet}"
            )
        try:
            body = response.json()
        except requests.JSONDecodeError as e:
            raise SourceDataError(
                f"{shown} (page {n}): response is not valid JSON: line {e.lineno} column "
                f"{e.colno}: {e.msg}"
            ) from None
        try:
            records = _dig(body, self.source.record_path)
        except KeyError as e:
            raise SourceDataError(
                f"{shown} (page {n}): record_path {self.source.record_path!r} not found: "
                f"no key {e.args[0]!r}"
            ) from None
        if not isinstance(records, list):
            what = (
                f"record_path {self.source.record_path!r}"
                if self.source.record_path
                else "the body"
            )
            raise SourceDataError(
                f"{shown} (page {n}): {what} is a {type(records).__name__}, not a list of records"
            )
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                raise SourceDataError(
                    f"{shown} (page {n}): record {i + 1} is a {type(r).__name__}, not an object"
                )
        page["records"] = len(records)
        return body, records, response

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        p = self.source.pagination
        params = dict(self.params)
        if p is None:
            yield self._get(self.url, params)[1]
        elif p.type == "page":
            number = p.start
            while True:
                params[p.param or "page"] = str(number)
                if p.size_param:
                    params[p.size_param] = str(p.size)
                records = self._get(self.url, params)[1]
                yield records
                if not records or (p.size and len(records) < p.size):
                    return
                number += 1
        elif p.type == "offset":
            offset = 0
            while True:
                params[p.offset_param] = str(offset)
                params[p.limit_param] = str(p.limit)
                records = self._get(self.url, params)[1]
                yield records
                if len(records) < p.limit:
                    return
                offset += len(records)
        elif p.type == "cursor":
            seen: set[str] = set()
            while True:
                body, records, response = self._get(self.url, params)
                yield records
                try:
                    cursor = _dig(body, p.cursor_path)
                except KeyError:
                    cursor = None
                if cursor in (None, ""):
                    return
                cursor = str(cursor)
                if cursor in seen:
                    raise SourceDataError(
                        f"{redact(response.url)}: cursor {cursor!r} came back a second time; "
                        "the API would page forever"
                    )
                seen.add(cursor)
                params[p.param or "cursor"] = cursor
        else:  # link: the server names the next page, parameters included
            url: str | None = self.url
            query: dict[str, str] | None = params
            while url:
                _, records, response = self._get(url, query)
                yield records
                nxt = response.links.get("next", {}).get("url")
                url, query = (urljoin(response.url, nxt), None) if nxt else (None, None)


def _frames(
    source: Any, request: ExtractRequest, pages: _Pages, size: int | None
) -> Iterator[pd.DataFrame]:
    """Records → frames of at most `size` rows (all of them in one frame when `size` is None)."""
    declared = [c.source_name for c in source.columns or []]
    pending: list[dict[str, Any]] = []
    converter: RowConverter | None = None
    start, end = window_bounds(source, request)
    by_time = source.mode == "incremental" and source.timestamp_column_source

    def emit(records: list[dict[str, Any]]) -> pd.DataFrame:
        nonlocal converter
        found = dict.fromkeys(k for r in records for k in r)
        if converter is None:
            absent = [c for c in declared if records and c not in found]
            if absent:
                raise SourceDataError(
                    f"{pages.where}: records have no field {absent[0]!r} "
                    f"(fields: {', '.join(found)})"
                )
            # Streamed with declared columns, those are the schema: a field that comes and
            # goes between batches cannot change it.
            extra = [] if size is not None and declared else [k for k in found if k not in declared]
            converter = RowConverter(declared + extra)
        stray = [k for k in found if k not in converter.names]
        if stray and not declared:
            raise SourceDataError(
                f"{pages.where}: field {stray[0]!r} first appears after the first batch; "
                "declare the source's columns so every batch has the same ones"
            )
        names = converter.names
        frame = converter.frame([[r.get(k) for k in names] for r in records])
        if by_time:
            tz = request.window.start.tzinfo
            frame = in_window(frame, by_time, start, end, tz, f"{pages.where}: ")
        return frame

    try:
        if size is None:
            records = [flatten(r) for page in pages for r in page]
            yield emit(records)
            return
        yielded = False
        for page in pages:
            pending.extend(flatten(r) for r in page)
            while len(pending) >= size:
                chunk, pending = pending[:size], pending[size:]
                frame = emit(chunk)
                if len(frame):
                    yielded = True
                    yield frame
        if pending or not yielded:
            yield emit(pending)
    finally:
        pages.close()


def extract(source: Any, request: ExtractRequest) -> Extract:
    pages = _Pages(source, request)
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
