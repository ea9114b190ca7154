"""ClickHouse partition loads: the partition's new content built in a stage, swapped in whole.

A load stages the rows, compares them with the rows the table holds for the same keys, builds
the partition's complete new content in a staging table and swaps it in with `ALTER TABLE …
REPLACE PARTITION`: readers see the old partition or the new one, never half of it. Unchanged
rows are copied over as they were (`_loaded_at`, `_run_id`, `_version`), so a rerun that
changes nothing reports 0 inserted, 0 updated and leaves the same rows.

As with the PostgreSQL upsert, a key lives in exactly one partition: a changed row moves to the
partition being loaded and its old copy is removed from the partition that held it (that
partition is swapped too). Until then, and after a crash in between, `FINAL` already returns
only the newer copy, and a rerun finishes the move.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from etl_assets.sources.base import SourceDataError
from etl_assets.warehouses.base import (
    REPLACING,
    DriftEvent,
    LoadCounts,
    LoadRequest,
    MissingColumnPolicy,
    missing_columns_error,
    quarantine_table,
)
from etl_assets.warehouses.clickhouse.configuration import META_DDL, STAGE_PREFIX, arrow_schema
from etl_assets.warehouses.clickhouse.locks import load_lock
from etl_assets.warehouses.clickhouse.sql_client import (
    Connection,
    ident,
    key_expr,
    names,
    qualified,
)


def load_partition(conn: Connection, req: LoadRequest, *, lock_url: str | None) -> LoadCounts:
    """`LoadRequest` on ClickHouse: the partition's new content swapped in, unchanged rows
    carried over untouched, the partition of `<table>__quarantine` replaced too.

    `lock_url` is the PostgreSQL database whose advisory lock serializes a server's loads of
    one table.
    """
    target, frame, partition = req.target, req.frame, req.partition
    if req.strategy not in ("upsert", *REPLACING) or req.failures is not None:
        what = "store_failures" if req.failures is not None else req.strategy
        raise SourceDataError(f"{target}: {what} is not supported on ClickHouse")
    strategy = "replace_partition" if req.strategy in REPLACING else req.strategy
    if req.delete_missing:
        raise SourceDataError(
            f"{target}: load.delete_missing is not supported on ClickHouse yet; "
            "use strategy replace_partition or a PostgreSQL warehouse"
        )
    counts = LoadCounts(partition, staged=len(frame))
    with load_lock(conn.endpoint, lock_url, target):
        stages = _Stages(conn, target, locked=conn.endpoint.embedded or bool(lock_url))
        try:
            stages.drop_stale()
            load = _stage(conn, stages, req, counts)
            if req.quarantine is not None:
                counts.quarantined = _replace_quarantine(conn, stages, req, req.quarantine)
            if req.key:
                _load_keyed(conn, stages, load, strategy, counts)
            else:
                # Without a key a partition can only be replaced whole.
                counts.deleted = int(conn.scalar(
                    f"SELECT count() FROM {load.tgt} WHERE _partition = {{p:String}}", load.params
                ))
                conn.command(load.insert_staged(), load.params)
                counts.inserted = len(frame)
                _swap(conn, target, load.s_out, partition)
        finally:
            stages.drop_all()
    return counts


def _stage(conn: Connection, stages: _Stages, req: LoadRequest, counts: LoadCounts) -> _Load:
    """Stage the rows (`s_in`) and an empty copy of the target (`s_out`) for its new content."""
    target, types, key = req.target, req.types, req.key
    cols = list(types)
    columns = conn.columns(target)
    _check_nulls(target, req.frame, cols, columns)
    counts.missing_columns = _gone(target, types, columns, req.on_missing_column)
    counts.drift = [
        DriftEvent(c, "missing", columns[c], "NULL in the rows written").as_dict() for c in counts.missing_columns
    ]
    typed = ", ".join(f"{ident(c)} {columns[c]}" for c in cols)
    s_in = stages.create("in", f"({typed}, `record_hash` String) ENGINE = Memory")
    conn.insert(s_in, req.frame[cols + ["record_hash"]], arrow_schema(types, ["record_hash"]))
    if key:
        dupes = conn.scalar(f"SELECT count() - uniqExact({names(key)}) FROM {s_in}")
        if dupes:
            raise SourceDataError(
                f"{target} partition {req.partition}: {dupes} staged row(s) repeat a "
                "primary key value"
            )
    return _Load(
        target=target, key=key, cols=cols, s_in=s_in,
        s_out=stages.create("out", f"AS {qualified(target)}"),
        params=_stamp(conn, target, req.partition, req.run_id),
        gone=counts.missing_columns,
    )


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
        return key_expr(self.key)

    def insert_staged(self, where: str | None = None) -> str:
        """Staged rows into the new content, stamped with this load."""
        data = names(self.cols + ["record_hash"])
        return (
            f"INSERT INTO {self.s_out} ({data}, `_partition`, `_loaded_at`, `_run_id`, `_version`) "
            f"SELECT {data}, {{p:String}}, {{now:DateTime64(6, 'UTC')}}, {{run:String}}, "
            f"{{ver:UInt64}} FROM {self.s_in}" + (f" WHERE {where}" if where else "")
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
    conn: Connection, stages: _Stages, load: _Load, strategy: str, counts: LoadCounts
) -> None:
    tgt, keys, key_cols, params = load.tgt, load.keys, names(load.key), load.params
    s_cls = _classify(stages, load)
    new, changed, same = conn.rows(
        "SELECT countIf(_etl_state = 'new'), countIf(_etl_state = 'changed'), "
        f"countIf(_etl_state = 'same') FROM {s_cls}"
    )[0]
    counts.inserted, counts.updated, counts.unchanged = int(new), int(changed), int(same)
    staged = f"{keys} IN (SELECT {key_cols} FROM {s_cls})"
    if strategy == "replace_partition":
        counts.deleted = int(conn.scalar(
            f"SELECT count() FROM {tgt} FINAL WHERE _partition = {{p:String}} AND NOT {staged}",
            params,
        ))
    # The partition's new content: new and changed rows from staging, stamped with this
    # load; unchanged rows whose home it is, as they were; under upsert, its other rows.
    conn.command(
        load.insert_staged(f"{keys} IN (SELECT {key_cols} FROM {s_cls} WHERE _etl_state != 'same')"),
        params,
    )
    carried = (
        f"{keys} IN (SELECT {key_cols} FROM {s_cls} "
        "WHERE _etl_state = 'same' AND _etl_home = {p:String})"
    )
    if strategy != "replace_partition":
        carried += f" OR NOT {staged}"
    conn.command(
        f"INSERT INTO {load.s_out} SELECT * FROM {tgt} FINAL "
        f"WHERE _partition = {{p:String}} AND ({carried})",
        params,
    )
    _move_strays(conn, stages, load, s_cls, staged)


def _classify(stages: _Stages, load: _Load) -> str:
    """A stage of each staged key's state (new, changed, same) and home partition."""
    tgt, keys, key_cols, s_in = load.tgt, load.keys, names(load.key), load.s_in
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
    looked_up = names(load.key + [c for c in load.cols + load.gone if c not in load.key])
    return stages.create(
        "cls",
        "ENGINE = Memory AS SELECT "
        + ", ".join(f"s.{ident(k)} AS {ident(k)}" for k in load.key)
        + ", multiIf(ifNull(o._etl_found, 0) = 0, 'new', "
        f"NOT ({alike}), 'changed', 'same') AS _etl_state, "
        "if(_etl_state = 'same', o._partition, {p:String}) AS _etl_home "
        f"FROM {s_in} AS s LEFT JOIN ("
        f"SELECT {looked_up}, record_hash, _partition, toUInt8(1) AS _etl_found FROM {tgt} FINAL "
        f"WHERE {keys} IN (SELECT {key_cols} FROM {s_in})) AS o ON {on}",
        load.params,
    )


def _move_strays(conn: Connection, stages: _Stages, load: _Load, s_cls: str, staged: str) -> None:
    """Swap in the partition, then rebuild the others that held an old copy of a moved key."""
    tgt, keys, key_cols, params = load.tgt, load.keys, names(load.key), load.params
    # Partitions still holding a staged key that now lives elsewhere (the old copy of a
    # changed row) are rebuilt without it, once the new copy is in place.
    strays = [
        r[0]
        for r in conn.rows(
            f"SELECT DISTINCT _partition FROM {tgt} WHERE _partition != {{p:String}} "
            f"AND {staged} AND ({key_cols}, _partition) NOT IN "
            f"(SELECT {key_cols}, _etl_home FROM {s_cls}) ORDER BY 1",
            params,
        )
    ]
    _swap(conn, load.target, load.s_out, params["p"])
    for other in strays:
        s_other = stages.create("mv", f"AS {tgt}")
        conn.command(
            f"INSERT INTO {s_other} SELECT * FROM {tgt} FINAL WHERE _partition = {{q:String}} "
            f"AND (NOT {staged} OR {keys} IN "
            f"(SELECT {key_cols} FROM {s_cls} WHERE _etl_home = {{q:String}}))",
            {"q": other},
        )
        _swap(conn, load.target, s_other, other)


def _swap(conn: Connection, target: str, stage: str, partition: str) -> None:
    """Atomically make `partition` of `target` hold exactly the rows of `stage`."""
    if conn.scalar(f"SELECT count() FROM {stage}"):
        conn.command(
            f"ALTER TABLE {qualified(target)} REPLACE PARTITION {{p:String}} FROM {stage}",
            {"p": partition},
        )
    else:
        conn.command(f"ALTER TABLE {qualified(target)} DROP PARTITION {{p:String}}", {"p": partition})


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


def _replace_quarantine(conn: Connection, stages: _Stages, req: LoadRequest, frame: pd.DataFrame) -> int:
    qt = quarantine_table(req.target)
    cols = list(req.types)
    stage = stages.create("q", f"AS {qualified(qt)}")
    rows = frame.reindex(columns=cols + ["record_hash", "_check", "_reason"]).assign(
        _partition=req.partition, _run_id=req.run_id
    )
    text = ["record_hash", "_check", "_reason", "_partition", "_run_id"]
    conn.insert(stage, rows, arrow_schema(req.types, text))
    _swap(conn, qt, stage, req.partition)
    return len(frame)
