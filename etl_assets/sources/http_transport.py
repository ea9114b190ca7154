"""The HTTP source's connections: a deadline per page, and where credentials may go.

A socket timeout restarts with every byte a server trickles (headers or body), so each
page gets a watchdog that shuts its sockets down when its time is up. The connection
classes below register themselves with the page being fetched so the watchdog finds them.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests.adapters
import urllib3
import urllib3.connection

if TYPE_CHECKING:
    from etl_assets.spec import HttpAuth

DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int | None]

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


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """Behind an HTTP(S) proxy requests pools connections apart: watch those too."""
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return manager


def _cut_off(connections: list[urllib3.connection.HTTPConnection], expired: threading.Event) -> None:
    expired.set()
    for conn in connections[:]:  # a copy: the fetching thread may add one
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def deadline(seconds: float) -> Iterator[threading.Event]:
    """Shut the page's sockets down after `seconds`; the event says it did."""
    connections: list[urllib3.connection.HTTPConnection] = []
    expired = threading.Event()
    watchdog = threading.Timer(seconds, _cut_off, args=(connections, expired))
    watchdog.daemon = True
    _watched.connections = connections
    watchdog.start()
    try:
        yield expired
    finally:
        watchdog.cancel()
        _watched.connections = []


def origin(url: str) -> Origin:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(scheme)


def trusted_origins(url: str, auth: HttpAuth | None) -> set[Origin]:
    """Where credentials may go: the configured URL's origin and `auth.allowed_hosts`."""
    home = origin(url)
    trusted = {home}
    for entry in auth.allowed_hosts if auth else []:
        host, _, port = entry.lower().partition(":")
        for scheme in {home[0], "https"}:
            trusted.add((scheme, host, int(port) if port else DEFAULT_PORTS[scheme]))
    return trusted
