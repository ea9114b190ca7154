"""Secrets from the environment never reach `inputs` (metadata) or error messages."""

from __future__ import annotations

import json
import uuid

import pymysql
import pytest
import requests

from etl_assets.core.errors import describe, is_transient
from etl_assets.sources import http, mysql, postgres, sql
from etl_assets.sources.base import SourceDataError
from etl_assets_tests.helpers import PG_HOST, PG_PORT, create_orders
from etl_assets_tests.sources.conftest import MYSQL, Api, MariaDB, _quote, request, source

PASSWORD = "pw-Zq81-x7Lk"
TOKEN = "tok-91bd2e47aa"


def assert_clean(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and TOKEN not in text, text


def test_database_passwords_stay_out_of_inputs_and_errors(pg: str, monkeypatch) -> None:
    monkeypatch.setenv("DB_PW", PASSWORD)
    create_orders(pg, [])
    db = pg.rsplit("/", 1)[1]
    url = f"postgresql://postgres:${{DB_PW}}@{PG_HOST}:{PG_PORT}/{db}"  # trust auth accepts any
    src = source(
        kind="postgres",
        connection={"url": url},
        table="src.orders",
        timestamp_column="updated_at",
        primary_key=["order_id"],
    )
    ex = postgres.extract(src, request())
    assert ex.inputs["connection"] == f"postgresql://postgres:***@{PG_HOST}:{PG_PORT}/{db}"
    with pytest.raises(SourceDataError) as e:
        postgres.extract(src.model_copy(update={"table": "src.gone"}), request())
    gone = src.model_copy(
        update={
            "connection": src.connection.model_copy(update={"url": url.replace(db, db + "_gone")})
        }
    )
    with pytest.raises(SourceDataError) as e2:
        postgres.extract(gone, request())

    generic = source(
        kind="sql",
        connection={"url": url.replace("postgresql:", "postgresql+psycopg:")},
        table="src.orders",
        timestamp_column="updated_at",
        primary_key=["order_id"],
    )
    ex2 = sql.extract(generic, request())
    assert ex2.inputs["connection"] == f"postgresql+psycopg://postgres:***@{PG_HOST}:{PG_PORT}/{db}"
    with pytest.raises(SourceDataError) as e3:
        sql.extract(generic.model_copy(update={"table": "src.gone"}), request())
    assert_clean(
        json.dumps(ex.inputs), json.dumps(ex2.inputs), str(e.value), str(e2.value), str(e3.value)
    )


@pytest.fixture
def mysql_user(mariadb: MariaDB):
    user = f"etl_{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(**MYSQL, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, PASSWORD))
        cur.execute(f"GRANT SELECT ON {_quote(mariadb.name)}.* TO %s@'%%'", (user,))
    try:
        yield user
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (user,))
        conn.close()


def test_mysql_password_stays_out_of_inputs_and_errors(
    mariadb: MariaDB, mysql_user: str, monkeypatch
) -> None:
    mariadb.execute(
        "CREATE TABLE t (id INT, at DATETIME)", "INSERT INTO t VALUES (1, '2025-01-06 10:00:00')"
    )
    monkeypatch.setenv("MY_PW", PASSWORD)
    src = source(
        kind="mysql",
        connection={"url": mariadb.url(mysql_user, "${MY_PW}")},
        table="t",
        timestamp_column="at",
    )
    ex = mysql.extract(src, request())
    assert ex.frame["id"].tolist() == [1]
    assert ex.inputs["connection"] == f"mysql://{mysql_user}:***@127.0.0.1:3306/{mariadb.name}"
    with pytest.raises(SourceDataError) as e:
        mysql.extract(src.model_copy(update={"table": "gone"}), request())
    monkeypatch.setenv("MY_PW", PASSWORD + "-wrong")
    with pytest.raises(SourceDataError) as e2:
        mysql.extract(src, request())
    assert "Access denied" in str(e2.value)
    assert_clean(json.dumps(ex.inputs), str(e.value), str(e2.value))


def test_bearer_tokens_and_query_keys_stay_out_of_inputs_and_errors(api: Api, monkeypatch) -> None:
    monkeypatch.setenv("API_TOKEN", TOKEN)
    monkeypatch.setenv("API_PW", PASSWORD)
    fields = {
        "kind": "http",
        "url": api.url + "/items",
        "params": {"key": "${API_PW}"},
        "auth": {"type": "bearer", "token": "${API_TOKEN}"},
        "mode": "full",
    }
    api.handler = lambda seen: (200, [{"id": 1}], {})
    ex = http.extract(source(**fields), request())
    assert api.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert api.requests[0].query["key"] == PASSWORD
    assert ex.inputs["params"] == {"key": "***"}
    assert ex.inputs["pages"][0]["url"] == f"{api.url}/items?key=***"
    # A server that echoes the credentials back in its error body.
    api.handler = lambda seen: (
        400,
        {"error": f"bad {seen.headers['Authorization']} {seen.query}"},
        {},
    )
    with pytest.raises(SourceDataError) as e:
        http.extract(source(**fields), request())
    assert "Bearer ***" in str(e.value)
    api.handler = lambda seen: (401, {}, {})
    with pytest.raises(SourceDataError) as e2:
        http.extract(source(**fields), request())
    with pytest.raises(requests.ConnectionError) as e3:
        http.extract(source(**{**fields, "url": "http://127.0.0.1:1/items"}), request())
    assert "127.0.0.1" in str(e3.value)
    assert_clean(json.dumps(ex.inputs), str(e.value), str(e2.value), str(e3.value))


def test_a_whole_url_secret_with_a_bad_escape_is_masked_in_errors(pg: str, monkeypatch) -> None:
    db = pg.rsplit("/", 1)[1]
    for password in ("pw%zz-Qr81", "pw with spaces 81"):
        monkeypatch.setenv("WHOLE_URL", f"postgresql://postgres:{password}@{PG_HOST}:{PG_PORT}/{db}")
        src = source(
            kind="postgres", connection={"url": "${WHOLE_URL}"}, table="src.orders",
            timestamp_column="updated_at", primary_key=["order_id"],
        )
        with pytest.raises(Exception) as e:
            postgres.extract(src, request())
        shown = describe(e.value)  # the message a failed step reports
        assert "***" in shown and not is_transient(e.value)
        assert password not in shown and password.split()[0] not in shown


def test_a_password_in_the_query_string_is_masked_in_inputs(pg: str, monkeypatch) -> None:
    monkeypatch.setenv("DB_PW", PASSWORD)
    create_orders(pg, [])
    db = pg.rsplit("/", 1)[1]
    url = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{db}?password=${{DB_PW}}"
    src = source(
        kind="postgres", connection={"url": url}, table="src.orders",
        timestamp_column="updated_at", primary_key=["order_id"],
    )
    ex = postgres.extract(src, request())
    assert ex.inputs["connection"] == f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{db}?password=***"
    assert_clean(json.dumps(ex.inputs))
    monkeypatch.setenv("WHOLE_URL", url.replace("${DB_PW}", PASSWORD))
    whole = src.model_copy(update={"connection": src.connection.model_copy(update={"url": "${WHOLE_URL}"})})
    assert_clean(json.dumps(postgres.extract(whole, request()).inputs))


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://etl@db/shop?password=hunter2",
        "postgresql://etl@db/shop?sslmode=require&pwd=hunter2",
        "mysql://etl@db/shop?token=hunter2",
    ],
)
def test_a_literal_password_in_a_query_string_is_a_spec_error(url: str) -> None:
    from etl_assets.spec import SpecError

    with pytest.raises(SpecError, match="the URL holds a literal password"):
        source(kind="postgres", connection={"url": url}, table="src.orders", mode="full")


def test_a_short_key_echoed_by_the_server_is_masked_as_a_word(api: Api, monkeypatch) -> None:
    monkeypatch.setenv("SHORT_KEY", "k9Q")
    fields = {
        "kind": "http",
        "url": api.url + "/items",
        "auth": {"type": "api_key", "header": "X-API-Key", "value": "${SHORT_KEY}"},
        "mode": "full",
    }
    api.handler = lambda seen: (400, {"error": f"key {seen.headers['X-API-Key']} is unknown"}, {})
    with pytest.raises(SourceDataError) as e:
        http.extract(source(**fields), request())
    assert api.requests[0].headers["X-API-Key"] == "k9Q"
    assert str(e.value).endswith('{"error": "key *** is unknown"}')
    from etl_assets.core.secrets import redact

    assert redact("tabk9Qcase k9Q") == "tabk9Qcase ***"  # whole words only below 6 characters


def test_a_header_value_with_spaces_and_equals_signs_is_masked_whole(api: Api, monkeypatch) -> None:
    """`Bearer …==` looks like a DSN (a space and `=`) but holds no `password=`: mask it all."""
    from etl_assets.core.secrets import redact

    monkeypatch.setenv("AUTH_HEADER", "Bearer c2VjcmV0LXRva2VuLXZhbHVl==")
    source(
        kind="http", url=api.url + "/orders", timestamp_column="updated_at",
        headers={"Authorization": "${AUTH_HEADER}"},
    )
    assert "c2VjcmV0LXRva2VuLXZhbHVl" not in redact("sent Bearer c2VjcmV0LXRva2VuLXZhbHVl== to the API")


def test_the_warehouse_url_follows_the_connection_rules(monkeypatch) -> None:
    """A ClickHouse URL may not hold a literal password anywhere; its `${ENV}` password is masked."""
    from etl_assets.core.secrets import redact
    from etl_assets.spec import SpecError
    from etl_assets_tests.helpers import make_spec

    with pytest.raises(SpecError, match="the URL holds a literal password"):
        make_spec(warehouse={"kind": "clickhouse", "url": "clickhouse://ch:8123/db?password=hunter2"})
    monkeypatch.setenv("CH_PW_TEST", "q7Z")
    make_spec(warehouse={"kind": "clickhouse", "url": "clickhouse://etl:${CH_PW_TEST}@ch:8123/db"})
    assert redact("authentication failed: password q7Z is wrong") == "authentication failed: password *** is wrong"
