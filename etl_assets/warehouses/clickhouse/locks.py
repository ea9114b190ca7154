"""Who may use a chDB directory or load a ClickHouse table, and when.

chDB opens a data directory in one process at a time: a file lock in the directory makes other
processes wait their turn. Loads of one table take turns: threads of this process through a
lock per table, processes loading into a server through an advisory lock in the PostgreSQL
run-history database (chDB's directory lock already serializes those).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from etl_assets.sources.base import TransientSourceError
from etl_assets.warehouses.base import lock_key
from etl_assets.warehouses.clickhouse.configuration import Endpoint

_LOCK_WAIT_SECONDS = 3600.0

_dir_locks: dict[str, list[Any]] = {}  # chdb directory -> [fd, depth]
_dir_guard = threading.Lock()
_table_locks: dict[tuple[str, str], threading.RLock] = {}


@contextmanager
def directory_lock(path: str, wait: float = _LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the chDB directory for this process; other processes wait (chDB allows one)."""
    with _dir_guard:
        held = _dir_locks.get(path)
        if held:
            held[1] += 1
    if not held:
        os.makedirs(path, exist_ok=True)
        fd = os.open(os.path.join(path, ".etl-assets.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise TransientSourceError(
                        f"the chDB directory {path} stayed in use by another process for {wait:.0f}s"
                    ) from None
                time.sleep(0.05)
        with _dir_guard:
            _dir_locks[path] = [fd, 1]
    try:
        yield
    finally:
        with _dir_guard:
            entry = _dir_locks[path]
            entry[1] -= 1
            if entry[1] == 0:
                del _dir_locks[path]
                fcntl.flock(entry[0], fcntl.LOCK_UN)
                os.close(entry[0])


@contextmanager
def load_lock(endpoint: Endpoint, lock_url: str | None, target: str) -> Iterator[None]:
    """Hold `target` of `endpoint` for one load, against this process and (a server) others."""
    with _table_lock(endpoint.identity, target):
        if endpoint.embedded or not lock_url:
            yield
            return
        key = lock_key("clickhouse-load", endpoint.identity, target)
        with psycopg.connect(lock_url, autocommit=True, connect_timeout=10) as pg:
            pg.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                pg.execute("SELECT pg_advisory_unlock(%s)", (key,))


def _table_lock(identity: str, target: str) -> threading.RLock:
    with _dir_guard:
        return _table_locks.setdefault((identity, target), threading.RLock())


@contextmanager
def nothing() -> Iterator[None]:
    yield
