"""PostgreSQL DDL: target tables, their side tables and the scd2 view, and schema drift.

Drift follows the source's `schema` policy (`SchemaPolicySpec`): a new column is added, refused
or left out; a type change fails, or widens the column when that is exact. Each is a
`DriftEvent`.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from etl_assets.sources.base import SourceDataError
from etl_assets.spec import SchemaPolicySpec
from etl_assets.warehouses.base import DriftEvent, TableRequest, current_view, side_table
from etl_assets.warehouses.postgres.configuration import (
    HOLDS,
    META_DDL,
    PG_TYPES,
    WIDER,
    check_identifiers,
    index_name,
)
from etl_assets.warehouses.postgres.scd2 import VERSION_DDL
from etl_assets.warehouses.postgres.sql_client import column_types, create_schema, xact_lock


def ensure_table(conn: psycopg.Connection, req: TableRequest) -> list[DriftEvent]:
    """`TableRequest` on PostgreSQL."""
    # `not_null` is not enforced here: normalize already rejects nulls in such columns.
    target, types, strategy = req.target, req.types, req.strategy
    check_identifiers(types)
    policy = req.policy or SchemaPolicySpec()
    schema, table = target.split(".")
    with conn.transaction():
        # Two runs creating the same table at once would race on the catalog.
        xact_lock(conn, "ddl", target)
        create_schema(conn, schema)
        existing = column_types(conn, schema, table)
        if not existing:
            _create(conn, target, types, req.key, versioned=strategy == "scd2")
            events: list[DriftEvent] = []
        else:
            versioned = "valid_from" in existing
            if versioned != (strategy == "scd2"):
                raise SourceDataError(
                    f"{target} was built for strategy {'scd2' if versioned else 'upsert or delete_insert'} "
                    f"but the source now loads it with {strategy}"
                    + ("" if versioned else "; scd2 needs valid_from, valid_to and is_current: load into a new table")
                )
            events = _evolve(conn, target, types, existing, policy, versioned=versioned)
        loaded = {c: t for c, t in types.items() if c not in {e.column for e in events if e.change == "ignored"}}
        if strategy == "scd2" and (not existing or events):
            _create_current_view(conn, target)
    for wanted, suffix in ((req.quarantine, "quarantine"), (req.failures, "failures")):
        if wanted:
            _ensure_side(conn, target, loaded, suffix)
    return events


def _create(
    conn: psycopg.Connection, target: str, types: dict[str, str], key: list[str], *, versioned: bool
) -> None:
    schema, table = target.split(".")
    extra = META_DDL + (VERSION_DDL if versioned else [])
    cols = [
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(PG_TYPES[t])) for c, t in types.items()
    ] + [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(d)) for c, d in extra]
    body = sql.SQL(", ").join(cols)
    if key:
        # A versioned table holds one row per key and validity start.
        pk = key + (["valid_from"] if versioned else [])
        body += sql.SQL(", PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, pk)))
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(schema, table), body))
    conn.execute(
        sql.SQL("CREATE INDEX {} ON {} (_partition)").format(
            sql.Identifier(index_name(table, "partition_idx")), sql.Identifier(schema, table)
        )
    )


def _evolve(
    conn: psycopg.Connection, target: str, types: dict[str, str], existing: dict[str, str],
    policy: SchemaPolicySpec, *, versioned: bool,
) -> list[DriftEvent]:
    """Bring an existing table's columns in line with the spec's, as `policy` allows."""
    tgt = sql.Identifier(*target.split("."))
    events: list[DriftEvent] = []
    for c, t in types.items():
        want, have = PG_TYPES[t], existing.get(c)
        if have is None:
            if policy.on_new_column == "fail":
                raise SourceDataError(
                    f"{target} has no column {c!r}, which the source now provides ({want}); set "
                    "schema.on_new_column: evolve on the source to add it, or ignore to leave it out"
                )
            if policy.on_new_column == "ignore":
                events.append(DriftEvent(c, "ignored", None, want))
                continue
            conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(tgt, sql.Identifier(c), sql.SQL(want)))
            events.append(DriftEvent(c, "added", None, want))
        elif have != want and (have, want) not in HOLDS:
            wider = _widen(target, c, have, want, policy)
            if versioned:  # a view's column cannot change type under it
                conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(*current_view(target).split("."))))
            conn.execute(
                sql.SQL("ALTER TABLE {t} ALTER COLUMN {c} TYPE {w} USING {c}::{w}").format(
                    t=tgt, c=sql.Identifier(c), w=sql.SQL(wider)
                )
            )
            events.append(DriftEvent(c, "widened", have, wider))
    return events


def _widen(target: str, column: str, have: str, want: str, policy: SchemaPolicySpec) -> str:
    """The type column `column` (now `have`) widens to, to hold `want`; else why it cannot."""
    wider = WIDER.get(have, {}).get(want) or ("text" if want == "text" and have.startswith("character") else None)
    if policy.on_type_change != "widen" or wider is None:
        hint = (
            "set schema.on_type_change: widen on the source to widen it" if wider and policy.on_type_change != "widen"
            else f"{have} cannot hold every {want} value exactly"
        )
        raise SourceDataError(
            f"schema mismatch in {target}: column {column!r} is {have} in the "
            f"warehouse but the spec makes it {want}; {hint}"
        )
    return wider


def _create_current_view(conn: psycopg.Connection, target: str) -> None:
    """`<table>__current`: each key's current version, with the table's columns."""
    view = sql.Identifier(*current_view(target).split("."))
    conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(view))
    conn.execute(
        sql.SQL("CREATE VIEW {} AS SELECT * FROM {} WHERE is_current").format(
            view, sql.Identifier(*target.split("."))
        )
    )


def _ensure_side(conn: psycopg.Connection, target: str, types: dict[str, str], suffix: str) -> None:
    """`<table>__quarantine` (rows set aside) or `__failures` (failing rows that loaded)."""
    schema, table = side_table(target, suffix).split(".")
    stamp = "_quarantined_at" if suffix == "quarantine" else "_failed_at"
    cols = [
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(PG_TYPES[t])) for c, t in types.items()
    ] + [
        sql.SQL(d)
        for d in (
            "record_hash text", "_check text NOT NULL", "_reason text NOT NULL",
            "_partition text NOT NULL", "_run_id text NOT NULL",
        )
    ] + [sql.SQL("{} timestamp with time zone NOT NULL DEFAULT now()").format(sql.Identifier(stamp))]
    with conn.transaction():
        xact_lock(conn, "ddl", target)
        create_schema(conn, schema)
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                sql.Identifier(schema, table), sql.SQL(", ").join(cols)
            )
        )
        for c, t in types.items():  # columns the source gained since
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                    sql.Identifier(schema, table), sql.Identifier(c), sql.SQL(PG_TYPES[t])
                )
            )
