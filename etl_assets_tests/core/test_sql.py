"""Named parameters in spec SQL become bound psycopg parameters."""

from __future__ import annotations

import pytest

from etl_assets.core.sql import UnknownParameter, bind_named, rewrite_named
from etl_assets_tests.helpers import ADMIN_URL


def test_named_parameters_casts_and_percent_literals() -> None:
    import psycopg

    stmt, params = bind_named(
        "SELECT :a::int + 1 AS x, 'it''s :not_a_param' AS y, 'x%' LIKE 'x%%' AS z, 5 % 3 AS m", {"a": 41, "b": 0}
    )
    assert params == {"a": 41}
    with psycopg.connect(ADMIN_URL) as conn:
        assert conn.execute(stmt, params).fetchone() == (42, "it's :not_a_param", True, 2)


def test_unknown_parameter_names_the_choices() -> None:
    with pytest.raises(UnknownParameter) as e:
        bind_named("SELECT :window_begin", {"window_start": 1, "window_end": 2})
    assert str(e.value) == "unknown parameter :window_begin (available: :window_start, :window_end)"


def test_one_tokenizer_serves_every_placeholder_style() -> None:
    text, used = rewrite_named(
        "SELECT :a, ':b', x::date, 5 % 2", {"a": 1, "b": 2}, lambda n: "{" + n + ":Int64}"
    )
    assert text == "SELECT {a:Int64}, ':b', x::date, 5 % 2"
    assert used == {"a": 1}
