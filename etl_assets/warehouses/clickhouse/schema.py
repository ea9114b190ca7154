"""ClickHouse DDL: `ReplacingMergeTree(_version)` targets, quarantine tables, new columns.

Tables are ordered by the primary key and partitioned by `_partition`, with typed columns
(`Nullable` where the spec allows nulls) plus `record_hash`, `_partition`, `_loaded_at`,
`_run_id` and `_version`. Widening a type is PostgreSQL-only: a changed type fails.
"""

from __future__ import annotations

from collections.abc import Collection

from etl_assets.sources.base import SourceDataError
from etl_assets.spec import SchemaPolicySpec
from etl_assets.warehouses.base import REPLACING, DriftEvent, TableRequest, quarantine_table
from etl_assets.warehouses.clickhouse.configuration import CH_TYPES, META_DDL, QUARANTINE_META_DDL
from etl_assets.warehouses.clickhouse.sql_client import Connection, ident, key_expr, qualified


def ensure_table(conn: Connection, req: TableRequest) -> list[DriftEvent]:
    """`TableRequest` on ClickHouse."""
    target, types, key, strategy = req.target, req.types, req.key, req.strategy
    # append, scd2, store_failures and widening are PostgreSQL-only: the spec refuses them.
    if strategy not in ("upsert", *REPLACING) or req.failures:
        raise SourceDataError(f"{target}: {'store_failures' if req.failures else strategy} is not supported on ClickHouse")
    policy = req.policy or SchemaPolicySpec()
    events: list[DriftEvent] = []
    db, _ = target.split(".")
    conn.command(f"CREATE DATABASE IF NOT EXISTS {ident(db)}")
    info = conn.table_info(target)
    if info is None:
        _create(conn, target, types, key, req.not_null)
    else:
        engine, sorting = info
        have = _sorting_columns(sorting)
        if key and (have != list(key) or "ReplacingMergeTree" not in engine):
            raise SourceDataError(
                f"schema mismatch in {target}: the table is {engine} ordered by "
                f"({', '.join(have)}) but the spec's primary key is ({', '.join(key)})"
            )
        events = _add_columns(conn, target, types, policy)
    ignored = {e.column for e in events if e.change == "ignored"}
    if req.quarantine:
        _ensure_quarantine(conn, target, {c: t for c, t in types.items() if c not in ignored})
    return events


def _create(
    conn: Connection, target: str, types: dict[str, str], key: list[str], not_null: Collection[str]
) -> None:
    cols = [
        f"{ident(c)} {_ddl_type(t, nullable=c not in key and c not in not_null)}"
        for c, t in types.items()
    ] + [f"{ident(c)} {d}" for c, d in META_DDL]
    if key:
        engine = f"ReplacingMergeTree(_version) PARTITION BY _partition ORDER BY {key_expr(key)}"
    else:
        # Without a key a partition is only ever replaced whole; nothing to collapse.
        engine = "MergeTree PARTITION BY _partition ORDER BY tuple()"
    conn.command(
        f"CREATE TABLE IF NOT EXISTS {qualified(target)} ({', '.join(cols)}) ENGINE = {engine}"
    )


def _ensure_quarantine(conn: Connection, target: str, types: dict[str, str]) -> None:
    qt = quarantine_table(target)
    cols = [f"{ident(c)} {_ddl_type(t, nullable=True)}" for c, t in types.items()] + [
        f"{ident(c)} {d}" for c, d in QUARANTINE_META_DDL
    ]
    conn.command(
        f"CREATE TABLE IF NOT EXISTS {qualified(qt)} ({', '.join(cols)}) "
        "ENGINE = MergeTree PARTITION BY _partition ORDER BY tuple()"
    )
    _add_columns(conn, qt, types)


def _ddl_type(type_: str, *, nullable: bool) -> str:
    return f"Nullable({CH_TYPES[type_]})" if nullable else CH_TYPES[type_]


def _add_columns(
    conn: Connection, target: str, types: dict[str, str], policy: SchemaPolicySpec | None = None
) -> list[DriftEvent]:
    existing = conn.columns(target)
    on_new = policy.on_new_column if policy else "evolve"
    events: list[DriftEvent] = []
    for c, t in types.items():
        want = CH_TYPES[t]
        if c not in existing:
            if on_new == "fail":
                raise SourceDataError(
                    f"{target} has no column {c!r}, which the source now provides ({want}); set "
                    "schema.on_new_column: evolve on the source to add it, or ignore to leave it out"
                )
            if on_new == "ignore":
                events.append(DriftEvent(c, "ignored", None, want))
                continue
            # Rows loaded before the column existed have no value for it.
            conn.command(
                f"ALTER TABLE {qualified(target)} ADD COLUMN IF NOT EXISTS {ident(c)} Nullable({want})"
            )
            events.append(DriftEvent(c, "added", None, f"Nullable({want})"))
        elif _base_type(existing[c]) != want:
            raise SourceDataError(
                f"schema mismatch in {target}: column {c!r} is {existing[c]} in the "
                f"warehouse but the spec makes it {want}"
            )
    return events


def _sorting_columns(sorting_key: str) -> list[str]:
    """`system.tables.sorting_key` ("a", "(a)", "a, b") as column names."""
    text = sorting_key.strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    return [c.strip().strip("`") for c in text.split(",") if c.strip()]


def _base_type(type_: str) -> str:
    for wrapper in ("Nullable(", "LowCardinality("):
        if type_.startswith(wrapper) and type_.endswith(")"):
            return _base_type(type_[len(wrapper):-1])
    return type_
