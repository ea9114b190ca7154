"""Fetching an API's pages for one window: templated parameters, auth, pagination.

`Pages` fetches one page after another as the source's `pagination` says, checks each
response (status, JSON, `record_path`) and remembers what it fetched for `inputs`.
Redirects are followed by hand so each hop's origin is checked before credentials go out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import requests

from etl_assets.core.errors import (
    SourceDataError,
    TransientSourceError,
    parse_retry_after,
    transient_status,
)
from etl_assets.core.secrets import redact, resolve
from etl_assets.sources.base import window_bounds
from etl_assets.sources.http_transport import DeadlineAdapter, deadline, origin, trusted_origins
from etl_assets.spec import ENV_REF

if TYPE_CHECKING:
    from etl_assets.sources.base import ExtractRequest
    from etl_assets.spec import HttpSource, Pagination

_TEMPLATES = ("window_start", "window_end", "last_sync")
_MAX_REDIRECTS = 10

Records = list[dict[str, Any]]


def _template(value: str | int | float | bool, values: dict[str, str], where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = resolve(str(value), where=where)
    for name in _TEMPLATES:
        text = text.replace("{" + name + "}", values[name])
    return text


def _headers(source: HttpSource, where: str) -> tuple[dict[str, str], dict[str, str]]:
    """(plain headers, credential headers): the `auth` header and any header set from ${ENV}."""
    plain = {"Accept": "application/json"}
    secret: dict[str, str] = {}
    for k, v in source.headers.items():
        (secret if ENV_REF.search(v) else plain)[k] = resolve(v, where=f"{where}.headers.{k}")
    auth = source.auth  # the spec requires `token` for bearer auth and `value` for api_key
    if auth is not None and auth.type == "bearer":
        secret["Authorization"] = "Bearer " + resolve(auth.token or "", where=f"{where}.auth.token")
    elif auth is not None:
        secret[auth.header] = resolve(auth.value or "", where=f"{where}.auth.value")
    return plain, secret


def dig(body: Any, path: str | None) -> Any:
    """The value at a dotted path such as `data.items`; KeyError names the missing step."""
    value = body
    for step in path.split(".") if path else []:
        if not isinstance(value, dict) or step not in value:
            raise KeyError(step)
        value = value[step]
    return value


class Pages:
    """Fetches pages one after another and remembers what it fetched, for `inputs`."""

    def __init__(self, source: HttpSource, request: ExtractRequest):
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
        self.trusted = trusted_origins(self.url, source.auth)
        self.session = requests.Session()
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, DeadlineAdapter())
        self.fetched: list[dict[str, Any]] = []

    def close(self) -> None:
        self.session.close()

    # --- one page ---------------------------------------------------------------------------

    def _get(self, url: str, params: dict[str, str] | None) -> tuple[Any, Records, requests.Response]:
        """(body, records, response) of one page, or the error that says what is wrong."""
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
        self._check_status(response, shown, n)
        try:
            body = response.json()
        except requests.JSONDecodeError as e:
            raise SourceDataError(
                f"{shown} (page {n}): response is not valid JSON: line {e.lineno} column "
                f"{e.colno}: {e.msg}"
            ) from None
        records = self._records(body, shown, n)
        page["records"] = len(records)
        return body, records, response

    def _check_status(self, response: requests.Response, shown: str, n: int) -> None:
        status = response.status_code
        if transient_status(status):
            wait = parse_retry_after(response.headers.get("Retry-After"))
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

    def _records(self, body: Any, shown: str, n: int) -> Records:
        path = self.source.record_path
        try:
            records = dig(body, path)
        except KeyError as e:
            raise SourceDataError(
                f"{shown} (page {n}): record_path {path!r} not found: no key {e.args[0]!r}"
            ) from None
        if not isinstance(records, list):
            what = f"record_path {path!r}" if path else "the body"
            raise SourceDataError(
                f"{shown} (page {n}): {what} is a {type(records).__name__}, not a list of records"
            )
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                raise SourceDataError(
                    f"{shown} (page {n}): record {i + 1} is a {type(r).__name__}, not an object"
                )
        return records

    def _fetch(self, url: str, params: dict[str, str] | None) -> requests.Response:
        """One page, redirects and body included, within timeout_seconds. Redirects are
        followed here so each hop's origin is checked before credentials go out (requests
        itself keeps custom headers such as X-API-Key across hosts)."""
        timeout = self.source.timeout_seconds
        with deadline(timeout) as expired:
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
        if self.credentials and origin(url) not in self.trusted:
            raise SourceDataError(
                f"{self.where}: the API sent us on to {redact(url)}, another host than "
                f"{redact(self.url)}; credentials are only sent to the configured host: "
                "list the host in auth.allowed_hosts if it should receive them"
            )

    # --- pagination -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Records]:
        p = self.source.pagination
        params = dict(self.params)
        if p is None:
            yield self._get(self.url, params)[1]
        elif p.type == "page":
            yield from self._by_page(p, params)
        elif p.type == "offset":
            yield from self._by_offset(p, params)
        elif p.type == "cursor":
            yield from self._by_cursor(p, params)
        else:  # link: the server names the next page, parameters included
            yield from self._by_link(params)

    def _by_page(self, p: Pagination, params: dict[str, str]) -> Iterator[Records]:
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

    def _by_offset(self, p: Pagination, params: dict[str, str]) -> Iterator[Records]:
        offset = 0
        while True:
            params[p.offset_param] = str(offset)
            params[p.limit_param] = str(p.limit)
            records = self._get(self.url, params)[1]
            yield records
            if len(records) < p.limit:
                return
            offset += len(records)

    def _by_cursor(self, p: Pagination, params: dict[str, str]) -> Iterator[Records]:
        seen: set[str] = set()
        while True:
            body, records, response = self._get(self.url, params)
            yield records
            try:
                cursor = dig(body, p.cursor_path)
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

    def _by_link(self, params: dict[str, str]) -> Iterator[Records]:
        url: str | None = self.url
        query: dict[str, str] | None = params
        while url:
            _, records, response = self._get(url, query)
            yield records
            nxt = response.links.get("next", {}).get("url")
            url, query = (urljoin(response.url, nxt), None) if nxt else (None, None)
