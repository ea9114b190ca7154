"""JSON APIs over HTTP: templated window parameters, auth from the environment, pagination.

`params` values may use {window_start}, {window_end} and {last_sync} (ISO-8601, pipeline
timezone). Auth headers are resolved from `${ENV}` at run time and never recorded: `inputs`
lists each page's URL and query parameters (secrets masked) and its record count.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import socket
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urljoin, urlsplit

import pandas as pd
import requests
import requests.adapters
import urllib3
import urllib3.connection

from etl_assets.core.secrets import redact, resolve
from etl_assets.sources.base import (
    Extract,
    ExtractRequest,
    SourceDataError,
    TransientSourceError,
    window_bounds,
)
from etl_assets.sources.tabular import RowConverter, counted, flatten, in_window, naive_zone
from etl_assets.spec import ENV_REF, HttpAuth

_TEMPLATES = ("window_start", "window_end", "last_sync")


def _template(value: Any, values: dict[str, str], where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = resolve(str(value), where=where)
    for name in _TEMPLATES:
        text = text.replace("{" + name + "}", values[name])
    return text


def _headers(source: Any, where: str) -> tuple[dict[str, str], dict[str, str]]:
    """(plain headers, credential headers): the `auth` header and any header set from ${ENV}."""
    plain = {"Accept": "application/json"}
    secret: dict[str, str] = {}
    for k, v in source.headers.items():
        (secret if ENV_REF.search(v) else plain)[k] = resolve(v, where=f"{where}.headers.{k}")
    auth = source.auth
    if auth is not None and auth.type == "bearer":
        secret["Authorization"] = "Bearer " + resolve(auth.token, where=f"{where}.auth.token")
    elif auth is not None:
        secret[auth.header] = resolve(auth.value, where=f"{where}.auth.value")
    return plain, secret


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def _trusted_origins(url: str, auth: HttpAuth | None) -> set[tuple[str, str, int | None]]:
    """Where credentials may go: the configured URL's origin and `auth.allowed_hosts`."""
    home = _origin(url)
    trusted = {home}
    for entry in auth.allowed_hosts if auth else []:
        host, _, port = entry.lower().partition(":")
        for scheme in {home[0], "https"}:
            trusted.add((scheme, host, int(port) if port else _DEFAULT_PORTS[scheme]))
    return trusted


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


_MAX_REDIRECTS = 10


_watched = threading.local()


class _WatchedHTTP(urllib3.connection.HTTPConnection):
    """Registers itself with the page being fetched, so its deadline can cut it off."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        getattr(_watched, "connections", []).append(self)
        super().request(*args, **kwargs)


class _WatchedHTTPS(urllib3.connection.HTTPSConnection):
    request = _WatchedHTTP.request


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTP


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPS


class _DeadlineAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """Behind an HTTP(S) proxy requests pools connections apart: watch those too."""
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return manager


@contextmanager
def _deadline(seconds: float) -> Iterator[threading.Event]:
    """A socket timeout restarts with every byte a server trickles (headers or body), so a
    watchdog shuts the page's sockets down when its time is up; the event says it did."""
    connections: list[urllib3.connection.HTTPConnection] = []
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        for conn in connections[:]:  # a copy: the fetching thread may add one
            sock = getattr(conn, "sock", None)
            if sock is not None:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(seconds, stop)
    watchdog.daemon = True
    _watched.connections = connections
    watchdog.start()
    try:
        yield expired
    finally:
        watchdog.cancel()
        _watched.connections = []


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
        self.headers, self.credentials = _headers(source, self.where)
        self.trusted = _trusted_origins(self.url, source.auth)
        self.session = requests.Session()
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, _DeadlineAdapter())
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
            response = self._fetch(url, params)
        except requests.Timeout as e:
            raise type(e)(
                f"{self.where}: no complete response from {redact(url)} within timeout_seconds "
                f"({self.source.timeout_seconds:g}s) (page {n})"
            ) from None
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

    def _fetch(self, url: str, params: dict[str, str] | None) -> requests.Response:
        """One page, redirects and body included, within timeout_seconds. Redirects are
        followed here so each hop's origin is checked before credentials go out (requests
        itself keeps custom headers such as X-API-Key across hosts)."""
        timeout = self.source.timeout_seconds
        with _deadline(timeout) as expired:
            try:
                for _ in range(_MAX_REDIRECTS + 1):
                    full = requests.Request("GET", url, params=params).prepare().url or url
                    self._check_origin(full)
                    response = self.session.get(
                        full,
                        headers={**self.headers, **self.credentials},
                        timeout=timeout,
                        allow_redirects=False,
                    )
                    if expired.is_set():  # the body may just have ended early
                        raise requests.Timeout(full)
                    if not response.is_redirect:
                        return response
                    url, params = urljoin(full, response.headers["Location"]), None
            except requests.RequestException:
                if expired.is_set():
                    raise requests.Timeout(url) from None
                raise
        raise SourceDataError(f"{self.where}: more than {_MAX_REDIRECTS} redirects from {redact(url)}")

    def _check_origin(self, url: str) -> None:
        if self.credentials and _origin(url) not in self.trusted:
            raise SourceDataError(
                f"{self.where}: the API sent us on to {redact(url)}, another host than "
                f"{redact(self.url)}; credentials are only sent to the configured host: "
                "list the host in auth.allowed_hosts if it should receive them"
            )

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
            tz = naive_zone(source, request)
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
