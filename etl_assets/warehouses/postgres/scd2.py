"""`load.strategy: scd2` on PostgreSQL: every version of a key kept, in one transaction.

A version holds the business columns plus `valid_from`, `valid_to` (NULL while current) and
`is_current`; the key of the table is (primary key, valid_from). A staged row is valid from
its `timestamp_column` value, else from the partition's window start. It is

- the same as the version valid from the same instant: nothing is written (a rerun);
- a correction of that version (same instant, other values): the version is updated in place;
- equal to the version in effect at its instant (by record_hash): nothing is written;
- otherwise a new version. Then each touched key's versions are re-chained: a version ends
  where the next begins, or where it ended before (a key deleted by `delete_missing`).

So a late older window slots its versions in before the newer ones instead of replacing them.
"""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg import sql

from etl_assets.warehouses.postgres.sql_client import first_row

VERSION_DDL = [
    ("valid_from", "timestamp with time zone NOT NULL"),
    ("valid_to", "timestamp with time zone"),
    ("is_current", "boolean NOT NULL"),
]
VERSION_COLUMNS = [c for c, _ in VERSION_DDL]


def _names(cols: list[str], alias: str | None = None) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(alias, c) if alias else sql.Identifier(c) for c in cols)


def _match(key: list[str], a: str, b: str) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(a, k), sql.Identifier(b, k)) for k in key
    )


def load_versions(
    conn: psycopg.Connection, tgt: sql.Composable, *, key: list[str], cols: list[str], gone: list[str],
    run_id: str, window_start: dt.datetime, delete_missing: bool,
) -> tuple[int, int, int, int]:
    """Apply the staged rows (`_stage`, with valid_from) as versions: (opened, corrected, closed, same).

    `gone` columns (no longer in the source) are NULL in the versions written.
    """
    stored = cols + ["record_hash"] + gone
    staged = [sql.Identifier("s", c) for c in cols + ["record_hash"]] + [sql.NULL for _ in gone]
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE _scd ON COMMIT DROP AS SELECT {s_key}, s.valid_from, "
            "CASE WHEN e.valid_from IS NOT NULL THEN "
            " CASE WHEN ({e_row}) IS NOT DISTINCT FROM ({s_row}) THEN 'same' ELSE 'correct' END "
            "WHEN p.record_hash IS NOT DISTINCT FROM s.record_hash THEN 'same' ELSE 'new' END AS state, "
            "p.valid_to AS inherit_to "
            "FROM _stage s LEFT JOIN {tgt} e ON {se} AND e.valid_from = s.valid_from "
            "LEFT JOIN LATERAL (SELECT t.record_hash, t.valid_to FROM {tgt} t WHERE {st} "
            " AND t.valid_from < s.valid_from AND (t.valid_to IS NULL OR t.valid_to > s.valid_from) "
            " ORDER BY t.valid_from DESC LIMIT 1) p ON true"
        ).format(
            s_key=_names(key, "s"), e_row=_names(stored, "e"), s_row=sql.SQL(", ").join(staged),
            tgt=tgt, se=_match(key, "s", "e"), st=_match(key, "s", "t"),
        )
    )
    conn.execute("ANALYZE _scd")
    corrected = conn.execute(
        sql.SQL(
            "UPDATE {tgt} AS t SET {assign}, _partition = s._partition, _loaded_at = now(), _run_id = %(run)s "
            "FROM _stage s JOIN _scd c ON {sc} AND c.valid_from = s.valid_from "
            "WHERE c.state = 'correct' AND {ts} AND t.valid_from = s.valid_from"
        ).format(
            tgt=tgt, sc=_match(key, "s", "c"), ts=_match(key, "t", "s"),
            assign=sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(c), v)
                for c, v in zip(stored, staged) if c not in key
            ),
        ),
        {"run": run_id},
    ).rowcount
    opened = conn.execute(
        sql.SQL(
            "INSERT INTO {tgt} ({all_cols}) SELECT {vals}, s._partition, now(), %(run)s, s.valid_from, "
            "c.inherit_to, c.inherit_to IS NULL "
            "FROM _stage s JOIN _scd c ON {sc} AND c.valid_from = s.valid_from WHERE c.state = 'new'"
        ).format(
            tgt=tgt, sc=_match(key, "s", "c"), vals=sql.SQL(", ").join(staged),
            all_cols=_names(stored + ["_partition", "_loaded_at", "_run_id"] + VERSION_COLUMNS),
        ),
        {"run": run_id},
    ).rowcount
    closed = _rechain(conn, tgt, key) if opened else 0
    if delete_missing:
        # The full source no longer has these keys: their current versions end at this window,
        # unless they began later (a late older window says nothing about newer versions).
        closed += conn.execute(
            sql.SQL(
                "UPDATE {tgt} AS t SET valid_to = %(ws)s, is_current = false "
                "WHERE t.is_current AND t.valid_from < %(ws)s "
                "AND NOT EXISTS (SELECT 1 FROM _stage s WHERE {ts})"
            ).format(tgt=tgt, ts=_match(key, "t", "s")),
            {"ws": window_start},
        ).rowcount
    same = int(first_row(conn.execute("SELECT count(*) FROM _scd WHERE state = 'same'"))[0])
    conn.execute("DROP TABLE _scd")
    return opened, corrected, closed, same


def _rechain(conn: psycopg.Connection, tgt: sql.Composable, key: list[str]) -> int:
    """Make each touched key's versions end where the next begins; the versions closed.

    A version keeps an earlier end it already had (its key was deleted then); only rows whose
    validity changes are written, so versions nobody touched keep their `_loaded_at`.
    """
    row = first_row(conn.execute(
        sql.SQL(
            "WITH v AS (SELECT {t_key}, t.valid_from, t.valid_to AS old_to, "
            " nullif(least(coalesce(t.valid_to, 'infinity'), "
            "  coalesce(lead(t.valid_from) OVER (PARTITION BY {t_key} ORDER BY t.valid_from), 'infinity')),"
            "  'infinity') AS new_to, "
            " EXISTS (SELECT 1 FROM _scd c WHERE c.state = 'new' AND {tc} AND c.valid_from = t.valid_from) AS fresh "
            " FROM {tgt} t WHERE ({t_key}) IN (SELECT {key} FROM _scd WHERE state = 'new')), "
            "up AS (UPDATE {tgt} AS t SET valid_to = v.new_to, is_current = v.new_to IS NULL FROM v "
            " WHERE {tv} AND t.valid_from = v.valid_from "
            " AND (v.new_to IS DISTINCT FROM v.old_to OR t.is_current IS DISTINCT FROM (v.new_to IS NULL)) "
            " RETURNING v.old_to IS NULL AND v.new_to IS NOT NULL AND NOT v.fresh AS closed) "
            "SELECT count(*) FILTER (WHERE closed) FROM up"
        ).format(
            t_key=_names(key, "t"), key=_names(key), tgt=tgt,
            tc=_match(key, "t", "c"), tv=_match(key, "t", "v"),
        )
    ))
    return int(row[0])
