"""The job API (FastAPI): pipelines, runs and the audit trail, behind tokens with roles.

It drives the same Dagster webserver as `etl-assets jobs` through the same client module
(`etl_assets.ops.jobcontrol`), and reads run history through `etl_assets.ops.history`.
Routes live in `pipelines.py` and `runs.py`, what they depend on in `deps.py`, and how a
failure answers in `errors.py`.
"""

from __future__ import annotations

import threading

import psycopg
from fastapi import FastAPI, HTTPException

from etl_assets.api import pipelines, proxy, runs, tokens
from etl_assets.api.auth import FailedLogins
from etl_assets.api.deps import ApiConfig, Ctx
from etl_assets.api.errors import STATUS, error_response

__all__ = ["ApiConfig", "create_app"]


def create_app(config: ApiConfig) -> FastAPI:
    app = FastAPI(
        title="etl-assets job API", version="1", openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs", redoc_url=None,
    )
    with psycopg.connect(config.warehouse_url, autocommit=True) as conn:
        tokens.migrate(conn)
    app.state.ctx = Ctx(config, FailedLogins(config.failed_login_limit, config.failed_login_window_s),
                        threading.Lock())
    handled: list[type[Exception]] = [HTTPException, *(cls for cls, _ in STATUS)]
    for cls in handled:
        app.add_exception_handler(cls, error_response)
    app.include_router(pipelines.router)
    app.include_router(runs.router)
    if config.ui is not None:
        proxy.mount(app, config.ui)
    return app
