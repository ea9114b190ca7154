"""The `etl_meta` schema: versioned, idempotent migrations, safe from many processes at once.

Only psycopg: `history` and `show` open the warehouse through it without loading Dagster.
"""

from __future__ import annotations

import psycopg

from etl_assets.core.sql import lock_key

SCHEMA = "etl_meta"

# Each entry upgrades the schema by one version; never edit a released entry, append one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE etl_meta.runs (
        run_id        text PRIMARY KEY,
        pipeline      text NOT NULL,
        partitions    text[] NOT NULL,
        trigger       text NOT NULL,
        started_at    timestamptz,
        finished_at   timestamptz,
        duration_s    double precision,
        status        text NOT NULL,
        error_type    text,
        error_summary text,
        peak_rss_mb   double precision,
        cpu_s         double precision,
        retries       integer NOT NULL DEFAULT 0,
        report_path   text,
        webserver_url text,
        steps         jsonb NOT NULL DEFAULT '{}',
        notes         jsonb NOT NULL DEFAULT '[]',
        recorded_at   timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX runs_pipeline_started_idx ON etl_meta.runs (pipeline, started_at DESC);
    CREATE TABLE etl_meta.run_sources (
        run_id           text NOT NULL REFERENCES etl_meta.runs (run_id) ON DELETE CASCADE,
        source           text NOT NULL,
        status           text NOT NULL,
        rows_extracted   bigint,
        rows_quarantined bigint,
        inserted         bigint,
        updated          bigint,
        unchanged        bigint,
        deleted          bigint,
        checks_passed    integer,
        checks_warned    integer,
        checks_failed    integer,
        checks           jsonb NOT NULL DEFAULT '[]',
        inputs           jsonb NOT NULL DEFAULT '{}',
        error            text,
        PRIMARY KEY (run_id, source)
    );
    CREATE TABLE etl_meta.pipeline_state (
        pipeline   text PRIMARY KEY,
        status     text NOT NULL,
        reason     text,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    """,
    """
    CREATE TABLE etl_meta.missed_ticks (
        pipeline        text NOT NULL,
        tick            text NOT NULL,
        caught_up       text[] NOT NULL,
        outside_window  text[] NOT NULL,
        recorded_at     timestamptz NOT NULL DEFAULT now(),
        notified_run_id text,
        PRIMARY KEY (pipeline, tick)
    );
    """,
    # Each source's counts per partition, as the run recorded them.
    "ALTER TABLE etl_meta.run_sources ADD COLUMN partitions jsonb NOT NULL DEFAULT '{}'",
    # Partitions alerted for missing their deadline: each is alerted once, its recovery once.
    """
    CREATE TABLE IF NOT EXISTS etl_meta.deadline_alerts (
        pipeline     text NOT NULL,
        partition    text NOT NULL,
        deadline     timestamptz NOT NULL,
        state        text NOT NULL,
        detail       text NOT NULL,
        alerted_at   timestamptz NOT NULL,
        recovered_at timestamptz,
        PRIMARY KEY (pipeline, partition)
    );
    """,
    # Who started a run through the job API or its UI (the `etl/started_by` tag).
    "ALTER TABLE etl_meta.runs ADD COLUMN started_by text",
]


def migrate(conn: psycopg.Connection) -> int:
    """Bring `etl_meta` to the latest version; safe to call from many processes at once."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("etl_meta", "migrate"),))
        conn.execute("CREATE SCHEMA IF NOT EXISTS etl_meta")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS etl_meta.schema_version ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM etl_meta.schema_version").fetchone()
        current = row[0] if row else 0
        for version, statement in enumerate(MIGRATIONS, start=1):
            if version > current:
                conn.execute(statement)
                conn.execute("INSERT INTO etl_meta.schema_version (version) VALUES (%s)", (version,))
        return len(MIGRATIONS)
