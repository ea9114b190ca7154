"""How spec types and the etl columns look in PostgreSQL, and the names it accepts."""

from __future__ import annotations

import hashlib
from collections.abc import Collection

from etl_assets.sources.base import SourceDataError

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
# Warehouse type -> (spec's type -> the exact wider type), for `schema.on_type_change: widen`.
WIDER = {
    "smallint": {"bigint": "bigint", "double precision": "numeric"},
    "integer": {"bigint": "bigint", "double precision": "numeric"},
    "bigint": {"double precision": "numeric"},
}
# Already widened: the column holds the spec's values exactly.
HOLDS = {("numeric", "double precision"), ("numeric", "bigint")}


def check_identifiers(columns: Collection[str]) -> None:
    for c in columns:
        size = len(c.encode("utf-8"))
        if size > MAX_IDENTIFIER_BYTES:
            raise SourceDataError(
                f"column {c!r} is {size} bytes long; PostgreSQL names hold at most "
                f"{MAX_IDENTIFIER_BYTES}: declare it under columns with a shorter name and from: {c!r}"
            )


def index_name(table: str, suffix: str) -> str:
    name = f"{table}_{suffix}"
    if len(name) > 63:
        name = f"{table[:40]}_{hashlib.md5(table.encode()).hexdigest()[:8]}_{suffix}"
    return name
