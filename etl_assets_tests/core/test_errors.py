"""One function decides what is transient; real errors from real clients are classified."""

from __future__ import annotations

import socket

import psycopg
import pymysql
import pytest
import requests

from etl_assets.core.errors import is_transient, retry_after
from etl_assets.core.secrets import MissingSecret
from etl_assets.sources.base import SourceDataError, TransientSourceError
from etl_assets_tests.helpers import ADMIN_URL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raised(fn) -> BaseException:
    try:
        fn()
    except BaseException as e:
        return e
    raise AssertionError("expected an exception")


def test_refused_postgres_connection_is_transient() -> None:
    port = _free_port()
    e = _raised(lambda: psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/x", connect_timeout=2))
    assert isinstance(e, psycopg.OperationalError)
    assert is_transient(e)


def test_missing_table_and_bad_login_are_permanent() -> None:
    with psycopg.connect(ADMIN_URL) as conn:
        e = _raised(lambda: conn.execute("SELECT * FROM no_such_table_here"))
    assert isinstance(e, psycopg.errors.UndefinedTable)
    assert not is_transient(e)
    e = _raised(lambda: psycopg.connect("postgresql://postgres@127.0.0.1:5432/no_such_db_here"))
    assert not is_transient(e)


def test_serialization_failure_and_statement_timeout_are_transient() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute("SET statement_timeout = 50")
        e = _raised(lambda: conn.execute("SELECT pg_sleep(1)"))
        assert isinstance(e, psycopg.errors.QueryCanceled)
        assert is_transient(e)
        e = _raised(lambda: conn.execute("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40001'; END $$"))
        assert isinstance(e, psycopg.errors.SerializationFailure)
        assert is_transient(e)
        e = _raised(lambda: conn.execute("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40P01'; END $$"))
        assert is_transient(e)


def test_mysql_errors() -> None:
    e = _raised(lambda: pymysql.connect(host="127.0.0.1", port=_free_port(), user="root", connect_timeout=2))
    assert is_transient(e)
    e = _raised(lambda: pymysql.connect(host="127.0.0.1", port=3306, user="nobody_here", password="x"))
    assert not is_transient(e)  # 1045 access denied


@pytest.mark.parametrize(
    ("status", "transient"), [(408, True), (429, True), (500, True), (503, True), (400, False), (401, False), (404, False)]
)
def test_http_status(status: int, transient: bool) -> None:
    response = requests.Response()
    response.status_code = status
    response.headers["Retry-After"] = "7"
    e = requests.HTTPError(response=response)
    assert is_transient(e) is transient
    assert retry_after(e) == 7.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("1.5", 1.5), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("soon", None), ("", None)],
)
def test_retry_after_reads_seconds_and_http_dates(header: str, seconds: float | None) -> None:
    response = requests.Response()
    response.status_code = 503
    response.headers["Retry-After"] = header
    assert retry_after(requests.HTTPError(response=response)) == seconds


def test_plain_errors() -> None:
    assert is_transient(ConnectionRefusedError())
    assert is_transient(TimeoutError())
    assert is_transient(socket.gaierror(-2, "Name or service not known"))
    assert is_transient(TransientSourceError("429", retry_after=1))
    assert not is_transient(SourceDataError("bad column"))
    assert not is_transient(MissingSecret("x"))
    assert not is_transient(KeyError("a bug is not a blip"))
    assert not is_transient(ValueError("malformed"))
