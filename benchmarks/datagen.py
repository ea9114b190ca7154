"""Deterministic source data, generated inside PostgreSQL (no client round trips).

`src.orders` holds `rows_per_week` orders per week for `weeks` weeks from 2025-01-05 (UTC):
order `i` is updated at `2025-01-05 + (i - 1) * (1 week / rows_per_week)`, so every week holds
exactly `rows_per_week` rows and every value is a pure function of `i`.

`src.orders_v1` is the first CHANGED_WEEKS weeks with every tenth order changed (quantity + 1,
another status); loading it over `src.orders` (or back) changes exactly 10% of the rows.
`src.orders_tiny` is the first TINY_ROWS orders, for the fixed-overhead run.

The tables are reused while `src.bench_meta` records the same generator version and sizes.

Schema `small` holds the small-partitions scenario's tables (SMALL_SOURCES): the incremental
ones `rows_per_week` rows per week like `src.orders`, the full ones one row a minute from
2025-01-05; `small.bench_meta` records their sizes.
"""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

from benchmarks.common import CHANGED_WEEKS, COLUMNS, FIRST_WEEK, SMALL_SOURCES, TINY_ROWS, pg_url

VERSION = 1
WEEK_US = 7 * 24 * 3600 * 1_000_000

_DDL = "CREATE TABLE {table} (" + ", ".join(
    f"{n} {t} NOT NULL" if n in ("order_id", "customer_id", "sku", "quantity", "status", "updated_at") else f"{n} {t}"
    for n, t, _ in COLUMNS
) + ")"

_SELECT = """
SELECT i,
       1 + (i * 7919) %% 50000,
       CASE WHEN i %% 97 = 0 THEN NULL ELSE 'customer ' || (1 + (i * 7919) %% 50000) END,
       'SKU-' || lpad(((i * 104729) %% 5000)::text, 4, '0'),
       (1 + (i * 31) %% 20)::integer,
       round((1 + (i * 13) %% 9999) / 100.0, 2),
       (ARRAY['placed', 'paid', 'shipped', 'delivered', 'returned'])[1 + i %% 5],
       %(t0)s::timestamptz + (i - 1) * %(step_us)s * interval '1 microsecond'
           - ((i * 17) %% 4320) * interval '1 minute',
       %(t0)s::timestamptz + (i - 1) * %(step_us)s * interval '1 microsecond'
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
"""


def ensure_database(name: str) -> None:
    with psycopg.connect(pg_url("postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(name: str) -> None:
    with psycopg.connect(pg_url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def generate(db: str, rows_per_week: int, weeks: int, *, force: bool = False, log=print) -> dict:
    """Create (or reuse) the source tables in database `db`; return what they hold."""
    if WEEK_US % rows_per_week:
        raise ValueError(f"rows_per_week must divide {WEEK_US} so weeks hold exactly that many rows")
    fingerprint = f"v{VERSION} rows_per_week={rows_per_week} weeks={weeks} changed_weeks={CHANGED_WEEKS}"
    ensure_database(db)
    with psycopg.connect(pg_url(db), autocommit=True) as conn:
        have = conn.execute("SELECT to_regclass('src.bench_meta')").fetchone()[0]
        if have and not force:
            row = conn.execute("SELECT fingerprint FROM src.bench_meta").fetchone()
            if row and row[0] == fingerprint:
                log(f"source data in {db} is current ({fingerprint})")
                return {"fingerprint": fingerprint, "generated": False, "seconds": 0.0}
        started = time.perf_counter()
        log(f"generating source data in {db}: {fingerprint}")
        conn.execute("DROP SCHEMA IF EXISTS src CASCADE")
        conn.execute("CREATE SCHEMA src")
        step_us = WEEK_US // rows_per_week
        params = {"t0": FIRST_WEEK, "step_us": step_us}
        conn.execute(_DDL.format(table="src.orders"))
        total = rows_per_week * weeks
        chunk = 1_000_000
        for lo in range(1, total + 1, chunk):
            hi = min(total, lo + chunk - 1)
            conn.execute("INSERT INTO src.orders " + _SELECT, {**params, "lo": lo, "hi": hi})
        conn.execute("ALTER TABLE src.orders ADD PRIMARY KEY (order_id)")
        conn.execute("CREATE INDEX orders_updated_at_idx ON src.orders (updated_at)")

        changed = rows_per_week * min(weeks, CHANGED_WEEKS)
        conn.execute(_DDL.format(table="src.orders_v1"))
        conn.execute(
            "INSERT INTO src.orders_v1 SELECT order_id, customer_id, customer_name, sku, "
            "CASE WHEN order_id %% 10 = 0 THEN quantity + 1 ELSE quantity END, unit_price, "
            "CASE WHEN order_id %% 10 = 0 THEN 'changed' ELSE status END, ordered_at, updated_at "
            "FROM src.orders WHERE order_id <= %s",
            (changed,),
        )
        conn.execute("ALTER TABLE src.orders_v1 ADD PRIMARY KEY (order_id)")
        conn.execute("CREATE INDEX orders_v1_updated_at_idx ON src.orders_v1 (updated_at)")

        conn.execute(_DDL.format(table="src.orders_tiny"))
        conn.execute("INSERT INTO src.orders_tiny SELECT * FROM src.orders WHERE order_id <= %s", (TINY_ROWS,))
        conn.execute("ALTER TABLE src.orders_tiny ADD PRIMARY KEY (order_id)")
        conn.execute("CREATE INDEX orders_tiny_updated_at_idx ON src.orders_tiny (updated_at)")

        conn.execute("VACUUM ANALYZE src.orders")
        conn.execute("VACUUM ANALYZE src.orders_v1")
        conn.execute("VACUUM ANALYZE src.orders_tiny")
        conn.execute("CREATE TABLE src.bench_meta (fingerprint text NOT NULL)")
        conn.execute("INSERT INTO src.bench_meta VALUES (%s)", (fingerprint,))
        seconds = time.perf_counter() - started
        log(f"generated {total} rows in {seconds:.1f} s")
        return {"fingerprint": fingerprint, "generated": True, "seconds": round(seconds, 1)}


def small_sizes(scale: int) -> dict[str, int]:
    """SMALL_SOURCES' row counts divided by `scale` (1 for the real shape)."""
    return {name: max(1, rows // scale) for name, _, rows in SMALL_SOURCES}


def generate_small(db: str, sizes: dict[str, int], weeks: int, *, force: bool = False, log=print) -> dict:
    """Create (or reuse) the small-partitions tables in schema `small` of database `db`."""
    fingerprint = f"v{VERSION} small weeks={weeks} " + " ".join(f"{k}={v}" for k, v in sizes.items())
    ensure_database(db)
    with psycopg.connect(pg_url(db), autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('small.bench_meta')").fetchone()[0] and not force:
            row = conn.execute("SELECT fingerprint FROM small.bench_meta").fetchone()
            if row and row[0] == fingerprint:
                log(f"small-partitions data in {db} is current ({fingerprint})")
                return {"fingerprint": fingerprint, "generated": False, "seconds": 0.0}
        started = time.perf_counter()
        log(f"generating small-partitions data in {db}: {fingerprint}")
        conn.execute("DROP SCHEMA IF EXISTS small CASCADE")
        conn.execute("CREATE SCHEMA small")
        for name, mode, _ in SMALL_SOURCES:
            n = sizes[name]
            if mode == "incremental" and WEEK_US % n:
                raise ValueError(f"small.{name}: rows per week must divide {WEEK_US}")
            step_us, total = (WEEK_US // n, n * weeks) if mode == "incremental" else (60_000_000, n)
            table = sql.Identifier("small", name)
            conn.execute(sql.SQL(_DDL).format(table=table))
            conn.execute(sql.SQL("INSERT INTO {} ").format(table) + sql.SQL(_SELECT),
                         {"t0": FIRST_WEEK, "step_us": step_us, "lo": 1, "hi": total})
            conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (order_id)").format(table))
            conn.execute(sql.SQL("CREATE INDEX ON {} (updated_at)").format(table))
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))
        conn.execute("CREATE TABLE small.bench_meta (fingerprint text NOT NULL)")
        conn.execute("INSERT INTO small.bench_meta VALUES (%s)", (fingerprint,))
        seconds = time.perf_counter() - started
        log(f"generated the small-partitions tables in {seconds:.1f} s")
        return {"fingerprint": fingerprint, "generated": True, "seconds": round(seconds, 1)}
