"""Which failures are worth retrying. One function decides: `is_transient`.

Transient errors propagate so the step's RetryPolicy retries them. Everything else becomes
`dg.Failure(allow_retries=False)` at once: retrying a schema error only hides it and hammers
the source.
"""

from __future__ import annotations

import socket

import dagster as dg

from etl_assets.core.secrets import MissingSecret, redact


class SpecError(Exception):
    """An invalid pipeline spec. The message alone tells the user what to fix."""


class SourceDataError(Exception):
    """The source's data or schema is wrong: retrying cannot help."""


class TransientSourceError(Exception):
    """A failure worth retrying (rate limit, 5xx, timeout); `retry_after` is in seconds."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after

# SQLSTATE classes/codes that mean "try again": connection exceptions, lost server,
# serialization failures, deadlocks, lock and statement timeouts, server shutting down.
_TRANSIENT_SQLSTATES = ("08", "40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03", "53300")
# MySQL/MariaDB: can't connect, server gone, lost connection, lock wait timeout, deadlock.
_TRANSIENT_MYSQL = {2002, 2003, 2006, 2013, 2055, 1205, 1213, 1040}
_TRANSIENT_HTTP = {408, 429}


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def is_transient(exc: BaseException) -> bool:
    """True when the same call may well succeed if repeated a little later."""
    if isinstance(exc, TransientSourceError):
        return True
    if isinstance(exc, (SourceDataError, MissingSecret, SpecError, dg.Failure)):
        return False
    try:
        import psycopg

        if isinstance(exc, psycopg.Error):
            state = getattr(exc, "sqlstate", None)
            if state:
                return state.startswith(_TRANSIENT_SQLSTATES)
            # No SQLSTATE: the client never reached a server (refused, reset, DNS, timeout),
            # unless the server answered that the login is wrong.
            text = str(exc).lower()
            return isinstance(exc, psycopg.OperationalError) and not (
                "authentication failed" in text or "password" in text or "does not exist" in text
            )
    except ImportError:  # pragma: no cover - psycopg is a core dependency
        pass
    try:
        import pymysql

        if isinstance(exc, pymysql.err.MySQLError):
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            return code in _TRANSIENT_MYSQL
    except ImportError:  # pragma: no cover
        pass
    try:
        import requests

        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return True
        if isinstance(exc, requests.HTTPError):
            status = _http_status(exc)
            return status is not None and (status in _TRANSIENT_HTTP or status >= 500)
    except ImportError:  # pragma: no cover
        pass
    try:
        import sqlalchemy.exc as sa_exc

        if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
            return is_transient(exc.orig) or bool(exc.connection_invalidated)
    except ImportError:  # pragma: no cover
        pass
    # Builtins last: refused/reset connections, DNS failures and timeouts.
    if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, socket.gaierror)):
        return True
    if isinstance(exc, OSError) and exc.errno in (101, 110, 111, 113):
        return True
    return False


def retry_after(exc: BaseException) -> float | None:
    """Seconds a server asked us to wait (HTTP 429/503 `Retry-After`), if any."""
    value = getattr(exc, "retry_after", None)
    if value is None:
        response = getattr(exc, "response", None)
        header = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
        if header and str(header).strip().isdigit():
            value = float(header)
    return float(value) if value is not None else None


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}" if not isinstance(exc, (SourceDataError, dg.Failure)) else text)


def memory_limit_failure(where: str, limit_mb: int, step: str, peak_mb: float) -> dg.Failure:
    """A step whose process passed its memory limit: never retried, the same input needs the
    same memory."""
    return dg.Failure(
        description=(
            f"{where}: memory limit of {limit_mb} MB exceeded in step {step} (peak resident "
            f"memory {peak_mb:.0f} MB); raise resources.memory_mb or read the source in batches (batch_size)"
        ),
        metadata={"error_type": "memory_limit", "classification": "memory limit", "limit_mb": limit_mb},
        allow_retries=False,
    )


def next_delay(policy: dg.RetryPolicy | None, attempt: int) -> float:
    """The delay Dagster will wait before retry number `attempt + 1` (without jitter)."""
    if policy is None or not policy.delay:
        return 0.0
    if policy.backoff == dg.Backoff.EXPONENTIAL:
        return float(policy.delay) * (2**attempt)
    if policy.backoff == dg.Backoff.LINEAR:
        return float(policy.delay) * (attempt + 1)
    return float(policy.delay)
