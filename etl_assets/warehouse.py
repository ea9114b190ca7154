"""The warehouse: typed target tables and idempotent, all-or-nothing partition loads.

`BaseWarehouse` is what the assets use. `Warehouse` implements it on PostgreSQL, the default;
`etl_assets.warehouse_clickhouse.ClickHouseWarehouse` on ClickHouse. A pipeline's `warehouse:`
block picks one (`open_warehouse`).

On PostgreSQL each partition loads in one transaction: binary COPY into a temporary staging table,
then one `INSERT … ON CONFLICT DO UPDATE … WHERE (business columns, record_hash) IS DISTINCT
FROM …`. Rows equal to the staged ones are never touched, so a rerun changes nothing, not even
`_loaded_at`; the stored columns themselves are compared, not only their stored hash, so a row
edited in the warehouse is restored.

A column the table has but the load does not (gone from the source) fails the load unless the
source's `schema.on_missing_column` is `null`; then the rows this load writes hold NULL in it.
"""

from __future__ import annotations

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

from etl_assets.secrets import redact, resolve
from etl_assets.sources.base import SourceDataError
from etl_assets.sqlutil import bind_named

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
MissingColumnPolicy = Literal["fail", "null"]


@dataclass
class LoadCounts:
    partition: str
    staged: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    quarantined: int = 0
    # Target columns this load had no values for (gone from the source): NULL in rows it wrote.
    missing_columns: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def quarantine_table(target: str) -> str:
    schema, table = target.split(".")
    name = f"{table}__quarantine"
    if len(name) > 63:
        name = f"{table[:40]}_{hashlib.md5(table.encode()).hexdigest()[:8]}__quarantine"
    return f"{schema}.{name}"


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
    ) -> None:
        """Create `target` (and `<table>__quarantine`) or add the columns it lacks.

        `not_null` names the columns the spec declares `nullable: false`; key columns never
        hold nulls. A column whose type differs from the spec's is a `SourceDataError`.
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
    ) -> LoadCounts:
        """Make `partition` of `target` hold `frame`, all or nothing; a rerun changes nothing.

        Target columns not in `types` fail the load, or with `on_missing_column="null"` are
        NULL in the rows it writes; either way they are named in `LoadCounts.missing_columns`.
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
    ) -> None:
        # `not_null` is not enforced here: normalize already rejects nulls in such columns.
        _check_identifiers(types)
        schema, table = target.split(".")
        if quarantine:
            self._ensure_quarantine(conn, target, types)
        with conn.transaction():
            # Two runs creating the same table at once would race on the catalog.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("ddl", target),))
            _create_schema(conn, schema)
            existing = {
                r[0]: r[1]
                for r in conn.execute(
                    "SELECT column_name, format_type(a.atttypid, a.atttypmod) "
                    "FROM information_schema.columns c "
                    "JOIN pg_attribute a ON a.attrelid = (quote_ident(c.table_schema) || '.' || "
                    "quote_ident(c.table_name))::regclass AND a.attname = c.column_name "
                    "WHERE c.table_schema = %s AND c.table_name = %s",
                    (schema, table),
                )
            }
            if not existing:
                cols = [
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(PG_TYPES[t]))
                    for c, t in types.items()
                ] + [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(d)) for c, d in META_DDL]
                pk = sql.SQL(", ").join(map(sql.Identifier, key))
                body = sql.SQL(", ").join(cols)
                if key:
                    body += sql.SQL(", PRIMARY KEY ({})").format(pk)
                conn.execute(
                    sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(schema, table), body)
                )
                conn.execute(
                    sql.SQL("CREATE INDEX {} ON {} (_partition)").format(
                        sql.Identifier(_index_name(table, "partition_idx")),
                        sql.Identifier(schema, table),
                    )
                )
                return
            for c, t in types.items():
                want = PG_TYPES[t]
                if c not in existing:
                    conn.execute(
                        sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                            sql.Identifier(schema, table), sql.Identifier(c), sql.SQL(want)
                        )
                    )
                elif existing[c] != want:
                    raise SourceDataError(
                        f"schema mismatch in {target}: column {c!r} is {existing[c]} in the "
                        f"warehouse but the spec makes it {want}"
                    )

    def _ensure_quarantine(self, conn: psycopg.Connection, target: str, types: dict[str, str]) -> None:
        """`<table>__quarantine`: rows set aside by quarantine checks, with why and when."""
        schema, table = quarantine_table(target).split(".")
        cols = [
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(PG_TYPES[t])) for c, t in types.items()
        ] + [
            sql.SQL(d)
            for d in (
                "record_hash text", "_check text NOT NULL", "_reason text NOT NULL",
                "_partition text NOT NULL", "_run_id text NOT NULL",
                "_quarantined_at timestamp with time zone NOT NULL DEFAULT now()",
            )
        ]
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("ddl", target),))
            _create_schema(conn, schema)
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                    sql.Identifier(schema, table), sql.SQL(", ").join(cols)
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
    ) -> LoadCounts:
        """Load one partition in one transaction. Concurrent loads of it are serialized.

        With `quarantine`, the partition's rows in `<table>__quarantine` are replaced by it in
        the same transaction, so a rerun never duplicates them.
        """
        schema, table = target.split(".")
        tgt = sql.Identifier(schema, table)
        cols = list(types)
        data_cols = cols + ["record_hash", "_partition"]
        counts = LoadCounts(partition, staged=len(frame))
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s)", (lock_key("load", target, partition),)
            )
            meta = {c for c, _ in META_DDL}
            gone = [c for c in self._columns(conn, schema, table) if c not in types and c not in meta]
            if gone and on_missing_column != "null":
                raise missing_columns_error(target, gone)
            counts.missing_columns = gone
            conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE _stage ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA"
                ).format(sql.SQL(", ").join(map(sql.Identifier, data_cols)), tgt)
            )
            staged = frame[cols + ["record_hash"]].assign(_partition=partition)
            self._copy_in(conn, "_stage", data_cols, staged)
            if quarantine is not None:
                counts.quarantined = self._replace_quarantine(conn, target, cols, partition, run_id, quarantine)
            if key and not delete_missing and self._holds_exactly(conn, tgt, partition, len(frame), key, cols, gone):
                # A rerun over unchanged data: nothing to insert, update or delete.
                counts.unchanged = len(frame)
                conn.execute("DROP TABLE _stage")
                return counts
            conn.execute("ANALYZE _stage")
            if key:
                conn.execute(
                    sql.SQL("ALTER TABLE _stage ADD PRIMARY KEY ({})").format(
                        sql.SQL(", ").join(map(sql.Identifier, key))
                    )
                )
            counts.deleted = self._delete_unstaged(conn, tgt, key, partition, strategy, delete_missing)
            if not key:
                # Without a key a partition can only be replaced whole; gone columns default to NULL.
                cur = conn.execute(
                    sql.SQL("DELETE FROM {} WHERE _partition = %s").format(tgt), (partition,)
                )
                counts.deleted = cur.rowcount
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {tgt} ({cols}, _loaded_at, _run_id) "
                        "SELECT {cols}, now(), %s FROM _stage"
                    ).format(tgt=tgt, cols=sql.SQL(", ").join(map(sql.Identifier, data_cols))),
                    (run_id,),
                )
                counts.inserted = len(frame)
            else:
                counts.inserted, counts.updated = self._upsert(conn, tgt, key, cols, gone, run_id)
                counts.unchanged = counts.staged - counts.inserted - counts.updated
            conn.execute("DROP TABLE _stage")
        return counts

    @staticmethod
    def _delete_unstaged(
        conn: psycopg.Connection, tgt: sql.Composable, key: list[str], partition: str, strategy: str,
        delete_missing: bool,
    ) -> int:
        """Delete the target rows the staged ones replace: the partition's, or with
        `delete_missing` (a full source is the whole truth) every row it no longer has."""
        key_match = _key_match(key)
        deleted = 0
        if strategy == "replace_partition":
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
    def _columns(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
        return [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (schema, table),
            )
        ]

    @staticmethod
    def _upsert(
        conn: psycopg.Connection, tgt: sql.Composable, key: list[str], cols: list[str], gone: list[str],
        run_id: str,
    ) -> tuple[int, int]:
        """Insert new keys, update rows that differ from the staged ones; (inserted, updated).

        A row differs when any business column, record_hash included, does: the stored
        values are compared, so a row edited in the warehouse is written back. Columns gone
        from the source are NULL in every row written.
        """
        data_cols = cols + ["record_hash", "_partition"]
        all_cols = data_cols + gone + ["_loaded_at", "_run_id"]
        compared = cols + ["record_hash"] + gone
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
                    sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in all_cols if c not in key
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

    def _replace_quarantine(
        self, conn: psycopg.Connection, target: str, cols: list[str], partition: str, run_id: str,
        frame: pd.DataFrame,
    ) -> int:
        qt = sql.Identifier(*quarantine_table(target).split("."))
        conn.execute(sql.SQL("DELETE FROM {} WHERE _partition = %s").format(qt), (partition,))
        q_cols = cols + ["record_hash", "_check", "_reason", "_partition", "_run_id"]
        rows = frame.reindex(columns=cols + ["record_hash", "_check", "_reason"]).assign(
            _partition=partition, _run_id=run_id
        )
        self._copy_in(conn, quarantine_table(target), q_cols, rows)
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
        from etl_assets.warehouse_clickhouse import ClickHouseWarehouse

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
