"""Who is asking: bearer tokens (or the UI's session cookie), roles, and failed-login limits."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import psycopg
from fastapi import HTTPException

from etl_assets.api import tokens
from etl_assets.api.models import Role

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


class FailedLogins:
    """Failed logins per client address in a sliding window, in memory (one API process)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        seen = self._seen.setdefault(client, deque())
        while seen and seen[0] <= now - self.window_s:
            seen.popleft()
        return seen

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again, or None when it is not blocked."""
        now = time.monotonic()
        with self._lock:
            seen = self._recent(client, now)
            if len(seen) < self.limit:
                return None
            return max(1, int(seen[-self.limit] + self.window_s - now) + 1)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(client, now).append(now)


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def identify(
    conn: psycopg.Connection,
    token: str | None,
    needed: Role,
    *,
    client: str,
    limiter: FailedLogins,
    allow_anonymous_read: bool,
) -> Principal:
    """Who holds `token`; 401 for none or a bad one, 429 while `client` is blocked."""
    wait = limiter.retry_after(client)
    if wait is not None:
        raise HTTPException(
            429, f"too many failed logins from {client}; try again in {wait} s", headers={"Retry-After": str(wait)}
        )
    if not token:
        if allow_anonymous_read and needed is Role.viewer:
            return Principal(ANONYMOUS, Role.viewer)
        raise unauthorized("this request needs a token: send the header 'Authorization: Bearer <token>'")
    found = tokens.verify(conn, token)
    if found is None:
        limiter.failed(client)
        raise unauthorized("the token is unknown or revoked")
    return Principal(*found)


def authorize(principal: Principal, needed: Role) -> None:
    """403 unless the principal's role reaches `needed`."""
    if not principal.role.allows(needed):
        raise HTTPException(
            403, f"token {principal.name!r} has the role {principal.role.value}; this needs {needed.value}"
        )
