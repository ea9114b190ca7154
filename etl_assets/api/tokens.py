"""API tokens and the audit trail's tables in `etl_meta`.

A token is 32 random bytes shown once; only its SHA-256 is stored. A plain hash is enough:
the token is not a guessable password, so a slow hash would only slow every request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import psycopg

from etl_assets.api.models import Role
from etl_assets.core.sql import lock_key
from etl_assets.ops import history

# Each entry upgrades the API's tables by one version; append, never edit a released one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE etl_meta.api_tokens (
        name         text PRIMARY KEY,
        role         text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
        token_hash   bytea NOT NULL UNIQUE,
        created_at   timestamptz NOT NULL DEFAULT now(),
        last_used_at timestamptz,
        revoked_at   timestamptz
    );
    CREATE TABLE etl_meta.audit (
        id         bigserial PRIMARY KEY,
        at         timestamptz NOT NULL DEFAULT now(),
        token_name text,
        role       text,
        action     text NOT NULL,
        target     text,
        outcome    text NOT NULL,
        status     integer NOT NULL,
        client     text,
        detail     text
    );
    CREATE INDEX audit_at_idx ON etl_meta.audit (at DESC, id DESC);
    """,
]


class TokenError(Exception):
    """A token request that cannot be honoured (a name in use, an unknown name)."""


@dataclass(frozen=True)
class TokenInfo:
    name: str
    role: Role
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


def migrate(conn: psycopg.Connection) -> None:
    """History's `etl_meta` first, then the API's tables; safe from many processes at once."""
    history.migrate(conn)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("etl_meta", "api_migrate"),))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS etl_meta.api_schema_version ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM etl_meta.api_schema_version").fetchone()
        current = row[0] if row else 0  # an aggregate always returns its one row
        for version, statement in enumerate(MIGRATIONS, start=1):
            if version > current:
                conn.execute(statement)
                conn.execute("INSERT INTO etl_meta.api_schema_version (version) VALUES (%s)", (version,))


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def create(conn: psycopg.Connection, name: str, role: Role) -> str:
    """A new token for `name`; the only time its value exists outside the caller's hands."""
    token = secrets.token_urlsafe(32)
    with conn.transaction():
        row = conn.execute(
            "SELECT revoked_at FROM etl_meta.api_tokens WHERE name = %s FOR UPDATE", (name,)
        ).fetchone()
        if row is not None and row[0] is None:
            raise TokenError(f"a token named {name!r} already exists; revoke it first")
        # A revoked name may be issued again: its old token stays refused (its hash is gone).
        conn.execute(
            "INSERT INTO etl_meta.api_tokens (name, role, token_hash) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, token_hash = EXCLUDED.token_hash, "
            "created_at = now(), last_used_at = NULL, revoked_at = NULL",
            (name, role.value, digest(token)),
        )
    return token


def revoke(conn: psycopg.Connection, name: str) -> None:
    cur = conn.execute(
        "UPDATE etl_meta.api_tokens SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL", (name,)
    )
    if cur.rowcount == 0:
        raise TokenError(f"no active token named {name!r}")


def list_tokens(conn: psycopg.Connection) -> list[TokenInfo]:
    rows = conn.execute(
        "SELECT name, role, created_at, last_used_at, revoked_at FROM etl_meta.api_tokens ORDER BY name"
    ).fetchall()
    return [TokenInfo(r[0], Role(r[1]), r[2], r[3], r[4]) for r in rows]


def verify(conn: psycopg.Connection, token: str) -> tuple[str, Role] | None:
    """The (name, role) of an active token, or None.

    Every stored hash is compared, in constant time, so timing tells nothing about which
    bytes matched; there are a handful of tokens, not millions.
    """
    presented = digest(token)
    found: tuple[str, Role] | None = None
    rows = conn.execute("SELECT name, role, token_hash, revoked_at FROM etl_meta.api_tokens").fetchall()
    for name, role, stored, revoked_at in rows:
        if hmac.compare_digest(bytes(stored), presented) and revoked_at is None:
            found = (name, Role(role))
    if found:
        conn.execute("UPDATE etl_meta.api_tokens SET last_used_at = now() WHERE name = %s", (found[0],))
    return found
