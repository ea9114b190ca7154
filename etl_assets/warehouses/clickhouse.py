"""The ClickHouse warehouse: the same idempotent, all-or-nothing partition loads as PostgreSQL.

Tables are `ReplacingMergeTree(_version)` ordered by the primary key and partitioned by
`_partition`, with typed columns (`Nullable` where the spec allows nulls) plus `record_hash`,
`_partition`, `_loaded_at`, `_run_id` and `_version`.

A partition load stages the rows, compares their `record_hash` with the rows the table holds
for the same keys, builds the partition's complete new content in a staging table and swaps it
in with `ALTER TABLE … REPLACE PARTITION`: readers see the old partition or the new one, never
half of it. Unchanged rows are copied over as they were (`_loaded_at`, `_run_id`, `_version`),
so a rerun that changes nothing reports 0 inserted, 0 updated and leaves the same rows.

As with the PostgreSQL upsert, a key lives in exactly one partition: a changed row moves to the
partition being loaded and its old copy is removed from the partition that held it (that
partition is swapped too). Until then, and after a crash in between, `FINAL` already returns
only the newer copy, and a rerun finishes the move. KPI queries run with `final = 1`.

One client, clickhouse-connect, talks to a server (`clickhouse://user:${PW}@host:8123/db`) and
to the embedded engine (`chdb:///path/to/dir`, through clickhouse-connect's chDB backend), so
local runs and tests execute exactly the SQL a server gets. chDB opens a data directory in one
process at a time: a file lock in the directory makes other processes wait their turn.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd
import pyarrow as pa

from etl_assets.core.secrets import redact
from etl_assets.core.sql import _TOKEN, UnknownParameter
from etl_assets.sources.base import SourceDataError, TransientSourceError
from etl_assets.spec import SchemaPolicySpec
from etl_assets.warehouses.postgres import (
    REPLACING,
    BaseWarehouse,
    DriftEvent,
    LoadCounts,
    MissingColumnPolicy,
    lock_key,
    missing_columns_error,
    quarantine_table,
)

CH_TYPES = {
    "string": "String",
    "integer": "Int64",
    "float": "Float64",
    "boolean": "Bool",
    "date": "Date32",
    "timestamp": "DateTime64(6, 'UTC')",
}
ARROW_TYPES = {
    "string": pa.string(),
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
META_DDL = [
    ("record_hash", "String"),
    ("_partition", "String"),
    ("_loaded_at", "DateTime64(6, 'UTC')"),
    ("_run_id", "String"),
    ("_version", "UInt64"),
]
QUARANTINE_META_DDL = [
    ("record_hash", "Nullable(String)"),
    ("_check", "String"),
    ("_reason", "String"),
    ("_partition", "String"),
    ("_run_id", "String"),
    ("_quarantined_at", "DateTime64(6, 'UTC') DEFAULT now64(6)"),
]
STAGE_PREFIX = "_etl_stage_"
# Server error codes worth a retry: timeouts, overload, network, replicas and keeper trouble.
_TRANSIENT_CODES = {
    3, 32, 159, 164, 202, 203, 209, 210, 242, 252, 285, 319, 394, 425, 473, 999,
}
# Relationship checks send the values they look up in chunks, to keep each request small.
_VALUES_PER_QUERY = 5000
_LOCK_WAIT_SECONDS = 3600.0


# --- connection settings --------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A parsed warehouse URL: an embedded chDB directory or a server."""

    path: str | None = None  # chdb
    host: str = "localhost"
    port: int = 8123
    username: str = "default"
    password: str = field(default="", repr=False)
    database: str = "default"
    secure: bool = False

    @property
    def embedded(self) -> bool:
        return self.path is not None

    @property
    def identity(self) -> str:
        """The URL without its password: for locks, logs and errors."""
        if self.embedded:
            return f"chdb://{self.path}"
        scheme = "clickhouses" if self.secure else "clickhouse"
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.database}"


def parse_url(url: str) -> Endpoint:
    """`chdb:///abs/dir`, `chdb://rel/dir`, or `clickhouse[s]://user:pw@host:port/db[?secure=true]`."""
    if url.startswith("chdb://"):
        path = url[len("chdb://"):].split("?", 1)[0]
        if not path:
            raise SourceDataError("warehouse.url: chdb:// needs a directory, e.g. chdb:///var/lib/etl/ch")
        return Endpoint(path=os.path.abspath(os.path.expanduser(path)))
    parts = urlsplit(url)
    if parts.scheme not in ("clickhouse", "clickhouses"):
        raise SourceDataError(
            "warehouse.url: a ClickHouse URL starts with clickhouse://, clickhouses:// or chdb://"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    secure = parts.scheme == "clickhouses" or query.get("secure", "").lower() in ("1", "true", "yes")
    return Endpoint(
        host=parts.hostname or "localhost",
        port=parts.port or (8443 if secure else 8123),
        username=unquote(parts.username) if parts.username else "default",
        password=unquote(parts.password) if parts.password else "",
        database=unquote(parts.path.lstrip("/")) or "default",
        secure=secure,
    )


# --- SQL text -------------------------------------------------------------------------------


def ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def qualified(target: str) -> str:
    return ".".join(ident(p) for p in target.split("."))


def literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _names(columns: list[str]) -> str:
    return ", ".join(map(ident, columns))


def _keys(key: list[str]) -> str:
    """The key as one expression: `k`, or the tuple `(a, b)`."""
    return ident(key[0]) if len(key) == 1 else f"({_names(key)})"


@dataclass
class _Load:
    """The tables and values of one partition load."""

    target: str
    key: list[str]
    cols: list[str]
    s_in: str  # the staged rows
    s_out: str  # the partition's new content
    params: dict[str, Any]  # p, run, ver, now
    gone: list[str] = field(default_factory=list)  # target columns the source no longer has

    @property
    def tgt(self) -> str:
        return qualified(self.target)

    @property
    def keys(self) -> str:
        return _keys(self.key)

    def insert_staged(self, where: str | None = None) -> str:
        """Staged rows into the new content, stamped with this load."""
        data = _names(self.cols + ["record_hash"])
        return (
            f"INSERT INTO {self.s_out} ({data}, `_partition`, `_loaded_at`, `_run_id`, `_version`) "
            f"SELECT {data}, {{p:String}}, {{now:DateTime64(6, 'UTC')}}, {{run:String}}, "
            f"{{ver:UInt64}} FROM {self.s_in}" + (f" WHERE {where}" if where else "")
        )


def _param(value: Any) -> tuple[str, Any]:
    """A Python value as (ClickHouse type, value clickhouse-connect binds server-side)."""
    if value is None:
        return "Nullable(String)", None
    if isinstance(value, bool):
        return "Bool", "true" if value else "false"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return "DateTime64(6, 'UTC')", value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return "Date32", value.isoformat()
    if isinstance(value, int):
        return "Int64", value
    if isinstance(value, float):
        return "Float64", value
    if isinstance(value, Decimal):
        return "Decimal(38, 10)", str(value)
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return "Array(Int64)", list(value)
        return "Array(String)", [str(v) for v in value]
    return "String", str(value)


def bind_named(text: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`:name` placeholders → ClickHouse `{name:Type}`; values stay bound, never formatted."""
    used: dict[str, Any] = {}

    def sub(m: Any) -> str:
        tok = m.group(0)
        name = m.group(1)
        if name is None:
            return tok  # quoted text, or a '%', which ClickHouse leaves alone
        if name not in params:
            allowed = ", ".join(f":{k}" for k in params)
            raise UnknownParameter(f"unknown parameter :{name} (available: {allowed})")
        type_, used[name] = _param(params[name])
        return "{" + name + ":" + type_ + "}"

    return _TOKEN.sub(sub, text), used


def _frame(table: pa.Table) -> pd.DataFrame:
    """Rows as plain Python values (Decimal, datetime, None), like the PostgreSQL warehouse."""
    names = list(table.column_names)
    rows = list(zip(*(col.to_pylist() for col in table.columns))) if table.num_rows else []
    return pd.DataFrame(rows, columns=names)


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


# --- errors ---------------------------------------------------------------------------------


def _translate(exc: BaseException) -> BaseException | None:
    """A transient ClickHouse failure as TransientSourceError; None for anything else."""
    try:
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
    except ImportError:  # pragma: no cover - no client, nothing of its to translate
        return None
    text = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    if isinstance(exc, OperationalError):
        lowered = text.lower()
        if "authentication" in lowered or "password" in lowered:
            return None
        return TransientSourceError(f"ClickHouse unreachable: {text}")
    if isinstance(exc, DatabaseError) and getattr(exc, "code", None) in _TRANSIENT_CODES:
        return TransientSourceError(f"ClickHouse: {text}")
    return None


@contextmanager
def _classified_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        translated = _translate(exc)
        if translated is None:
            raise
        raise translated from None


# --- locks ----------------------------------------------------------------------------------

_dir_locks: dict[str, list[Any]] = {}  # chdb directory -> [fd, depth]
_dir_guard = threading.Lock()
_table_locks: dict[tuple[str, str], threading.RLock] = {}


@contextmanager
def _directory_lock(path: str, wait: float = _LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the chDB directory for this process; other processes wait (chDB allows one)."""
    import fcntl

    with _dir_guard:
        held = _dir_locks.get(path)
        if held:
            held[1] += 1
    if not held:
        os.makedirs(path, exist_ok=True)
        fd = os.open(os.path.join(path, ".etl-assets.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise TransientSourceError(
                        f"the chDB directory {path} stayed in use by another process for {wait:.0f}s"
                    ) from None
                time.sleep(0.05)
        with _dir_guard:
            _dir_locks[path] = [fd, 1]
    try:
        yield
    finally:
        with _dir_guard:
            entry = _dir_locks[path]
            entry[1] -= 1
            if entry[1] == 0:
                del _dir_locks[path]
                fcntl.flock(entry[0], fcntl.LOCK_UN)
                os.close(entry[0])


def _table_lock(identity: str, target: str) -> threading.RLock:
    with _dir_guard:
        return _table_locks.setdefault((identity, target), threading.RLock())


# --- the connection handle ------------------------------------------------------------------


class Connection:
    """A clickhouse-connect client with the few calls the warehouse needs."""

    def __init__(self, client: Any, endpoint: Endpoint):
        self.client = client
        self.endpoint = endpoint

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.client.command(sql, parameters=params or None)

    def arrow(
        self, sql: str, params: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> pa.Table:
        return self.client.query_arrow(
            sql, parameters=params or None, settings=settings, use_strings=True
        )

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        table = self.arrow(sql, params)
        return list(zip(*(col.to_pylist() for col in table.columns))) if table.num_rows else []

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def insert(self, table: str, frame: pd.DataFrame, schema: pa.Schema) -> None:
        if not len(frame):
            return
        data = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, data.schema) as writer:
            writer.write_table(data)
        self.client.raw_insert(
            table, list(schema.names), insert_block=sink.getvalue().to_pybytes(), fmt="ArrowStream"
        )

    def columns(self, target: str) -> dict[str, str]:
        db, table = target.split(".")
        return dict(
            self.rows(
                "SELECT name, type FROM system.columns WHERE database = {db:String} "
                "AND table = {t:String} ORDER BY position",
                {"db": db, "t": table},
            )
        )

    def table_info(self, target: str) -> tuple[str, str] | None:
        """(engine, sorting_key) of `target`, or None when it does not exist."""
        db, table = target.split(".")
        rows = self.rows(
            "SELECT engine, sorting_key FROM system.tables WHERE database = {db:String} "
            "AND name = {t:String}",
            {"db": db, "t": table},
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def source(self, target: str) -> str:
        """`target` as a FROM item: with FINAL when its engine collapses versions."""
        info = self.table_info(target)
        final = info is not None and "ReplacingMergeTree" in info[0]
        return qualified(target) + (" FINAL" if final else "")


# --- the warehouse --------------------------------------------------------------------------


class ClickHouseWarehouse(BaseWarehouse):
    """ClickHouse through clickhouse-connect: a server, or chDB embedded in this process."""

    kind = "clickhouse"

    def __init__(self, url: str, *, lock_url: str | None = None):
        self.endpoint = parse_url(url)
        # A server's loads of one table are serialized with an advisory lock in this
        # PostgreSQL database (the run-history one); chDB's directory lock already does it.
        self.lock_url = lock_url

    def __repr__(self) -> str:
        return f"ClickHouseWarehouse({self.endpoint.identity!r})"

    def column_type(self, type_: str) -> str:
        return CH_TYPES[type_]

    def _client(self) -> Any:
        try:
            import clickhouse_connect
        except ImportError:
            raise ImportError(
                "a clickhouse warehouse needs the clickhouse extra: pip install 'etl-assets[clickhouse]'"
            ) from None
        e = self.endpoint
        if e.embedded:
            try:
                import chdb  # noqa: F401
            except ImportError:
                raise ImportError(
                    "a chdb:// warehouse needs chdb: pip install 'etl-assets[clickhouse]'"
                ) from None
            return clickhouse_connect.get_client(interface="chdb", path=e.path)
        return clickhouse_connect.get_client(
            host=e.host, port=e.port, username=e.username, password=e.password,
            database=e.database, secure=e.secure, connect_timeout=10,
        )

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        e = self.endpoint
        lock = _directory_lock(e.path) if e.embedded else _nothing()
        with _classified_errors(), lock:
            client = self._client()
            try:
                yield Connection(client, e)
            finally:
                client.close()

    @contextmanager
    def _load_lock(self, target: str) -> Iterator[None]:
        with _table_lock(self.endpoint.identity, target):
            if self.endpoint.embedded or not self.lock_url:
                yield
                return
            import psycopg

            key = lock_key("clickhouse-load", self.endpoint.identity, target)
            with psycopg.connect(self.lock_url, autocommit=True, connect_timeout=10) as pg:
                pg.execute("SELECT pg_advisory_lock(%s)", (key,))
                try:
                    yield
                finally:
                    pg.execute("SELECT pg_advisory_unlock(%s)", (key,))

    # --- tables -----------------------------------------------------------------------------

    def ensure_table(
        self,
        conn: Connection,
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
        # append, scd2, store_failures and widening are PostgreSQL-only: the spec refuses them.
        if strategy not in ("upsert", *REPLACING) or failures:
            raise SourceDataError(f"{target}: {'store_failures' if failures else strategy} is not supported on ClickHouse")
        policy = policy or SchemaPolicySpec()
        events: list[DriftEvent] = []
        db, _ = target.split(".")
        conn.command(f"CREATE DATABASE IF NOT EXISTS {ident(db)}")
        info = conn.table_info(target)
        if info is None:
            cols = [
                f"{ident(c)} {self._ddl_type(t, nullable=c not in key and c not in not_null)}"
                for c, t in types.items()
            ] + [f"{ident(c)} {d}" for c, d in META_DDL]
            if key:
                engine = f"ReplacingMergeTree(_version) PARTITION BY _partition ORDER BY {_keys(key)}"
            else:
                # Without a key a partition is only ever replaced whole; nothing to collapse.
                engine = "MergeTree PARTITION BY _partition ORDER BY tuple()"
            conn.command(
                f"CREATE TABLE IF NOT EXISTS {qualified(target)} ({', '.join(cols)}) ENGINE = {engine}"
            )
        else:
            engine, sorting = info
            have = _sorting_columns(sorting)
            if key and (have != list(key) or "ReplacingMergeTree" not in engine):
                raise SourceDataError(
                    f"schema mismatch in {target}: the table is {engine} ordered by "
                    f"({', '.join(have)}) but the spec's primary key is ({', '.join(key)})"
                )
            events = self._add_columns(conn, target, types, policy)
        ignored = {e.column for e in events if e.change == "ignored"}
        if quarantine:
            qt = quarantine_table(target)
            cols = [f"{ident(c)} {self._ddl_type(t, nullable=True)}" for c, t in types.items() if c not in ignored] + [
                f"{ident(c)} {d}" for c, d in QUARANTINE_META_DDL
            ]
            conn.command(
                f"CREATE TABLE IF NOT EXISTS {qualified(qt)} ({', '.join(cols)}) "
                "ENGINE = MergeTree PARTITION BY _partition ORDER BY tuple()"
            )
            self._add_columns(conn, qt, {c: t for c, t in types.items() if c not in ignored})
        return events

    @staticmethod
    def _ddl_type(type_: str, *, nullable: bool) -> str:
        return f"Nullable({CH_TYPES[type_]})" if nullable else CH_TYPES[type_]

    def _add_columns(
        self, conn: Connection, target: str, types: dict[str, str], policy: SchemaPolicySpec | None = None
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

    # --- loads ------------------------------------------------------------------------------

    def load_partition(
        self,
        conn: Connection,
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
        """Swap in the partition's new content; unchanged rows are carried over untouched.

        With `quarantine`, the partition of `<table>__quarantine` is replaced by it too, so a
        rerun never duplicates those rows.
        """
        if strategy not in ("upsert", *REPLACING) or failures is not None:
            raise SourceDataError(f"{target}: {'store_failures' if failures is not None else strategy} is not supported on ClickHouse")
        strategy = "replace_partition" if strategy in REPLACING else strategy
        if delete_missing:
            raise SourceDataError(
                f"{target}: load.delete_missing is not supported on ClickHouse yet; "
                "use strategy replace_partition or a PostgreSQL warehouse"
            )
        cols = list(types)
        counts = LoadCounts(partition, staged=len(frame))
        with self._load_lock(target):
            stages = _Stages(conn, target, locked=self.endpoint.embedded or bool(self.lock_url))
            try:
                stages.drop_stale()
                columns = conn.columns(target)
                self._check_nulls(target, frame, cols, columns)
                counts.missing_columns = self._gone(target, types, columns, on_missing_column)
                counts.drift = [
                    DriftEvent(c, "missing", columns[c], "NULL in the rows written").as_dict() for c in counts.missing_columns
                ]
                typed = ", ".join(f"{ident(c)} {columns[c]}" for c in cols)
                s_in = stages.create("in", f"({typed}, `record_hash` String) ENGINE = Memory")
                conn.insert(s_in, frame[cols + ["record_hash"]], _schema(types, ["record_hash"]))
                if key:
                    dupes = conn.scalar(f"SELECT count() - uniqExact({_names(key)}) FROM {s_in}")
                    if dupes:
                        raise SourceDataError(
                            f"{target} partition {partition}: {dupes} staged row(s) repeat a "
                            "primary key value"
                        )
                load = _Load(
                    target=target, key=key, cols=cols, s_in=s_in,
                    s_out=stages.create("out", f"AS {qualified(target)}"),
                    params=self._stamp(conn, target, partition, run_id),
                    gone=counts.missing_columns,
                )
                if quarantine is not None:
                    counts.quarantined = self._replace_quarantine(
                        conn, stages, target, types, partition, run_id, quarantine
                    )
                if key:
                    self._load_keyed(conn, stages, load, strategy, counts)
                else:
                    # Without a key a partition can only be replaced whole.
                    counts.deleted = int(conn.scalar(
                        f"SELECT count() FROM {load.tgt} WHERE _partition = {{p:String}}", load.params
                    ))
                    conn.command(load.insert_staged(), load.params)
                    counts.inserted = len(frame)
                    self._swap(conn, target, load.s_out, partition)
            finally:
                stages.drop_all()
        return counts

    @staticmethod
    def _gone(
        target: str, types: dict[str, str], columns: dict[str, str], policy: MissingColumnPolicy
    ) -> list[str]:
        """Target columns the load has no values for: an error, or NULL in the rows it writes."""
        meta = {c for c, _ in META_DDL}
        gone = [c for c in columns if c not in types and c not in meta]
        if gone and policy != "null":
            raise missing_columns_error(target, gone)
        for c in gone:
            if not columns[c].startswith("Nullable("):
                # Leaving it out would write the type's default (0, ''), not NULL.
                raise SourceDataError(
                    f"{target} has column {c!r}, which the source no longer provides, and it is "
                    f"{columns[c]}, not Nullable, so it cannot be left NULL"
                )
        return gone

    @staticmethod
    def _stamp(conn: Connection, target: str, partition: str, run_id: str) -> dict[str, Any]:
        """What this load writes on the rows it inserts or changes."""
        # Above every version in the table, even if the clock went back.
        newest = int(conn.scalar(f"SELECT max(_version) FROM {qualified(target)}") or 0)
        return {
            "p": partition,
            "run": run_id,
            "ver": max(time.time_ns() // 1000, newest + 1),
            "now": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f"),
        }

    def _load_keyed(
        self, conn: Connection, stages: _Stages, load: _Load, strategy: str, counts: LoadCounts
    ) -> None:
        tgt, keys, names = load.tgt, load.keys, _names(load.key)
        s_in, params = load.s_in, load.params
        # Each staged key: new, changed or the same as the row the table holds (in any
        # partition), and its home, the partition that holds it afterwards.
        on = " AND ".join(f"s.{ident(k)} = o.{ident(k)}" for k in load.key)
        # The stored values are compared, not only the stored hash, so a row edited in the
        # warehouse is rewritten; a NULL equals only a NULL.
        alike = " AND ".join(
            [f"ifNull(o.{ident(c)} = s.{ident(c)}, isNull(o.{ident(c)}) AND isNull(s.{ident(c)}))"
             for c in load.cols + ["record_hash"] if c not in load.key]
            + [f"isNull(o.{ident(c)})" for c in load.gone]
        ) or "1"
        looked_up = _names(load.key + [c for c in load.cols + load.gone if c not in load.key])
        s_cls = stages.create(
            "cls",
            "ENGINE = Memory AS SELECT "
            + ", ".join(f"s.{ident(k)} AS {ident(k)}" for k in load.key)
            + ", multiIf(ifNull(o._etl_found, 0) = 0, 'new', "
            f"NOT ({alike}), 'changed', 'same') AS _etl_state, "
            "if(_etl_state = 'same', o._partition, {p:String}) AS _etl_home "
            f"FROM {s_in} AS s LEFT JOIN ("
            f"SELECT {looked_up}, record_hash, _partition, toUInt8(1) AS _etl_found FROM {tgt} FINAL "
            f"WHERE {keys} IN (SELECT {names} FROM {s_in})) AS o ON {on}",
            params,
        )
        new, changed, same = conn.rows(
            "SELECT countIf(_etl_state = 'new'), countIf(_etl_state = 'changed'), "
            f"countIf(_etl_state = 'same') FROM {s_cls}"
        )[0]
        counts.inserted, counts.updated, counts.unchanged = int(new), int(changed), int(same)
        staged = f"{keys} IN (SELECT {names} FROM {s_cls})"
        if strategy == "replace_partition":
            counts.deleted = int(conn.scalar(
                f"SELECT count() FROM {tgt} FINAL WHERE _partition = {{p:String}} AND NOT {staged}",
                params,
            ))
        # The partition's new content: new and changed rows from staging, stamped with this
        # load; unchanged rows whose home it is, as they were; under upsert, its other rows.
        conn.command(
            load.insert_staged(f"{keys} IN (SELECT {names} FROM {s_cls} WHERE _etl_state != 'same')"),
            params,
        )
        carried = (
            f"{keys} IN (SELECT {names} FROM {s_cls} "
            "WHERE _etl_state = 'same' AND _etl_home = {p:String})"
        )
        if strategy != "replace_partition":
            carried += f" OR NOT {staged}"
        conn.command(
            f"INSERT INTO {load.s_out} SELECT * FROM {tgt} FINAL "
            f"WHERE _partition = {{p:String}} AND ({carried})",
            params,
        )
        # Partitions still holding a staged key that now lives elsewhere (the old copy of a
        # changed row) are rebuilt without it, once the new copy is in place.
        strays = [
            r[0]
            for r in conn.rows(
                f"SELECT DISTINCT _partition FROM {tgt} WHERE _partition != {{p:String}} "
                f"AND {staged} AND ({names}, _partition) NOT IN "
                f"(SELECT {names}, _etl_home FROM {s_cls}) ORDER BY 1",
                params,
            )
        ]
        self._swap(conn, load.target, load.s_out, params["p"])
        for other in strays:
            s_other = stages.create("mv", f"AS {tgt}")
            conn.command(
                f"INSERT INTO {s_other} SELECT * FROM {tgt} FINAL WHERE _partition = {{q:String}} "
                f"AND (NOT {staged} OR {keys} IN "
                f"(SELECT {names} FROM {s_cls} WHERE _etl_home = {{q:String}}))",
                {"q": other},
            )
            self._swap(conn, load.target, s_other, other)

    @staticmethod
    def _swap(conn: Connection, target: str, stage: str, partition: str) -> None:
        """Atomically make `partition` of `target` hold exactly the rows of `stage`."""
        if conn.scalar(f"SELECT count() FROM {stage}"):
            conn.command(
                f"ALTER TABLE {qualified(target)} REPLACE PARTITION {literal(partition)} FROM {stage}"
            )
        else:
            conn.command(f"ALTER TABLE {qualified(target)} DROP PARTITION {literal(partition)}")

    @staticmethod
    def _check_nulls(
        target: str, frame: pd.DataFrame, cols: list[str], columns: dict[str, str]
    ) -> None:
        for c in cols:
            if c not in columns:
                raise SourceDataError(f"{target} has no column {c!r}")
            if not columns[c].startswith("Nullable(") and frame[c].isna().any():
                n = int(frame[c].isna().sum())
                raise SourceDataError(
                    f"column {c!r}: {n} row(s) are empty but {target}.{c} is {columns[c]}, not Nullable"
                )

    def _replace_quarantine(
        self, conn: Connection, stages: _Stages, target: str, types: dict[str, str], partition: str,
        run_id: str, frame: pd.DataFrame,
    ) -> int:
        qt = quarantine_table(target)
        cols = list(types)
        stage = stages.create("q", f"AS {qualified(qt)}")
        rows = frame.reindex(columns=cols + ["record_hash", "_check", "_reason"]).assign(
            _partition=partition, _run_id=run_id
        )
        text = ["record_hash", "_check", "_reason", "_partition", "_run_id"]
        conn.insert(stage, rows, _schema(types, text))
        self._swap(conn, qt, stage, partition)
        return len(frame)

    # --- queries ----------------------------------------------------------------------------

    def query(self, text: str, params: dict[str, Any]) -> pd.DataFrame:
        """A spec's SQL with `:name` parameters (KPIs), values bound, every table FINAL."""
        stmt, bound = bind_named(text, params)
        with self.connect() as conn:
            return _frame(conn.arrow(stmt, bound, settings={"final": 1}))

    def table_exists(self, target: str) -> bool:
        with self.connect() as conn:
            return conn.table_info(target) is not None

    def partition_counts(
        self, target: str, partition: str, limit: int, *, inclusive: bool
    ) -> list[tuple[str, int]]:
        with self.connect() as conn:
            rows = conn.rows(
                f"SELECT _partition, count() AS n FROM {conn.source(target)} "
                f"WHERE _partition {'<=' if inclusive else '<'} {{k:String}} "
                f"GROUP BY _partition ORDER BY _partition DESC LIMIT {int(limit)}",
                {"k": partition},
            )
        return [(str(p), int(n)) for p, n in rows]

    def missing_values(self, target: str, column: str, values: list[str]) -> set[str]:
        missing: set[str] = set()
        with self.connect() as conn:
            for i in range(0, len(values), _VALUES_PER_QUERY):
                rows = conn.rows(
                    "SELECT DISTINCT v FROM (SELECT arrayJoin({vals:Array(String)}) AS v) "
                    f"WHERE v NOT IN (SELECT toString({ident(column)}) FROM {qualified(target)} "
                    f"WHERE {ident(column)} IS NOT NULL)",
                    {"vals": [str(v) for v in values[i : i + _VALUES_PER_QUERY]]},
                )
                missing.update(str(r[0]) for r in rows)
        return missing

    def high_water_mark(self, target: str, column: str) -> Any:
        with self.connect() as conn:
            if conn.table_info(target) is None:
                return None
            return conn.scalar(f"SELECT maxOrNull({ident(column)}) FROM {conn.source(target)}")

    def count(self, target: str, partition: str | None = None) -> int:
        with self.connect() as conn:
            stmt = f"SELECT count() FROM {conn.source(target)}"
            if partition is None:
                return int(conn.scalar(stmt))
            return int(conn.scalar(stmt + " WHERE _partition = {p:String}", {"p": partition}))


def _schema(types: dict[str, str], text_columns: list[str]) -> pa.Schema:
    return pa.schema(
        [pa.field(c, ARROW_TYPES[t]) for c, t in types.items()]
        + [pa.field(c, pa.string()) for c in text_columns]
    )


class _Stages:
    """Staging tables of one load, next to the target, dropped when the load ends.

    Their names start with `_etl_stage_<hash of the table>_`, so a later load of the same
    table finds what a killed one left behind.
    """

    def __init__(self, conn: Connection, target: str, *, locked: bool):
        self.conn = conn
        self.db, table = target.split(".")
        self.prefix = f"{STAGE_PREFIX}{hashlib.md5(table.encode()).hexdigest()[:10]}_"
        self.locked = locked
        self.created: list[str] = []

    def create(self, suffix: str, body: str, params: dict[str, Any] | None = None) -> str:
        name = f"{ident(self.db)}.{ident(self.prefix + uuid.uuid4().hex[:12] + '_' + suffix)}"
        self.created.append(name)
        self.conn.command(f"CREATE TABLE {name} {body}", params)
        return name

    def drop_all(self) -> None:
        for name in reversed(self.created):
            try:
                self.conn.command(f"DROP TABLE IF EXISTS {name} SYNC")
            except Exception:
                pass
        self.created.clear()

    def drop_stale(self) -> None:
        """Drop stages of killed loads: all of them under the table's lock, else day-old ones."""
        age = "" if self.locked else " AND metadata_modification_time < now() - INTERVAL 1 DAY"
        for (name,) in self.conn.rows(
            "SELECT name FROM system.tables WHERE database = {db:String} "
            f"AND startsWith(name, {{prefix:String}}){age}",
            {"db": self.db, "prefix": self.prefix},
        ):
            self.conn.command(f"DROP TABLE IF EXISTS {ident(self.db)}.{ident(name)} SYNC")


@contextmanager
def _nothing() -> Iterator[None]:
    yield
