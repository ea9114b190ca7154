"""The audit trail: one row per request that changes something, allowed or refused."""

from __future__ import annotations

import psycopg

from etl_assets.api.models import AuditEntry
from etl_assets.core.secrets import redact


def outcome_of(status: int) -> str:
    if status < 400:
        return "allowed"
    if status in (401, 403, 429):
        return "refused"
    return "failed"


def record(
    conn: psycopg.Connection,
    *,
    action: str,
    target: str | None,
    status: int,
    token_name: str | None,
    role: str | None,
    client: str | None,
    detail: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO etl_meta.audit (token_name, role, action, target, outcome, status, client, detail) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (token_name, role, action, target, outcome_of(status), status, client,
         redact(detail)[:2000] if detail else None),
    )


def entries(conn: psycopg.Connection, *, limit: int, offset: int) -> list[AuditEntry]:
    cur = conn.execute(
        "SELECT id, at, token_name, role, action, target, outcome, status, client, detail "
        "FROM etl_meta.audit ORDER BY at DESC, id DESC LIMIT %s OFFSET %s",
        (limit, offset),
    )
    names = [d.name for d in cur.description or ()]
    return [AuditEntry(**dict(zip(names, row))) for row in cur.fetchall()]
