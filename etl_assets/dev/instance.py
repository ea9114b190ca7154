"""The Dagster instance's own schema: created or upgraded once, before any service starts."""

from __future__ import annotations

import os

import dagster as dg
import psycopg

from etl_assets.core.sql import lock_key
from etl_assets.dev.embedded import to_libpq


def migrate_instance() -> None:
    """Create or upgrade the Dagster instance's schema, before any service starts.

    The webserver and the daemon each create missing tables when they start; started together
    on an empty database they race (`type "jobs" already exists`). Migrating first removes the
    race, and an advisory lock on the instance database serializes migrations started at once
    (both systemd units run this before their service). Reads the instance from the environment,
    as Dagster does (`export` a `Setup` first).
    """
    with psycopg.connect(to_libpq(os.environ["ETL_INSTANCE_URL"]), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_key("dagster-instance", "migrate"),))
        with dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"]) as instance:
            instance.upgrade()
    # Closing the connection releases the lock.
