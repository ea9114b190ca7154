"""Normalize: the spec's column mapping and types, UTC timestamps, de-duplication, record_hash.

`record_hash` is built from a canonical text form of each value, not from pandas' internal
hashing, so the same row hashes the same in every process and every pandas version.
"""

from __future__ import annotations

import decimal
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl_assets.core.errors import SourceDataError
from etl_assets.spec import SchemaCheck, SourceBase

NULL_TOKEN = "\\N"
SEPARATOR = "\x1f"
META_COLUMNS = ("record_hash", "_partition", "_loaded_at", "_run_id")
_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}
_INT64_MAX = 2**63 - 1
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_OFFSET = r"\d:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


@dataclass
class Normalized:
    frame: pd.DataFrame
    types: dict[str, str]
    stats: dict[str, int] = field(default_factory=dict)


class CastError(SourceDataError):
    def __init__(self, column: str, type_: str, bad: pd.Series):
        self.column, self.type, self.count = column, type_, len(bad)
        first_row = int(bad.index[0]) + 1
        sample = ", ".join(repr(v) for v in bad.head(3).tolist())
        super().__init__(
            f"column {column!r}: {len(bad)} row(s) cannot be read as {type_}, "
            f"e.g. {sample} (first at row {first_row})"
        )


def infer_type_name(dtype: str) -> str | None:
    """Our column type for a pandas dtype name (as stored in metadata), if it maps to one."""
    d = dtype.lower()
    if "int" in d:
        return "integer"
    if "float" in d or "double" in d:
        return "float"
    if "bool" in d:
        return "boolean"
    if "datetime" in d or "timestamp" in d:
        return "timestamp"
    if "date" in d:
        return "date"
    if "str" in d:
        return "string"
    return None


def infer_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series):
        return "integer"
    if pd.api.types.is_float_dtype(series):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "timestamp"
    if len(series.dropna()) and all(
        type(v).__name__ == "date" for v in series.dropna().head(20)
    ):
        return "date"
    return "string"


def cast_column(series: pd.Series, type_: str, column: str, tz: str) -> pd.Series:
    present = series.notna()
    if type_ == "string":
        out = series.astype("string").str.strip()
        return out
    if type_ == "integer":
        return _to_integer(series, column)
    if type_ == "float":
        return _to_float(series, column)
    if type_ == "boolean":
        if pd.api.types.is_bool_dtype(series):
            return series.astype("boolean")
        text = series.astype("string").str.strip().str.lower()
        out = pd.Series(pd.NA, index=series.index, dtype="boolean")
        out[text.isin(_TRUE).fillna(False)] = True
        out[text.isin(_FALSE).fillna(False)] = False
        bad = present & out.isna()
        if bad.any():
            raise CastError(column, "boolean", series[bad])
        return out
    if type_ == "timestamp":
        if pd.api.types.is_datetime64_any_dtype(series):
            parsed = series
            if parsed.dt.tz is None:
                parsed = _localize(parsed, tz)
            return parsed.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
        text = series.astype("string").str.strip()
        has_offset = text.str.contains(_OFFSET, regex=True).fillna(False).astype(bool)
        out = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us, UTC]")
        if has_offset.any():
            out[has_offset] = pd.to_datetime(text[has_offset], utc=True, errors="coerce", format="mixed")
        naive = ~has_offset & present
        if naive.any():
            local = pd.to_datetime(text[naive], errors="coerce", format="mixed")
            out[naive] = _localize(local, tz).dt.tz_convert("UTC")
        bad = present & out.isna()
        if bad.any():
            raise CastError(column, "timestamp", series[bad])
        return out
    if type_ == "date":
        parsed = pd.to_datetime(series.astype("string").str.strip(), errors="coerce", format="mixed")
        # Year 0 (which some text parses to) has no calendar date.
        bad = present & (parsed.isna() | (parsed.dt.year < 1).fillna(False))
        if bad.any():
            raise CastError(column, "date", series[bad])
        return pd.Series(
            [d.date() if not pd.isna(d) else None for d in parsed], index=series.index, dtype=object
        )
    raise ValueError(type_)


def _to_integer(series: pd.Series, column: str) -> pd.Series:
    """Exact int64 or a CastError: a value outside int64, fractional or not finite never
    wraps or rounds into the column."""
    present = series.notna()
    if pd.api.types.is_integer_dtype(series):
        if pd.api.types.is_unsigned_integer_dtype(series):
            bad = present & (series > _INT64_MAX)
            if bad.any():
                raise CastError(column, "integer", series[bad])
        return series.astype("Int64")
    if pd.api.types.is_float_dtype(series):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            # 2**63 is exact in float64, so the bounds compare without rounding.
            fits = np.isfinite(values) & (np.floor(values) == values) & (values >= -(2.0**63)) & (values < 2.0**63)
        bad = present & ~fits
        if bad.any():
            raise CastError(column, "integer", series[bad])
        out = pd.array(np.where(fits, values, 0).astype("int64"), dtype="Int64")
        out[~present.to_numpy(dtype=bool)] = pd.NA
        return pd.Series(out, index=series.index)
    text = series.astype("string").str.strip()
    out = pd.Series(pd.NA, index=series.index, dtype="Int64")
    # Up to 18 digits always fits int64: the vectorised path; anything longer or in another
    # form (1e3, 4.0) is read as an exact decimal, one value at a time.
    short = text.str.fullmatch(r"-?[0-9]{1,18}").fillna(False).astype(bool)
    if short.any():
        out[short] = text[short].astype("Int64")
    for i in np.flatnonzero((present & ~short).to_numpy(dtype=bool)):
        value = _exact_integer(text.iat[i])
        if value is not None:
            out.iat[i] = value
    bad = present & out.isna()
    if bad.any():
        raise CastError(column, "integer", series[bad])
    return out


def _exact_integer(text: str) -> int | None:
    """The integer a decimal literal denotes exactly, if it is whole and fits int64."""
    if not _DECIMAL.fullmatch(text):
        return None
    value = decimal.Decimal(text)
    if value != value.to_integral_value() or not -(2**63) <= value <= _INT64_MAX:
        return None
    return int(value)


def _to_float(series: pd.Series, column: str) -> pd.Series:
    """float64: the nearest double to each decimal (Arrow's parser rounds correctly). A
    decimal beyond float64's range is an error; only a literal infinity is infinite."""
    if pd.api.types.is_numeric_dtype(series):
        return series.astype("Float64")
    present = series.notna()
    text = series.astype("string").str.strip()
    finite = text.str.fullmatch(_DECIMAL.pattern).fillna(False).astype(bool)
    infinite = text.str.fullmatch(r"[+-]?inf(?:inity)?", case=False).fillna(False).astype(bool)
    readable = finite | infinite
    out = pd.Series(pd.NA, index=series.index, dtype="Float64")
    if readable.any():
        parsed = pc.cast(pa.array(text[readable].to_numpy(dtype=object)), pa.float64())
        out[readable] = parsed.to_numpy(zero_copy_only=False)
    bad = present & (out.isna() | (finite & out.isin([np.inf, -np.inf])).fillna(False))
    if bad.any():
        raise CastError(column, "float", series[bad])
    return out


def _localize(values: pd.Series, tz: str) -> pd.Series:
    """Values without an offset are wall-clock time in the pipeline's timezone. At a DST
    fall-back the earlier instant wins; a time skipped by spring-forward moves forward."""
    return values.dt.tz_localize(
        tz, ambiguous=np.ones(len(values), dtype=bool), nonexistent="shift_forward"
    )


def _canonical(series: pd.Series, type_: str) -> pd.Series:
    """A text form that does not depend on pandas' display or hashing rules."""
    nulls = series.isna()
    if type_ == "timestamp":
        text = series.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").astype(object)
    elif type_ == "float":
        text = pd.Series([repr(float(v)) if not pd.isna(v) else None for v in series], index=series.index, dtype=object)
    elif type_ == "boolean":
        text = series.map({True: "t", False: "f"}).astype(object)
    elif type_ == "date":
        text = pd.Series([v.isoformat() if v is not None and not pd.isna(v) else None for v in series], index=series.index, dtype=object)
    else:
        text = series.astype("string").astype(object)
    text = text.where(~nulls, NULL_TOKEN)
    return text.astype(str)


def _canonical_arrow(series: pd.Series, type_: str) -> pa.Array:
    """`_canonical`, vectorised: exactly the same text, held in Arrow for the join.

    Where Arrow prints differently (floats outside [1e-4, 1e10), where it and Python's repr
    pick exponent form differently), those values take the Python path.
    """
    if type_ == "timestamp":
        values = series.to_numpy(dtype="datetime64[us]", na_value=np.datetime64("NaT"))
        text = pa.array(np.char.add(np.datetime_as_string(values, unit="us"), "Z"), type=pa.large_string())
        return pc.if_else(pa.array(np.isnat(values)), pa.scalar(NULL_TOKEN, pa.large_string()), text)
    if type_ == "float":
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        magnitude = np.abs(values)
        plain = (magnitude == 0) | ((magnitude >= 1e-4) & (magnitude < 1e10))
        text = pc.cast(pa.array(values), pa.large_string())
        # Arrow's shortest form drops the ".0" that repr keeps on whole numbers.
        whole = pc.invert(pc.match_substring_regex(text, r"[.eE]"))
        text = pc.if_else(whole, pc.binary_join_element_wise(text, pa.scalar(".0", pa.large_string()), pa.scalar("", pa.large_string())), text)
        if not plain.all():
            odd = ~plain
            fixed = np.array(text.to_numpy(zero_copy_only=False), dtype=object)
            fixed[odd] = [NULL_TOKEN if np.isnan(v) else repr(float(v)) for v in values[odd]]
            text = pa.array(fixed, type=pa.large_string())
        return text
    arr = pa.array(series, from_pandas=True)
    if type_ in ("string", "integer") or (type_ == "date" and pa.types.is_date32(arr.type)):
        text = pc.cast(arr, pa.large_string())
    elif type_ == "boolean":
        text = pc.cast(pc.if_else(arr, pa.scalar("t"), pa.scalar("f")), pa.large_string())
    else:
        return pa.array(_canonical(series, type_).to_numpy(dtype=object), type=pa.large_string())
    return pc.fill_null(text, pa.scalar(NULL_TOKEN, pa.large_string()))


def record_hashes(frame: pd.DataFrame, types: dict[str, str]) -> pd.Series:
    cols = [c for c in types if c in frame.columns]
    if not len(frame):
        return pd.Series([], index=frame.index, dtype="string")
    parts = [_canonical_arrow(frame[c], types[c]) for c in cols]
    joined = pc.binary_join_element_wise(*parts, pa.scalar(SEPARATOR, pa.large_string())) if len(parts) > 1 else parts[0]
    md5 = hashlib.md5
    return pd.Series(
        [md5(s.encode("utf-8")).hexdigest() for s in joined.to_pylist()], index=frame.index, dtype="string"
    )


def normalize(frame: pd.DataFrame, source: SourceBase, tz: str) -> Normalized:
    raw_columns = {str(c): str(frame[c].dtype) for c in frame.columns}
    missing: list[str] = []
    types: dict[str, str]
    if source.columns:
        missing = [c.source_name for c in source.columns if c.source_name not in frame.columns]
        if missing and not _blocking_schema_check(source):
            raise SourceDataError(
                f"source columns missing: {', '.join(missing)} (found {', '.join(map(str, frame.columns))})"
            )
        # With a blocking schema check the gap is reported by that check, which stops the
        # load; the empty column only lets the other checks run and say what they see.
        frame = frame.reindex(columns=[c.source_name for c in source.columns]).copy()
        frame.columns = [c.name for c in source.columns]
        types = {c.name: c.type for c in source.columns}
    else:
        frame = frame.copy()
        types = {c: infer_type(frame[c]) for c in frame.columns}
    clash = [c for c in frame.columns if c in META_COLUMNS]
    if clash:
        raise SourceDataError(f"column {clash[0]!r} is reserved for load metadata; rename it")

    for col, type_ in types.items():
        frame[col] = cast_column(frame[col], type_, col, source.wall_clock_zone(col, tz))

    if source.columns:
        for c in source.columns:
            if not c.nullable and c.source_name not in missing and frame[c.name].isna().any():
                bad = frame[c.name][frame[c.name].isna()]
                raise SourceDataError(
                    f"column {c.name!r} is declared nullable: false but {len(bad)} row(s) are empty "
                    f"(first at row {int(bad.index[0]) + 1})"
                )

    stats: dict[str, Any] = {"rows_in": len(frame)}
    before = len(frame)
    frame = frame.drop_duplicates(ignore_index=True)
    stats["exact_duplicates_dropped"] = before - len(frame)
    before = len(frame)
    # No columns at all is a schemaless source's empty window: nothing to de-duplicate or
    # hash, and the load step skips such a frame rather than guess the target's schema.
    known = bool(len(frame.columns))
    if source.primary_key and known:
        if source.timestamp_column:
            frame = frame.sort_values(source.timestamp_column, kind="stable", na_position="first")
        frame = frame.drop_duplicates(subset=source.primary_key, keep="last")
        frame = frame.sort_values(source.primary_key, kind="stable").reset_index(drop=True)
    stats["key_duplicates_collapsed"] = before - len(frame)
    if known:
        frame["record_hash"] = record_hashes(frame, types)
    stats["rows_out"] = len(frame)
    stats["raw_columns"] = raw_columns
    stats["missing_columns"] = missing
    return Normalized(frame, types, stats)


def _blocking_schema_check(source: SourceBase) -> bool:
    return any(isinstance(c, SchemaCheck) and c.severity == "error" for c in source.checks)
