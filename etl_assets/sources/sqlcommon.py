"""What the `sql` and `mysql` sources share: the spec's URL and the window statement.

Both build their statement with SQLAlchemy Core, so each dialect quotes identifiers its
own way; `:name` parameters of a `query:` are checked and bound by `core.sql`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from etl_assets.core.errors import SourceDataError
from etl_assets.core.secrets import redact, resolve
from etl_assets.core.sql import UnknownParameter, rewrite_named
from etl_assets.spec import ENV_REF

if TYPE_CHECKING:
    from etl_assets.spec import MysqlSource, SqlSource

ALLOWED_PARAMS = ("window_start", "window_end", "last_sync")


def parse_url(text: str, *, where: str) -> sa.URL:
    """The spec's URL with `${VAR}`s resolved per component, so a password needs no escaping."""
    try:
        if ENV_REF.fullmatch(text.strip()):
            return sa.make_url(resolve(text.strip(), where=where))
        url = sa.make_url(text)
    except sa.exc.ArgumentError:
        raise SourceDataError(f"{where}: not a valid database URL") from None
    return url.set(
        username=_resolved(url.username, where),
        password=_resolved(url.password, where),
        host=_resolved(url.host, where),
        database=_resolved(url.database, where),
        query={
            k: (tuple(_resolved(x, where) for x in v) if isinstance(v, tuple) else _resolved(v, where))
            for k, v in url.query.items()
        },
    )


def _resolved(value: Any, where: str) -> Any:
    return resolve(value, where=where) if isinstance(value, str) else value


def shown_url(url: sa.URL) -> str:
    return redact(url.render_as_string(hide_password=True))


def _colon(name: str) -> str:
    return ":" + name


def _escape_colons(text: str) -> str:
    # SQLAlchemy would bind a `:name` inside quotes; `\:` tells it the colon is text.
    return text.replace(":", "\\:")


def text_query(query: str, allowed: tuple[str, ...] = ALLOWED_PARAMS) -> sa.TextClause:
    """A `query:` with `:window_start`-style parameters, each one bound by the driver."""
    try:
        text, _ = rewrite_named(query, dict.fromkeys(allowed), _colon, _escape_colons)
    except UnknownParameter as e:
        raise SourceDataError(f"query: {e}") from None
    return sa.text(text)


def window_select(
    table: str, columns: list[str] | None, timestamp_column: str | None
) -> sa.Select[Any]:
    """`SELECT cols FROM table [WHERE ts >= :window_start AND ts < :window_end]`."""
    schema, _, name = table.rpartition(".")
    names = list(columns or [])
    extra = [timestamp_column] if timestamp_column and timestamp_column not in names else []
    t = sa.table(name, *(sa.column(n) for n in names + extra), schema=schema or None)
    stmt = sa.select(*(t.c[n] for n in names)) if names else sa.select(sa.literal_column("*"))
    stmt = stmt.select_from(t)
    if timestamp_column:
        ts = t.c[timestamp_column]
        stmt = stmt.where(ts >= sa.bindparam("window_start"), ts < sa.bindparam("window_end"))
    return stmt


def statement(source: MysqlSource | SqlSource) -> sa.TextClause | sa.Select[Any]:
    if source.query:
        return text_query(source.query)
    return window_select(
        source.table or "",  # the spec requires exactly one of table and query
        [c.source_name for c in source.columns] if source.columns else None,
        source.timestamp_column_source if source.mode == "incremental" else None,
    )
