"""Normalize: types, UTC, de-duplication and a record_hash that never drifts."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl_assets.sources.base import SourceDataError
from etl_assets.transform.normalize import (
    SEPARATOR,
    CastError,
    _canonical,
    cast_column,
    normalize,
    record_hashes,
)
from etl_assets_tests.helpers import make_spec


def _record_hashes_reference(frame: pd.DataFrame, types: dict[str, str]) -> pd.Series:
    """The plain pandas definition of `record_hash`, one value at a time: the product's
    vectorised `record_hashes` must match it exactly."""
    cols = [c for c in types if c in frame.columns]
    if not len(frame):
        return pd.Series([], index=frame.index, dtype="string")
    joined = _canonical(frame[cols[0]], types[cols[0]])
    for c in cols[1:]:
        joined = joined.str.cat(_canonical(frame[c], types[c]), sep=SEPARATOR)
    return pd.Series(
        [hashlib.md5(s.encode("utf-8")).hexdigest() for s in joined], index=frame.index, dtype="string"
    )


def _source():
    return make_spec().sources[0]


def test_types_utc_trim_and_dedup() -> None:
    raw = pd.DataFrame(
        {
            "order_id": ["1", "2", "2", "3", "3"],
            "customer": ["  ann ", "bob", "bob", "cy", "cy"],
            "amount": ["10.5", "3", "3", "7", "8"],
            "updated_at": [
                "2025-03-09 01:30:00",  # local New York time, before the DST jump
                "2025-03-09 03:30:00",
                "2025-03-09 03:30:00",  # exact duplicate of the row above
                "2025-03-10T12:00:00+00:00",
                "2025-03-11T12:00:00+00:00",  # same key, later: wins
            ],
        }
    )
    out = normalize(raw, _source(), "America/New_York")
    f = out.frame
    assert list(f["order_id"]) == [1, 2, 3]
    assert f["customer"].tolist() == ["ann", "bob", "cy"]
    assert f["amount"].tolist() == [10.5, 3.0, 8.0]
    assert str(f["updated_at"].dt.tz) == "UTC"
    assert f["updated_at"].iloc[0] == pd.Timestamp("2025-03-09 06:30:00", tz="UTC")
    assert f["updated_at"].iloc[1] == pd.Timestamp("2025-03-09 07:30:00", tz="UTC")
    assert {k: out.stats[k] for k in ("rows_in", "exact_duplicates_dropped", "key_duplicates_collapsed", "rows_out")} == {
        "rows_in": 5,
        "exact_duplicates_dropped": 1,
        "key_duplicates_collapsed": 1,
        "rows_out": 3,
    }
    assert out.stats["missing_columns"] == []
    assert set(out.stats["raw_columns"]) == {"order_id", "customer", "amount", "updated_at"}


def test_record_hash_is_a_fixed_function_of_the_values() -> None:
    """A literal expected hash: if this changes, every warehouse row would look 'updated'."""
    frame = pd.DataFrame(
        {
            "order_id": pd.array([1, None], dtype="Int64"),
            "customer": pd.array(["ann", None], dtype="string"),
            "amount": pd.array([0.1, 2.0], dtype="Float64"),
            "updated_at": pd.to_datetime(["2025-01-05T10:00:00Z", "2025-01-05T10:00:00.5Z"], utc=True, format="ISO8601"),
        }
    )
    types = {"order_id": "integer", "customer": "string", "amount": "float", "updated_at": "timestamp"}
    hashes = record_hashes(frame, types).tolist()
    expected_text = "1\x1fann\x1f0.1\x1f2025-01-05T10:00:00.000000Z"
    assert hashes[0] == hashlib.md5(expected_text.encode()).hexdigest()
    assert hashes[1] == hashlib.md5(b"\\N\x1f\\N\x1f2.0\x1f2025-01-05T10:00:00.500000Z").hexdigest()


def test_vectorised_record_hash_equals_the_plain_definition() -> None:
    """Every value class where Arrow and Python could print differently hashes as in Python."""
    rng = np.random.default_rng(7)
    n = 20_000
    floats = rng.normal(0, 1, n) * 10.0 ** rng.integers(-8, 22, n)
    floats[:16] = [0.0, -0.0, 1.0, 1e10, 9999999999.5, 1e16, 1e-4, 9.9e-5, np.inf, -np.inf,
                   0.1, 1 / 3, 5e-324, 1.7976931348623157e308, 42.0, 123456789012.25]
    raw = pd.DataFrame({
        "i": pd.array(rng.integers(-10**15, 10**15, n), dtype="Int64"),
        "s": pd.array([None if k % 17 == 0 else f"näme {k} \x1f,\"\n" for k in range(n)], dtype="string"),
        "f": pd.array(floats, dtype="Float64"),
        "b": pd.array([None if k % 5 == 0 else bool(k % 2) for k in range(n)], dtype="boolean"),
        "t": pd.to_datetime(rng.integers(-2 * 10**15, 4 * 10**15, n), unit="us", utc=True),
        "d": pd.Series([dt.date(1, 1, 1) + dt.timedelta(days=k * 37 % 3_000_000) if k % 13 else None
                        for k in range(n)], dtype=object),
    })
    raw.loc[raw.index % 11 == 0, "t"] = pd.NaT
    raw.loc[raw.index % 7 == 0, "f"] = pd.NA
    types = {"i": "integer", "s": "string", "f": "float", "b": "boolean", "t": "timestamp", "d": "date"}
    frame = raw.copy()
    for column, type_ in types.items():
        frame[column] = cast_column(frame[column], type_, column, "America/New_York")
    assert record_hashes(frame, types).tolist() == _record_hashes_reference(frame, types).tolist()
    # Nanosecond timestamps print their microseconds, as before.
    ns = pd.DataFrame({"t": pd.to_datetime(["2025-03-09T01:02:03.123456789Z", None], utc=True)})
    assert record_hashes(ns, {"t": "timestamp"}).tolist() == _record_hashes_reference(ns, {"t": "timestamp"}).tolist()


def test_cast_failure_names_column_value_and_count() -> None:
    raw = pd.DataFrame(
        {
            "order_id": ["1", "x2", "3", "4.5"],
            "customer": ["a", "b", "c", "d"],
            "amount": ["1", "2", "3", "4"],
            "updated_at": ["2025-01-06"] * 4,
        }
    )
    with pytest.raises(SourceDataError) as e:
        normalize(raw, _source(), "UTC")
    assert str(e.value) == (
        "column 'order_id': 2 row(s) cannot be read as integer, e.g. 'x2', '4.5' (first at row 2)"
    )


def test_missing_source_column_is_named() -> None:
    raw = pd.DataFrame({"order_id": ["1"], "customer": ["a"], "updated_at": [dt.datetime(2025, 1, 6)]})
    with pytest.raises(SourceDataError) as e:
        normalize(raw, _source(), "UTC")
    assert "source columns missing: amount" in str(e.value)


def test_not_nullable_column() -> None:
    raw = pd.DataFrame({"order_id": [None, "2"], "customer": ["a", "b"], "amount": ["1", "2"], "updated_at": ["2025-01-06"] * 2})
    with pytest.raises(SourceDataError) as e:
        normalize(raw, _source(), "UTC")
    assert "column 'order_id' is declared nullable: false but 1 row(s) are empty (first at row 1)" in str(e.value)


# --- property: any text in any declared type casts exactly or fails naming the row ----------

_FILLER = {"integer": "1", "float": "1.5", "boolean": "yes", "timestamp": "2025-01-06 12:00:00",
           "date": "2025-01-06", "string": "x"}
_NUMBERISH = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(repr),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.from_regex(r"\A\s?[+-]?[0-9]{0,21}(\.[0-9]{0,4})?([eE][+-]?[0-9]{1,3})?\s?\Z"),
)
_ANY_TEXT = st.one_of(
    st.text(max_size=24),
    _NUMBERISH,
    st.sampled_from(["true", " F ", "Yes", "N", "1", "0", "inf", "-Infinity", "nan", "0x10", "1_000",
                     "2025-01-06", "2025-02-30", "2025-01-06T10:00:00 EST", "5", "10:00", ""]),
)


ZONE = "America/Sao_Paulo"


def _decimal_value(text: str) -> decimal.Decimal | None:
    try:
        value = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        return None
    return value if value.is_finite() else None


def _assert_exact(type_: str, text: str, value: object) -> None:
    stripped = text.strip()
    if type_ == "string":
        assert value == stripped
    elif type_ == "integer":
        assert isinstance(value, int) and _decimal_value(text) == value
        assert -(2**63) <= value < 2**63
    elif type_ == "float":
        assert value == float(stripped)
        assert not math.isinf(value) or stripped.lower().lstrip("+-") in ("inf", "infinity")
    elif type_ == "boolean":
        assert value is (stripped.lower() in {"true", "t", "1", "yes", "y"})
        assert stripped.lower() in {"true", "t", "1", "yes", "y", "false", "f", "0", "no", "n"}
    elif type_ == "timestamp":
        # The instant the text names: with its own offset, else as wall-clock time in the zone.
        parsed = pd.Timestamp(stripped)
        if parsed.tzinfo is None:
            parsed = parsed.tz_localize(ZONE)
        assert isinstance(value, pd.Timestamp) and value.tzinfo is not None
        assert value == parsed
    elif type_ == "date":
        assert value == pd.Timestamp(stripped).date()
    else:
        raise AssertionError(f"no exactness rule for {type_}")


@settings(max_examples=300, deadline=None)
@given(
    type_=st.sampled_from(sorted(_FILLER)),
    text=_ANY_TEXT,
    position=st.integers(0, 3),
)
def test_any_text_casts_exactly_or_fails_naming_the_row(type_: str, text: str, position: int) -> None:
    rows = [_FILLER[type_]] * 4
    rows[position] = text
    try:
        out = cast_column(pd.Series(rows, dtype="string"), type_, "c", ZONE)
    except CastError as e:
        assert str(e).startswith(f"column 'c': 1 row(s) cannot be read as {type_}, e.g. {text!r}")
        assert str(e).endswith(f"(first at row {position + 1})")
        return
    value = out.iloc[position]
    _assert_exact(type_, text, value.item() if hasattr(value, "item") else value)


@settings(max_examples=150, deadline=None)
@given(value=st.integers(-(2**63), 2**63 - 1), pad=st.sampled_from(["", " ", "+"]))
def test_every_int64_in_text_casts_to_itself(value: int, pad: str) -> None:
    text = (pad if value >= 0 else "") + str(value)
    assert cast_column(pd.Series([text], dtype="string"), "integer", "c", "UTC").tolist() == [value]


@settings(max_examples=150, deadline=None)
@given(
    moment=st.datetimes(
        min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
        timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30))]),
    ),
    sep=st.sampled_from(["T", " "]),
)
def test_timestamps_with_an_offset_cast_to_their_instant(moment: dt.datetime, sep: str) -> None:
    out = cast_column(pd.Series([moment.isoformat(sep)], dtype="string"), "timestamp", "c", "UTC")
    assert out.iloc[0].to_pydatetime() == moment


@settings(max_examples=100, deadline=None)
@given(day=st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)))
def test_dates_cast_to_themselves(day: dt.date) -> None:
    assert cast_column(pd.Series([day.isoformat()], dtype="string"), "date", "c", "UTC").tolist() == [day]
