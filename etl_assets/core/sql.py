"""Named `:param` SQL from specs, turned into bound psycopg queries."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from psycopg import sql

# A :name not preceded by ':' (so '::date' casts survive); quoted strings are skipped.
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(?<!:):([A-Za-z_][A-Za-z0-9_]*)|%")


class UnknownParameter(ValueError):
    pass


def bind_named(text: str, params: Mapping[str, Any]) -> tuple[sql.SQL, dict[str, Any]]:
    """Turn `:name` placeholders into psycopg `%(name)s`; values stay bound, never formatted."""
    used: dict[str, Any] = {}

    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok == "%":
            return "%%"
        name = m.group(1)
        if name is None:  # a quoted literal or identifier: keep it, but escape its %
            return tok.replace("%", "%%")
        if name not in params:
            allowed = ", ".join(f":{k}" for k in params)
            raise UnknownParameter(f"unknown parameter :{name} (available: {allowed})")
        used[name] = params[name]
        return f"%({name})s"

    return sql.SQL(_TOKEN.sub(sub, text)), used  # type: ignore[arg-type]


def qualified(name: str) -> sql.Composed:
    """`schema.table` → a quoted identifier pair (names are validated by the spec)."""
    return sql.Identifier(*name.split("."))
