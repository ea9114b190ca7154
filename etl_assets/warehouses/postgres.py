"""The warehouse: typed target tables and idempotent, all-or-nothing partition loads.

`BaseWarehouse` is what the assets use. `Warehouse` implements it on PostgreSQL, the default;
`etl_assets.warehouses.clickhouse.ClickHouseWarehouse` on ClickHouse. A pipeline's `warehouse:`
block picks one (`open_warehouse`).

On PostgreSQL each partition loads in one transaction: binary COPY into a temporary staging table,
then one `INSERT … ON CONFLICT DO UPDATE … WHERE (business columns, record_hash) IS DISTINCT
FROM …`. Rows equal to the staged ones are never touched, so a rerun changes nothing, not even
`_loaded_at`; the stored columns themselves are compared, not only their stored hash, so a row
edited in the warehouse is restored.

Strategies: `upsert`; `delete_insert` (formerly `replace_partition`), which also deletes the
partition's rows the load no longer has; `append`, which inserts keys not loaded yet and never
updates one; `scd2` (etl_assets.warehouses.scd2), which keeps every version of a key.

Schema drift follows the source's `schema` policy (`SchemaPolicySpec`): a new column is added,
refused or left out; a column gone from the source fails the load, loads NULL, or keeps its
stored value in updated rows; a type change fails, or widens the column when that is exact.
Each is a `DriftEvent` in the load's counts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import dagster as dg
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from pgpq import ArrowToPostgresBinaryEncoder
from psycopg import sql

from etl_assets.core.secrets import redact, resolve
from etl_assets.core.sql import bind_named
from etl_assets.sources.base import SourceDataError
from etl_assets.spec import SchemaPolicySpec
from etl_assets.warehouses.scd2 import VERSION_COLUMNS, VERSION_DDL, load_versions

PG_TYPES = {
    "string": "text",
    "integer": "bigint",
    "float": "double precision",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp with time zone",
}
META_DDL = [
    ("record_hash", "text NOT NULL"),
    ("_partition", "text NOT NULL"),
    ("_loaded_at", "timestamp with time zone NOT NULL"),
    ("_run_id", "text NOT NULL"),
]
# PostgreSQL silently truncates longer names (NAMEDATALEN - 1 bytes).
MAX_IDENTIFIER_BYTES = 63
MissingColumnPolicy = Literal["fail", "null", "keep"]
REPLACING = ("delete_insert", "replace_partition")
# Warehouse type -> (spec's type -> the exact wider type), for `schema.on_type_change: widen`.
_WIDER = {
    "smallint": {"bigint": "bigint", "double precision": "numeric"},
    "integer": {"bigint": "bigint", "double precision": "numeric"},
    "bigint": {"double precision": "numeric"},
}
# Already widened: the column holds the spec's values exactly.
_HOLDS = {("numeric", "double precision"), ("numeric", "bigint")}


@dataclass
class DriftEvent:
    """A column that differs between the source and the warehouse table, and what was done."""

    column: str
    change: str  # added | ignored | missing | widened
    before: str | None  # the warehouse type, None for a column it did not have
    after: str | None  # the type afterwards, None for a column not loaded

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self, target: str) -> str:
        what = {
            "added": f"new column {self.column!r} ({self.after}) added",
            "ignored": f"new column {self.column!r} ({self.after}) not loaded",
            "missing": f"column {self.column!r} ({self.before}) gone from the source, {self.after}",
            "widened": f"column {self.column!r} widened from {self.before} to {self.after}",
        }[self.change]
        return f"{target}: {what}"


@dataclass
class LoadCounts:
    partition: str
    staged: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    quarantined: int = 0
    # Rows of failing store_failures checks written to <table>__failures.
    failures_stored: int = 0
    # scd2: versions this load opened and closed (by a newer version or delete_missing).
    versions_opened: int = 0
    versions_closed: int = 0
    # Target columns this load had no values for (gone from the source): NULL in rows it wrote.
    missing_columns: list[str] = field(default_factory=list)
    # Schema drift met by this load (`DriftEvent.as_dict()`).
    drift: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def side_table(target: str, suffix: str) -> str:
    """`<schema>.<table>__<suffix>`, shortened with a hash past PostgreSQL's name limit."""
    schema, table = target.split(".")
    name = f"{table}__{suffix}"
    if len(name) > 63:
        name = f"{table[:40]}_{hashlib.md5(table.encode()).hexdigest()[:8]}__{suffix}"
    return f"{schema}.{name}"


def quarantine_table(target: str) -> str:
    return side_table(target, "quarantine")


def failures_table(target: str) -> str:
    return side_table(target, "failures")


def current_view(target: str) -> str:
    return side_table(target, "current")


def missing_columns_error(target: str, missing: list[str]) -> SourceDataError:
    names = ", ".join(repr(c) for c in missing)
    which = "column" if len(missing) == 1 else "columns"
    return SourceDataError(
        f"{target} has {which} {names}, which the source no longer provides; set "
        "schema.on_missing_column: null on the source to load NULL there, or drop the column"
    )


def _check_identifiers(columns: Collection[str]) -> None:
    for c in columns:
        size = len(c.encode("utf-8"))
        if size > MAX_IDENTIFIER_BYTES:
            raise SourceDataError(
                f"column {c!r} is {size} bytes long; PostgreSQL names hold at most "
                f"{MAX_IDENTIFIER_BYTES}: declare it under columns with a shorter name and from: {c!r}"
            )


def _create_schema(conn: psycopg.Connection, schema: str) -> None:
    """CREATE SCHEMA IF NOT EXISTS, safe when loads of two tables in one new schema run at once.

    IF NOT EXISTS does not stop two concurrent creators from colliding in the catalog.
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("ddl-schema", schema),))
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def lock_key(*parts: str) -> int:
    """A stable 64-bit advisory-lock key (hashtext differs across server versions)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _key_match(key: list[str]) -> sql.Composable:
    return sql.SQL(" AND ").join(sql.SQL("t.{k} = s.{k}").format(k=sql.Identifier(k)) for k in key)


def _index_name(table: str, suffix: str) -> str:
    name = f"{table}_{suffix}"
    if len(name) > 63:
        name = f"{table[:40]}_{hashlib.md5(table.encode()).hexdigest()[:8]}_{suffix}"
    return name


class BaseWarehouse(ABC):
    """What the assets ask of a warehouse. Targets are `schema.table` on every engine.

    `connect()` yields an engine-specific handle that `ensure_table` and `load_partition`
    take; every other method opens its own.
    """

    kind: str

    @abstractmethod
    def connect(self) -> AbstractContextManager[Any]: ...

    @abstractmethod
    def ensure_table(
        self,
        conn: Any,
        target: str,
        types: dict[str, str],
        key: list[str],
        *,
        quarantine: bool = False,
        not_null: Collection[str] = (),
        strategy: str = "upsert",
        failures: bool = False,
        policy: SchemaPolicySpec | None = None,
    ) -> list[DriftEvent]:
        """Create `target` (and `<table>__quarantine`, `__failures`) or bring its columns in line.

        `not_null` names the columns the spec declares `nullable: false`; key columns never
        hold nulls. New columns and changed types follow `policy` (default: new columns are
        added, a changed type is a `SourceDataError`); the events say what changed. An
        `ignored` column is not to be loaded.
        """

    @abstractmethod
    def load_partition(
        self,
        conn: Any,
        *,
        target: str,
        frame: pd.DataFrame,
        types: dict[str, str],
        key: list[str],
        partition: str,
        run_id: str,
        strategy: str,
        quarantine: pd.DataFrame | None = None,
        delete_missing: bool = False,
        on_missing_column: MissingColumnPolicy = "fail",
        failures: pd.DataFrame | None = None,
        window_start: dt.datetime | None = None,
        timestamp_column: str | None = None,
    ) -> LoadCounts:
        """Make `partition` of `target` hold `frame`, all or nothing; a rerun changes nothing.

        Target columns not in `types` fail the load, or with `on_missing_column="null"` are
        NULL in the rows it writes; either way they are named in `LoadCounts.missing_columns`.
        `failures` (rows of failing store_failures checks) replace the partition's rows of
        `<table>__failures`. Under scd2 a version is valid from its `timestamp_column` value,
        else from `window_start`.
        """

    @abstractmethod
    def query(self, text: str, params: dict[str, Any]) -> pd.DataFrame:
        """A spec's SQL with `:name` parameters (KPIs), values bound."""

    @abstractmethod
    def table_exists(self, target: str) -> bool: ...

    @abstractmethod
    def partition_counts(
        self, target: str, partition: str, limit: int, *, inclusive: bool
    ) -> list[tuple[str, int]]:
        """Rows per `_partition` before `partition` (or up to it, `inclusive`), newest first."""

    @abstractmethod
    def missing_values(self, target: str, column: str, values: list[str]) -> set[str]:
        """Which of `values` no row of `target` has in `column` (compared as text)."""

    @abstractmethod
    def high_water_mark(self, target: str, column: str) -> Any:
        """The newest `column` value loaded into `target`, or None before the first load."""

    @abstractmethod
    def count(self, target: str, partition: str | None = None) -> int: ...

    @abstractmethod
    def column_type(self, type_: str) -> str:
        """The engine's name for a spec column type, as shown in the column schema."""


class Warehouse(BaseWarehouse):
    """The PostgreSQL warehouse."""

    kind = "postgres"

    def __init__(self, url: str):
        self.url = url

    def __repr__(self) -> str:
        return f"Warehouse({redact(self.url)!r})"

    def column_type(self, type_: str) -> str:
        return PG_TYPES[type_]

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.url, options="-c TimeZone=UTC", connect_timeout=10) as conn:
            yield conn

    # --- tables -----------------------------------------------------------------------------

    def ensure_table(
        self,
        conn: psycopg.Connection,
        target: str,
        types: dict[str, str],
        key: list[str],
        *,
        quarantine: bool = False,
        not_null: Collection[str] = (),
        strategy: str = "upsert",
        failures: bool = False,
        policy: SchemaPolicySpec | None = None,
    ) -> list[DriftEvent]:
        # `not_null` is not enforced here: normalize already rejects nulls in such columns.
        _check_identifiers(types)
        policy = policy or SchemaPolicySpec()
        schema, table = target.split(".")
        with conn.transaction():
            # Two runs creating the same table at once would race on the catalog.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("ddl", target),))
            _create_schema(conn, schema)
            existing = self._column_types(conn, schema, table)
            if not existing:
                self._create(conn, target, types, key, versioned=strategy == "scd2")
                events: list[DriftEvent] = []
            else:
                versioned = "valid_from" in existing
                if versioned != (strategy == "scd2"):
                    raise SourceDataError(
                        f"{target} was built for strategy {'scd2' if versioned else 'upsert or delete_insert'} "
                        f"but the source now loads it with {strategy}"
                        + ("" if versioned else "; scd2 needs valid_from, valid_to and is_current: load into a new table")
                    )
                events = self._evolve(conn, target, types, existing, policy, versioned=versioned)
            loaded = {c: t for c, t in types.items() if c not in {e.column for e in events if e.change == "ignored"}}
            if strategy == "scd2" and (not existing or events):
                self._create_current_view(conn, target)
        for wanted, suffix in ((quarantine, "quarantine"), (failures, "failures")):
            if wanted:
                self._ensure_side(conn, target, loaded, suffix)
        return events

    def _create(
        self, conn: psycopg.Connection, target: str, types: dict[str, str], key: list[str], *, versioned: bool
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
                sql.Identifier(_index_name(table, "partition_idx")), sql.Identifier(schema, table)
            )
        )

    def _evolve(
        self, conn: psycopg.Connection, target: str, types: dict[str, str], existing: dict[str, str],
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
            elif have != want and (have, want) not in _HOLDS:
                wider = _WIDER.get(have, {}).get(want) or ("text" if want == "text" and have.startswith("character") else None)
                if policy.on_type_change != "widen" or wider is None:
                    hint = (
                        "set schema.on_type_change: widen on the source to widen it" if wider and policy.on_type_change != "widen"
                        else f"{have} cannot hold every {want} value exactly"
                    )
                    raise SourceDataError(
                        f"schema mismatch in {target}: column {c!r} is {have} in the "
                        f"warehouse but the spec makes it {want}; {hint}"
                    )
                if versioned:  # a view's column cannot change type under it
                    conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(*current_view(target).split("."))))
                conn.execute(
                    sql.SQL("ALTER TABLE {t} ALTER COLUMN {c} TYPE {w} USING {c}::{w}").format(
                        t=tgt, c=sql.Identifier(c), w=sql.SQL(wider)
                    )
                )
                events.append(DriftEvent(c, "widened", have, wider))
        return events

    @staticmethod
    def _create_current_view(conn: psycopg.Connection, target: str) -> None:
        """`<table>__current`: each key's current version, with the table's columns."""
        view = sql.Identifier(*current_view(target).split("."))
        conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(view))
        conn.execute(
            sql.SQL("CREATE VIEW {} AS SELECT * FROM {} WHERE is_current").format(
                view, sql.Identifier(*target.split("."))
            )
        )

    @staticmethod
    def _column_types(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str]:
        return {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) "
                "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                (schema, table),
            )
        }

    def _ensure_side(self, conn: psycopg.Connection, target: str, types: dict[str, str], suffix: str) -> None:
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
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("ddl", target),))
            _create_schema(conn, schema)
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

    # --- loads ------------------------------------------------------------------------------

    def load_partition(
        self,
        conn: psycopg.Connection,
        *,
        target: str,
        frame: pd.DataFrame,
        types: dict[str, str],
        key: list[str],
        partition: str,
        run_id: str,
        strategy: str,
        quarantine: pd.DataFrame | None = None,
        delete_missing: bool = False,
        on_missing_column: MissingColumnPolicy = "fail",
        failures: pd.DataFrame | None = None,
        window_start: dt.datetime | None = None,
        timestamp_column: str | None = None,
    ) -> LoadCounts:
        """Load one partition in one transaction. Concurrent loads of it are serialized.

        With `quarantine` (or `failures`), the partition's rows in `<table>__quarantine` (or
        `__failures`) are replaced by it in the same transaction, so a rerun never duplicates them.
        """
        schema, table = target.split(".")
        tgt = sql.Identifier(schema, table)
        cols = list(types)
        versioned = strategy == "scd2"
        counts = LoadCounts(partition, staged=len(frame))
        with conn.transaction():
            # The versions of a key span partitions, so scd2 loads of a table take turns.
            lock = ("load", target) if versioned else ("load", target, partition)
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(*lock),))
            meta = {c for c, _ in META_DDL} | set(VERSION_COLUMNS)
            held = self._column_types(conn, schema, table)
            gone = [c for c in held if c not in types and c not in meta]
            if gone and on_missing_column == "fail":
                raise missing_columns_error(target, gone)
            counts.missing_columns = gone
            fate = "kept in updated rows" if on_missing_column == "keep" else "NULL in the rows written"
            counts.drift = [DriftEvent(c, "missing", held[c], fate).as_dict() for c in gone]
            # Written NULL where the policy says so; under keep, left as stored when updating.
            nulled = [] if on_missing_column == "keep" and not versioned else gone
            valid_from = _valid_from(frame, timestamp_column, window_start) if versioned else None
            self._stage(conn, types, frame, partition, valid_from)
            if quarantine is not None:
                counts.quarantined = self._replace_side(conn, target, "quarantine", cols, partition, run_id, quarantine)
            if failures is not None:
                counts.failures_stored = self._replace_side(conn, target, "failures", cols, partition, run_id, failures)
            if versioned:
                self._index_stage(conn, key)
                opened, counts.updated, closed, counts.unchanged = load_versions(
                    conn, tgt, key=key, cols=cols, gone=gone, run_id=run_id,
                    window_start=window_start or dt.datetime.now(dt.UTC), delete_missing=delete_missing,
                )
                counts.inserted = counts.versions_opened = opened
                counts.versions_closed = closed
            elif not key:
                self._replace_set(conn, tgt, cols, gone, partition, run_id, counts)
            elif not delete_missing and self._holds_exactly(conn, tgt, partition, len(frame), key, cols, nulled):
                counts.unchanged = len(frame)  # a rerun over unchanged data: nothing to write
            elif strategy == "append":
                self._index_stage(conn, key)
                counts.inserted = self._append(conn, tgt, key, cols, gone, run_id)
                counts.unchanged = counts.staged - counts.inserted
            else:
                self._index_stage(conn, key)
                counts.deleted = self._delete_unstaged(conn, tgt, key, partition, strategy, delete_missing)
                counts.inserted, counts.updated = self._upsert(conn, tgt, key, cols, gone, nulled, run_id)
                counts.unchanged = counts.staged - counts.inserted - counts.updated
            conn.execute("DROP TABLE _stage")
        return counts

    def _stage(
        self, conn: psycopg.Connection, types: dict[str, str], frame: pd.DataFrame, partition: str,
        valid_from: pd.Series | None,
    ) -> None:
        """COPY the frame into `_stage`, typed as the spec says: a widened target column then
        takes the staged values by assignment. scd2 stages each version's `valid_from`."""
        cols = list(types)
        extra = sql.SQL(", record_hash text, _partition text")
        if valid_from is not None:
            extra += sql.SQL(", valid_from timestamp with time zone")
        conn.execute(
            sql.SQL("CREATE TEMP TABLE _stage ({}) ON COMMIT DROP").format(
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(PG_TYPES[t])) for c, t in types.items()
                ) + extra
            )
        )
        staged = frame[cols + ["record_hash"]].assign(_partition=partition)
        if valid_from is not None:
            staged["valid_from"] = valid_from
        self._copy_in(conn, "_stage", list(staged.columns), staged)

    @staticmethod
    def _index_stage(conn: psycopg.Connection, key: list[str]) -> None:
        conn.execute("ANALYZE _stage")
        conn.execute(
            sql.SQL("ALTER TABLE _stage ADD PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, key)))
        )

    def _replace_set(
        self, conn: psycopg.Connection, tgt: sql.Composable, cols: list[str], gone: list[str], partition: str,
        run_id: str, counts: LoadCounts,
    ) -> None:
        """Without a key a partition is a multiset of rows: replaced whole unless it holds the staged one."""
        compared = sql.SQL(", ").join(map(sql.Identifier, cols + ["record_hash"]))
        nulls = sql.SQL(" AND ").join([sql.SQL("{} IS NULL").format(sql.Identifier(c)) for c in gone] or [sql.SQL("true")])
        differ = conn.execute(
            sql.SQL(
                "SELECT EXISTS (SELECT {c} FROM {tgt} WHERE _partition = %(p)s EXCEPT ALL SELECT {c} FROM _stage)"
                " OR EXISTS (SELECT {c} FROM _stage EXCEPT ALL SELECT {c} FROM {tgt} WHERE _partition = %(p)s)"
                " OR EXISTS (SELECT 1 FROM {tgt} WHERE _partition = %(p)s AND NOT ({nulls}))"
            ).format(c=compared, tgt=tgt, nulls=nulls),
            {"p": partition},
        ).fetchone()[0]
        if not differ:
            counts.unchanged = counts.staged
            return
        counts.deleted = conn.execute(
            sql.SQL("DELETE FROM {} WHERE _partition = %s").format(tgt), (partition,)
        ).rowcount
        data_cols = cols + ["record_hash", "_partition"]
        conn.execute(
            sql.SQL(
                "INSERT INTO {tgt} ({cols}, _loaded_at, _run_id) SELECT {cols}, now(), %s FROM _stage"
            ).format(tgt=tgt, cols=sql.SQL(", ").join(map(sql.Identifier, data_cols))),
            (run_id,),
        )
        counts.inserted = counts.staged

    @staticmethod
    def _append(
        conn: psycopg.Connection, tgt: sql.Composable, key: list[str], cols: list[str], gone: list[str], run_id: str
    ) -> int:
        """Insert the staged rows whose key is not loaded yet; a loaded event is never rewritten."""
        data_cols = cols + ["record_hash", "_partition"]
        return conn.execute(
            sql.SQL(
                "INSERT INTO {tgt} ({all_cols}) SELECT {s_cols}, now(), %s FROM _stage s "
                "ON CONFLICT ({key}) DO NOTHING"
            ).format(
                tgt=tgt,
                all_cols=sql.SQL(", ").join(map(sql.Identifier, data_cols + gone + ["_loaded_at", "_run_id"])),
                s_cols=sql.SQL(", ").join([sql.Identifier("s", c) for c in data_cols] + [sql.NULL for _ in gone]),
                key=sql.SQL(", ").join(map(sql.Identifier, key)),
            ),
            (run_id,),
        ).rowcount

    @staticmethod
    def _delete_unstaged(
        conn: psycopg.Connection, tgt: sql.Composable, key: list[str], partition: str, strategy: str,
        delete_missing: bool,
    ) -> int:
        """Delete the target rows the staged ones replace: the partition's, or with
        `delete_missing` (a full source is the whole truth) every row it no longer has."""
        key_match = _key_match(key)
        deleted = 0
        if strategy in REPLACING:
            cur = conn.execute(
                sql.SQL(
                    "DELETE FROM {tgt} AS t WHERE t._partition = %s "
                    "AND NOT EXISTS (SELECT 1 FROM _stage s WHERE {match})"
                ).format(tgt=tgt, match=key_match if key else sql.SQL("false")),
                (partition,),
            )
            deleted = cur.rowcount
        if delete_missing and key:
            cur = conn.execute(
                sql.SQL("DELETE FROM {tgt} AS t WHERE NOT EXISTS (SELECT 1 FROM _stage s WHERE {match})").format(
                    tgt=tgt, match=key_match
                )
            )
            deleted += cur.rowcount
        return deleted

    @staticmethod
    def _upsert(
        conn: psycopg.Connection, tgt: sql.Composable, key: list[str], cols: list[str], gone: list[str],
        nulled: list[str], run_id: str,
    ) -> tuple[int, int]:
        """Insert new keys, update rows that differ from the staged ones; (inserted, updated).

        A row differs when any business column, record_hash included, does: the stored
        values are compared, so a row edited in the warehouse is written back. Columns gone
        from the source are NULL in inserted rows, and in updated ones when `nulled`.
        """
        data_cols = cols + ["record_hash", "_partition"]
        all_cols = data_cols + gone + ["_loaded_at", "_run_id"]
        compared = cols + ["record_hash"] + nulled
        row = conn.execute(
            sql.SQL(
                "WITH up AS ("
                " INSERT INTO {tgt} AS t ({all_cols})"
                " SELECT {s_cols}, now(), %(run_id)s FROM _stage s"
                # Unchanged rows conflict and fail the WHERE: neither written nor counted.
                # (A NOT EXISTS pre-filter measured slower in every benchmark scenario.)
                " ON CONFLICT ({key}) DO UPDATE SET {assign}"
                " WHERE ({t_row}) IS DISTINCT FROM ({x_row})"
                " RETURNING (xmax = 0) AS inserted)"
                " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)"
                " FROM up"
            ).format(
                tgt=tgt,
                all_cols=sql.SQL(", ").join(map(sql.Identifier, all_cols)),
                s_cols=sql.SQL(", ").join(
                    [sql.Identifier("s", c) for c in data_cols] + [sql.NULL for _ in gone]
                ),
                key=sql.SQL(", ").join(map(sql.Identifier, key)),
                assign=sql.SQL(", ").join(
                    sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
                    for c in all_cols if c not in key and (c not in gone or c in nulled)
                ),
                t_row=sql.SQL(", ").join(sql.Identifier("t", c) for c in compared),
                x_row=sql.SQL(", ").join(sql.Identifier("excluded", c) for c in compared),
            ),
            {"run_id": run_id},
        ).fetchone()
        return int(row[0]), int(row[1])

    @staticmethod
    def _holds_exactly(
        conn: psycopg.Connection, tgt: sql.Composable, partition: str, n: int, key: list[str],
        cols: list[str], gone: list[str],
    ) -> bool:
        """Whether the partition's rows are exactly the staged ones, stored values compared.

        Then the upsert would change nothing, and building the staging key and running it are
        skipped. Comparing the stored columns, not only the stored record_hash, is what finds a
        row edited in the warehouse; one hash join costs a fraction of the upsert's lookups.
        """
        same = sql.SQL(" AND ").join(
            [sql.SQL("t.{c} IS NOT DISTINCT FROM s.{c}").format(c=sql.Identifier(c))
             for c in cols + ["record_hash"] if c not in key]
            + [sql.SQL("t.{} IS NULL").format(sql.Identifier(c)) for c in gone]
        ) or sql.SQL("true")
        held, matching = conn.execute(
            sql.SQL(
                "SELECT (SELECT count(*) FROM {tgt} WHERE _partition = %(p)s),"
                " (SELECT count(*) FROM _stage s JOIN {tgt} t ON {match}"
                " WHERE t._partition = %(p)s AND {same})"
            ).format(tgt=tgt, match=_key_match(key), same=same),
            {"p": partition},
        ).fetchone()
        return held == n and matching == n

    def _replace_side(
        self, conn: psycopg.Connection, target: str, suffix: str, cols: list[str], partition: str, run_id: str,
        frame: pd.DataFrame,
    ) -> int:
        """Replace the partition's rows of `<table>__quarantine` or `__failures` by `frame`."""
        name = side_table(target, suffix)
        conn.execute(sql.SQL("DELETE FROM {} WHERE _partition = %s").format(sql.Identifier(*name.split("."))), (partition,))
        q_cols = cols + ["record_hash", "_check", "_reason", "_partition", "_run_id"]
        rows = frame.reindex(columns=cols + ["record_hash", "_check", "_reason"]).assign(
            _partition=partition, _run_id=run_id
        )
        self._copy_in(conn, name, q_cols, rows)
        return len(frame)

    @staticmethod
    def _copy_in(conn: psycopg.Connection, table: str, cols: list[str], frame: pd.DataFrame) -> None:
        """COPY a frame in binary form, straight from Arrow; CSV for a type the encoder lacks."""
        if not len(frame):
            return
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        target = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(*table.split(".")), sql.SQL(", ").join(map(sql.Identifier, cols))
        )
        try:
            encoder = ArrowToPostgresBinaryEncoder(arrow.schema)
        except ValueError:  # a type it has no encoder for, e.g. an all-empty column Arrow types as null
            encoder = None
        with conn.cursor().copy(target + sql.SQL(" WITH (FORMAT {})").format(sql.SQL("binary" if encoder else "csv"))) as copy:
            if encoder is not None:
                copy.write(encoder.write_header())
                for batch in arrow.to_batches(max_chunksize=65_536):
                    copy.write(encoder.write_batch(batch))
                copy.write(encoder.finish())
                return
            buf = io.BytesIO()
            pacsv.write_csv(arrow, buf, pacsv.WriteOptions(include_header=False))
            view = buf.getbuffer()
            step = 1 << 20
            for i in range(0, len(view), step):
                copy.write(view[i : i + step])

    # --- queries ----------------------------------------------------------------------------

    def query(self, text: str, params: dict[str, Any]) -> pd.DataFrame:
        """A spec's SQL with `:name` parameters (KPIs), values bound."""
        stmt, bound = bind_named(text, params)
        return self.run(stmt, bound)

    def run(self, stmt: sql.Composable, params: dict[str, Any] | None = None) -> pd.DataFrame:
        with self.connect() as conn:
            cur = conn.execute(stmt, params)
            names = [d.name for d in cur.description or []]
            return pd.DataFrame(cur.fetchall(), columns=names)

    def table_exists(self, target: str) -> bool:
        found = self.run(sql.SQL("SELECT to_regclass(%(t)s) IS NOT NULL AS ok"), {"t": target})
        return bool(found.iloc[0, 0])

    def partition_counts(
        self, target: str, partition: str, limit: int, *, inclusive: bool
    ) -> list[tuple[str, int]]:
        frame = self.run(
            sql.SQL(
                "SELECT _partition, count(*) AS n FROM {tbl} WHERE _partition {op} %(k)s "
                "GROUP BY _partition ORDER BY _partition DESC LIMIT %(lim)s"
            ).format(tbl=sql.Identifier(*target.split(".")), op=sql.SQL("<=" if inclusive else "<")),
            {"k": partition, "lim": limit},
        )
        return [(str(p), int(n)) for p, n in frame.itertuples(index=False)]

    def missing_values(self, target: str, column: str, values: list[str]) -> set[str]:
        found = self.run(
            sql.SQL(
                "SELECT DISTINCT u.v FROM unnest(%(vals)s::text[]) AS u(v) "
                "WHERE NOT EXISTS (SELECT 1 FROM {tbl} t WHERE t.{col}::text = u.v)"
            ).format(tbl=sql.Identifier(*target.split(".")), col=sql.Identifier(column)),
            {"vals": values},
        )
        return set(found.iloc[:, 0].astype(str)) if len(found) else set()

    def high_water_mark(self, target: str, column: str) -> Any:
        """The newest `column` value loaded into `target`, or None before the first load."""
        with self.connect() as conn:
            if conn.execute("SELECT to_regclass(%s)", (target,)).fetchone()[0] is None:
                return None
            stmt = sql.SQL("SELECT max({}) FROM {}").format(
                sql.Identifier(column), sql.Identifier(*target.split("."))
            )
            return conn.execute(stmt).fetchone()[0]

    def count(self, target: str, partition: str | None = None) -> int:
        with self.connect() as conn:
            stmt = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*target.split(".")))
            if partition is None:
                return int(conn.execute(stmt).fetchone()[0])
            stmt += sql.SQL(" WHERE _partition = %s")
            return int(conn.execute(stmt, (partition,)).fetchone()[0])


PostgresWarehouse = Warehouse


def _valid_from(frame: pd.DataFrame, column: str | None, window_start: dt.datetime | None) -> pd.Series:
    """When each scd2 version begins: the row's timestamp, else (or where empty) the window start."""
    start = pd.Timestamp(window_start or dt.datetime.now(dt.UTC))
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    if column is None or column not in frame.columns:
        return pd.Series([start] * len(frame), index=frame.index, dtype="datetime64[us, UTC]")
    values = pd.to_datetime(frame[column], utc=True)
    return values.fillna(start).astype("datetime64[us, UTC]")


def open_warehouse(spec: Any, default_url: str) -> BaseWarehouse:
    """The warehouse a pipeline's `warehouse:` block (a `WarehouseSpec` or None) selects.

    Without one, or with `kind: postgres` and no URL, it is the PostgreSQL warehouse at
    `default_url`. `${ENV}` references in the URL are resolved here, at run time.
    """
    kind = getattr(spec, "kind", None) or "postgres"
    url = getattr(spec, "url", None)
    resolved = resolve(url, where="warehouse.url") if url else None
    if kind == "postgres":
        return Warehouse(resolved or default_url)
    if kind == "clickhouse":
        from etl_assets.warehouses.clickhouse import ClickHouseWarehouse

        if not resolved:
            raise SourceDataError("warehouse.url: a ClickHouse warehouse needs a url")
        # Run history stays in PostgreSQL; its database also serializes loads of a table.
        return ClickHouseWarehouse(resolved, lock_url=default_url)
    raise SourceDataError(f"warehouse.kind: unknown warehouse kind {kind!r}")


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL warehouse. The URL comes from ETL_WAREHOUSE_URL when a run launches.

    It also holds run history (`etl_meta`), whichever warehouse a pipeline loads into.
    """

    url: str

    def get(self) -> Warehouse:
        return Warehouse(self.url)

    def for_pipeline(self, spec: Any) -> BaseWarehouse:
        """The warehouse `spec` loads into: its `warehouse:` block, else this one."""
        return open_warehouse(getattr(spec, "warehouse", None), self.url)
