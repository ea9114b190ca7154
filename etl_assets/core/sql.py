"""Named `:param` SQL from specs: the one place `:name` placeholders are found and bound.

Every dialect gets the same rules: a `:name` outside quotes is a parameter (so `'10:30'`
and `::date` casts survive), an unknown name is an error listing the known ones, and values
stay bound, never formatted into the text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from psycopg import sql

# A :name not preceded by ':' (so '::date' casts survive); quoted strings are skipped.
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(?<!:):([A-Za-z_][A-Za-z0-9_]*)|%")


class UnknownParameter(ValueError):
    pass


def _keep(text: str) -> str:
    return text


def rewrite_named(
    text: str,
    params: Mapping[str, Any],
    placeholder: Callable[[str], str],
    escape: Callable[[str], str] = _keep,
) -> tuple[str, dict[str, Any]]:
    """Each `:name` → `placeholder(name)`; quoted text and `%` pass through `escape`.

    Returns the new text and the values of the parameters it uses.
    """
    used: dict[str, Any] = {}

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None:  # a quoted literal or identifier, or a '%'
            return escape(m.group(0))
        if name not in params:
            allowed = ", ".join(f":{k}" for k in params)
            raise UnknownParameter(f"unknown parameter :{name} (available: {allowed})")
        used[name] = params[name]
        return placeholder(name)

    return _TOKEN.sub(sub, text), used


def _pyformat(name: str) -> str:
    return f"%({name})s"


def _percent(text: str) -> str:
    return text.replace("%", "%%")


def bind_named(text: str, params: Mapping[str, Any]) -> tuple[sql.SQL, dict[str, Any]]:
    """Turn `:name` placeholders into psycopg `%(name)s`; values stay bound, never formatted."""
    rewritten, used = rewrite_named(text, params, _pyformat, _percent)
    return sql.SQL(rewritten), used


def qualified(name: str) -> sql.Identifier:
    """`schema.table` → a quoted identifier pair (names are validated by the spec)."""
    return sql.Identifier(*name.split("."))


def lock_key(*parts: str) -> int:
    """A stable 64-bit advisory-lock key (hashtext differs across server versions)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
