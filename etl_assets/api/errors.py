"""How the job API answers a failure: one status per kind of exception, one JSON shape."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from etl_assets.api import specs
from etl_assets.api.models import Error
from etl_assets.core.secrets import redact
from etl_assets.ops import jobcontrol as jobs
from etl_assets.spec import SpecError

# Exceptions the handlers let through, by the status they answer with.
STATUS: list[tuple[type[Exception], int]] = [
    (specs.Missing, 404),
    (jobs.RunNotFound, 404),
    (specs.Conflict, 409),
    (jobs.RunFinished, 409),
    (SpecError, 422),
    (RequestValidationError, 422),
    (jobs.JobControlError, 502),
    (psycopg.OperationalError, 503),
]

# Every route documents the error body it may answer with.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Error} for code in (401, 403, 404, 409, 422, 429, 502, 503)
}


def status_of(exc: BaseException) -> int:
    if isinstance(exc, HTTPException):
        return exc.status_code
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 500)


def message_of(exc: BaseException) -> str:
    if isinstance(exc, HTTPException):
        return str(exc.detail)
    if isinstance(exc, RequestValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in exc.errors()
        )
    if isinstance(exc, psycopg.OperationalError):
        return f"the warehouse database is unreachable: {redact(str(exc).strip().splitlines()[0])}"
    return redact(str(exc)) or type(exc).__name__


def error_response(_request: Request, exc: Exception) -> JSONResponse:
    headers = getattr(exc, "headers", None)
    return JSONResponse({"detail": message_of(exc)}, status_code=status_of(exc), headers=headers)
