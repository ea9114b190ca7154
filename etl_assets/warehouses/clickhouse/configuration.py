"""ClickHouse settings: the warehouse URL, and how spec types look in tables and in Arrow."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa

from etl_assets.sources.base import SourceDataError

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


def arrow_schema(types: dict[str, str], text_columns: list[str]) -> pa.Schema:
    """The Arrow schema rows of `types` (plus text columns) are inserted with."""
    return pa.schema(
        [pa.field(c, ARROW_TYPES[t]) for c, t in types.items()]
        + [pa.field(c, pa.string()) for c in text_columns]
    )
