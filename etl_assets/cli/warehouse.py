"""The run history's database, for the commands that read it (`history`, `show`, `jobs`)."""

from __future__ import annotations

import psycopg

from etl_assets.dev import embedded
from etl_assets.ops.history_schema import migrate


def warehouse_conn() -> tuple[embedded.Setup, psycopg.Connection]:
    """The run history's database, its schema up to date; keep the setup referenced while the
    connection is in use (it holds the embedded server, if that is the warehouse)."""
    setup = embedded.configure()
    conn = psycopg.connect(setup.warehouse_url, autocommit=True)
    migrate(conn)
    return setup, conn
