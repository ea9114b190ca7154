"""What every warehouse engine shares: the interface the assets use and what a load reports.

`BaseWarehouse` is what the assets ask of a warehouse; `etl_assets.warehouses.postgres` and
`etl_assets.warehouses.clickhouse` implement it. Side tables (`<table>__quarantine`, …) and
advisory-lock keys are named here because both engines use them: ClickHouse loads of a server
are serialized with a lock in the PostgreSQL run-history database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Collection
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from etl_assets.core.sql import lock_key  # noqa: F401  (both engines lock by it)
from etl_assets.sources.base import SourceDataError

if TYPE_CHECKING:
    import pandas as pd

    from etl_assets.spec import SchemaPolicySpec

MissingColumnPolicy = Literal["fail", "null", "keep"]
# `delete_insert` was called `replace_partition` before; both names load the same way.
REPLACING = ("delete_insert", "replace_partition")


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


@dataclass(frozen=True, kw_only=True)
class TableRequest:
    """Create `target` (and `<table>__quarantine`, `__failures`) or bring its columns in line.

    `not_null` names the columns the spec declares `nullable: false`; key columns never
    hold nulls. New columns and changed types follow `policy` (default: new columns are
    added, a changed type is a `SourceDataError`); the events `ensure_table` returns say what
    changed. An `ignored` column is not to be loaded.
    """

    target: str
    types: dict[str, str]
    key: list[str]
    quarantine: bool = False
    not_null: Collection[str] = ()
    strategy: str = "upsert"
    failures: bool = False
    policy: SchemaPolicySpec | None = None


# eq=False: frames have no single truth value, so requests compare (and hash) by identity.
@dataclass(frozen=True, kw_only=True, eq=False)
class LoadRequest:
    """Make `partition` of `target` hold `frame`, all or nothing; a rerun changes nothing.

    Target columns not in `types` fail the load, or with `on_missing_column="null"` are
    NULL in the rows it writes; either way they are named in `LoadCounts.missing_columns`.
    `quarantine` (rows set aside by checks) and `failures` (rows of failing store_failures
    checks) replace the partition's rows of `<table>__quarantine` and `<table>__failures` in
    the same load, so a rerun never duplicates them. With `delete_missing` (a full source is the
    whole truth) the keys of `target` the frame no longer has are deleted (under scd2: their
    versions closed). Under scd2 a version is valid from its `timestamp_column` value, else
    from `window_start`.
    """

    target: str
    frame: pd.DataFrame
    types: dict[str, str]
    key: list[str]
    partition: str
    run_id: str
    strategy: str
    quarantine: pd.DataFrame | None = None
    delete_missing: bool = False
    on_missing_column: MissingColumnPolicy = "fail"
    failures: pd.DataFrame | None = None
    window_start: dt.datetime | None = None
    timestamp_column: str | None = None


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


class BaseWarehouse(ABC):
    """What the assets ask of a warehouse. Targets are `schema.table` on every engine.

    `connect()` yields an engine-specific handle that `ensure_table` and `load_partition`
    take; every other method opens its own. Those two build a `TableRequest` or a
    `LoadRequest`, whose docstrings hold their contract, and hand it to the engine.
    """

    kind: str

    @abstractmethod
    def connect(self) -> AbstractContextManager[Any]: ...

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
        """Create `target` or bring its columns in line: see `TableRequest`."""
        return self._ensure(conn, TableRequest(
            target=target, types=types, key=key, quarantine=quarantine, not_null=not_null,
            strategy=strategy, failures=failures, policy=policy,
        ))

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
        """Load one partition of `target`: see `LoadRequest`."""
        return self._load(conn, LoadRequest(
            target=target, frame=frame, types=types, key=key, partition=partition, run_id=run_id,
            strategy=strategy, quarantine=quarantine, delete_missing=delete_missing,
            on_missing_column=on_missing_column, failures=failures, window_start=window_start,
            timestamp_column=timestamp_column,
        ))

    @abstractmethod
    def _ensure(self, conn: Any, req: TableRequest) -> list[DriftEvent]:
        """`ensure_table` on this engine."""

    @abstractmethod
    def _load(self, conn: Any, req: LoadRequest) -> LoadCounts:
        """`load_partition` on this engine."""

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
