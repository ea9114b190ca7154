"""Where and how rows load: the load strategy, the schema-drift policy and the warehouse."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator, model_validator

from etl_assets.spec.base import Strict, identifier, no_literal_secret_in_url, not_reserved


class LoadSpec(Strict):
    target: str | None = None  # schema.table; default <pipeline>.<source>
    # upsert: insert or update by key. delete_insert: the partition's rows are replaced as a
    # set (`replace_partition` is its former name, still accepted). append: each key is
    # inserted once and never updated. scd2: every version of a key is kept (valid_from,
    # valid_to, is_current) and `<target>__current` shows the current ones.
    strategy: Literal["upsert", "delete_insert", "replace_partition", "append", "scd2"] = "upsert"
    # Full sources only: rows the source no longer has are deleted from the target (under
    # scd2 their current versions are closed instead).
    delete_missing: bool = False
    # Another pipeline or source loads this target too: both must say so, and both upsert.
    shared: bool = False

    @field_validator("target")
    @classmethod
    def _target(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = v.split(".")
        if len(parts) != 2:
            raise ValueError(f"{v!r} must be schema.table")
        for p in parts:
            identifier(p, "identifier")
        not_reserved(parts[0], "schema")
        return v

    @model_validator(mode="after")
    def _shared_keeps_others_rows(self) -> LoadSpec:
        # Partition replacement and delete_missing delete by partition or by absence,
        # which would take the other loader's rows too.
        if self.shared and self.strategy != "upsert":
            raise ValueError("load.shared needs strategy upsert: replace_partition would delete the other loader's rows")
        if self.shared and self.delete_missing:
            raise ValueError("load.shared cannot delete_missing: it would delete the other loader's rows")
        if self.strategy == "append" and self.delete_missing:
            raise ValueError("load.strategy append never deletes: drop delete_missing or use upsert")
        return self

    @property
    def replaces_partition(self) -> bool:
        """delete_insert, under either of its names."""
        return self.strategy in ("delete_insert", "replace_partition")


class SchemaPolicySpec(Strict):
    """What a load does when the source's columns drift from the warehouse table's."""

    # evolve: the column is added to the table; fail: the load fails naming it; ignore: it
    # is not loaded.
    on_new_column: Literal["evolve", "fail", "ignore"] = "evolve"
    # A column the table has but the source no longer provides. fail: the load fails naming
    # it; null: rows the load writes hold NULL in it; keep: rows it updates keep their value.
    on_missing_column: Literal["fail", "null", "keep"] = "fail"
    # fail: the load fails naming the column and both types; widen: the warehouse column is
    # widened when that holds every old and new value exactly.
    on_type_change: Literal["fail", "widen"] = "fail"

    @field_validator("on_missing_column", mode="before")
    @classmethod
    def _yaml_null(cls, v: Any) -> Any:
        return "null" if v is None else v  # YAML reads an unquoted `null` as None


_WAREHOUSE_SCHEMES = {
    "postgres": ("postgresql://", "postgres://"),
    "clickhouse": ("clickhouse://", "clickhouses://", "chdb://"),
}


class WarehouseSpec(Strict):
    """The load target: PostgreSQL (default) or ClickHouse, a server or embedded chDB.

    postgres: `url` is optional (default: the ETL_WAREHOUSE_URL warehouse).
    clickhouse: `clickhouse://user:${PW}@host:8123/db` (`clickhouses://` for TLS) or
    `chdb:///path/to/dir` for the embedded engine. Run history stays in PostgreSQL.
    """

    kind: Literal["postgres", "clickhouse"] = "postgres"
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        return no_literal_secret_in_url(v, "clickhouse://etl:${CLICKHOUSE_PASSWORD}@host:8123/db")

    @model_validator(mode="after")
    def _kind_url(self) -> WarehouseSpec:
        if self.url is None:
            if self.kind == "clickhouse":
                raise ValueError(
                    'a clickhouse warehouse needs url, e.g. "${CLICKHOUSE_URL}" or chdb:///path/to/dir'
                )
            return self
        if not self.url.startswith("${") and not self.url.startswith(_WAREHOUSE_SCHEMES[self.kind]):
            raise ValueError(
                f"url of a {self.kind} warehouse must start with "
                + " or ".join(_WAREHOUSE_SCHEMES[self.kind])
            )
        return self

