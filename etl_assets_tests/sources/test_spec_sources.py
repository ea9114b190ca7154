"""The source section of a spec: one minimal example per kind, and clear errors."""

from __future__ import annotations

import pytest
import yaml

from etl_assets.spec import SOURCE_KINDS, SpecError, parse_pipeline

# The README's "Source kinds" examples, verbatim.
EXAMPLES = {
    "postgres": """
- name: orders
  kind: postgres
  connection: {url: "postgresql://etl:${PG_PASSWORD}@db:5432/shop"}
  table: public.orders
  timestamp_column: updated_at
  primary_key: [order_id]
  batch_size: 100000
""",
    "mysql": """
- name: customers
  kind: mysql
  connection: {url: "mysql://etl:${MYSQL_PASSWORD}@mysql:3306/crm"}
  query: >
    SELECT id, name, changed_at FROM customers
    WHERE changed_at >= :window_start AND changed_at < :window_end
  timestamp_column: changed_at
  primary_key: [id]
""",
    "sql": """
- name: invoices
  kind: sql
  connection: {url: "oracle+oracledb://etl:${ORA_PASSWORD}@ora:1521/?service_name=BILLING"}
  table: billing.invoices
  timestamp_column: issued_at
  primary_key: [invoice_id]
""",
    "csv": """
- name: stock
  kind: csv
  path: "s3://drops/stock/stock_*.csv.gz"
  filename_date: "stock_%Y%m%d.csv.gz"
  delimiter: ";"
  encoding: latin-1
  primary_key: [sku]
""",
    "http": """
- name: tickets
  kind: http
  url: https://api.example.com/v2/tickets
  params: {updated_since: "{window_start}", updated_before: "{window_end}"}
  auth: {type: bearer, token: "${HELPDESK_TOKEN}"}
  record_path: data.items
  pagination: {type: cursor, cursor_path: meta.next_cursor, param: cursor}
  timestamp_column: updated_at
  primary_key: [id]
""",
    "full": """
- name: products
  kind: postgres
  connection: {url: "${CATALOG_URL}"}
  table: catalog.products
  mode: full
  primary_key: [sku]
  load: {delete_missing: true}
""",
}


def pipeline(sources: list) -> dict:
    return {
        "name": "shop",
        "partitions": {"cadence": "daily", "start": "2025-01-01"},
        "sources": sources,
    }


def error_of(sources: list) -> str:
    with pytest.raises(SpecError) as e:
        parse_pipeline(pipeline(sources), "p.yaml")
    return str(e.value)


@pytest.mark.parametrize("kind", list(EXAMPLES))
def test_the_documented_examples_parse(kind: str) -> None:
    spec = parse_pipeline(pipeline(yaml.safe_load(EXAMPLES[kind])), "p.yaml")
    s = spec.sources[0]
    assert s.kind == (kind if kind != "full" else "postgres")
    assert s.kind in SOURCE_KINDS


def test_example_details() -> None:
    http = parse_pipeline(pipeline(yaml.safe_load(EXAMPLES["http"])), "p.yaml").sources[0]
    assert (http.pagination.type, http.pagination.cursor_path, http.pagination.param) == (
        "cursor",
        "meta.next_cursor",
        "cursor",
    )
    assert http.timeout_seconds == 30 and http.max_pages == 1000
    csv = parse_pipeline(pipeline(yaml.safe_load(EXAMPLES["csv"])), "p.yaml").sources[0]
    assert csv.mode == "incremental" and csv.timestamp_column is None
    full = parse_pipeline(pipeline(yaml.safe_load(EXAMPLES["full"])), "p.yaml").sources[0]
    assert full.load.delete_missing is True


def base(**kw) -> dict:
    return {
        "name": "s",
        "kind": "http",
        "url": "https://x.test/a",
        "mode": "full",
        "load": {"strategy": "replace_partition"},
        **kw,
    }


@pytest.mark.parametrize(
    ("src", "message"),
    [
        (
            {
                **base(),
                "mode": "incremental",
                "timestamp_column": "t",
                "load": {"delete_missing": True, "strategy": "replace_partition"},
            },
            "sources[0]: load.delete_missing needs mode: full",
        ),
        (
            base(auth={"type": "bearer", "token": "abc123"}),
            'sources[0].auth: token must reference an environment variable, e.g. "${API_TOKEN}"',
        ),
        (
            base(auth={"type": "api_key", "token": "${T}"}),
            "sources[0].auth: api_key auth takes header and value (and no token)",
        ),
        (
            base(pagination={"type": "cursor", "cursor_path": "next", "limit": 5}),
            "sources[0].pagination: limit does not apply to pagination type cursor",
        ),
        (
            base(pagination={"type": "cursor"}),
            "sources[0].pagination: cursor pagination needs cursor_path "
            "(where the body holds the next cursor)",
        ),
        (
            base(pagination={"type": "page", "size": 50}),
            "sources[0].pagination: give size_param and size together",
        ),
        (
            base(pagination={"type": "scroll"}),
            "sources[0].pagination.type: must be one of page, offset, cursor, link",
        ),
        (
            base(url="ftp://x.test/a"),
            "sources[0].url: url must start with http:// or https://",
        ),
        (
            {
                "name": "s",
                "kind": "mysql",
                "connection": {"url": "postgresql://u@h/db"},
                "table": "t",
                "mode": "full",
                "load": {"strategy": "replace_partition"},
            },
            "sources[0].connection: url must look like mysql://user:${PASSWORD}@host:3306/db",
        ),
        (
            {
                "name": "s",
                "kind": "mysql",
                "connection": {"url": "mysql://u:hunter2@h/db"},
                "table": "t",
                "mode": "full",
                "load": {"strategy": "replace_partition"},
            },
            "sources[0].connection.url: the URL holds a literal password: reference "
            "an environment variable instead, e.g. postgresql://user:${PG_PASSWORD}@host/db",
        ),
        (
            {
                "name": "s",
                "kind": "sql",
                "connection": {"url": "sqlite:///x.db"},
                "table": "a.b.c",
                "mode": "full",
                "load": {"strategy": "replace_partition"},
            },
            "sources[0]: table 'a.b.c' must be table or schema.table",
        ),
        (
            {
                "name": "s",
                "kind": "csv",
                "path": "/x/*.csv",
                "filename_date": "x_%Y%m.csv",
                "load": {"strategy": "replace_partition"},
            },
            "sources[0]: filename_date needs %Y, %m and %d, e.g. orders_%Y%m%d.csv",
        ),
        (
            {
                "name": "s",
                "kind": "csv",
                "path": "/x/*.csv",
                "load": {"strategy": "replace_partition"},
            },
            "sources[0]: an incremental source needs timestamp_column (or set mode: full)",
        ),
    ],
)
def test_source_errors_name_the_field(src: dict, message: str) -> None:
    assert error_of([src]) == "p.yaml (pipeline shop): " + message
