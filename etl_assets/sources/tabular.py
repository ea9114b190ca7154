"""Rows and Arrow tables into the DataFrames sources hand on, whole or in batches.

Every batch of one extract must share one schema (the Parquet writer appends them to one
file), so the types a stream starts with are kept: later batches are converted to them.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa

from etl_assets.sources.base import SourceDataError, window_bounds
from etl_assets.transform.normalize import cast_column

if TYPE_CHECKING:
    from etl_assets.sources.base import ExtractRequest
    from etl_assets.spec import SourceSpec


def pandas_types(t: pa.DataType) -> Any:
    """Nullable pandas dtypes, so an integer column with a NULL stays integer."""
    if pa.types.is_uint64(t):
        return pd.UInt64Dtype()  # BIGINT UNSIGNED: normalize rejects what int64 cannot hold
    if pa.types.is_integer(t):
        return pd.Int64Dtype()
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pd.StringDtype()
    return None


def to_frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper=pandas_types)


def counted(
    frames: Iterable[pd.DataFrame],
    inputs: dict[str, Any],
    on_close: Callable[[], None] | None = None,
) -> Iterator[pd.DataFrame]:
    """Pass frames through, keeping `inputs["rows"]` current; release the source at the end."""
    inputs["rows"] = 0
    try:
        for frame in frames:
            inputs["rows"] += len(frame)
            yield frame
    finally:
        if on_close is not None:
            on_close()


# --- Python values (DB-API rows, JSON records) → Arrow ---------------------------------------


def _type_of(value: Any) -> pa.DataType:
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64() if -(2**63) <= value < 2**63 else pa.string()
    if isinstance(value, (float, decimal.Decimal)):
        return pa.float64()
    if isinstance(value, dt.datetime):
        return pa.timestamp("us", tz="UTC") if value.utcoffset() is not None else pa.timestamp("us")
    if isinstance(value, dt.date):
        return pa.date32()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return pa.binary()
    return pa.string()


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)  # Decimal, UUID, timedelta, ...


def _fit(value: Any, t: pa.DataType) -> Any:
    """`value` as a Python value of Arrow type `t`, or raise ValueError."""
    if value is None:
        return None
    if pa.types.is_string(t):
        return value if isinstance(value, str) else _text(value)
    if pa.types.is_floating(t):
        if isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool):
            return float(value)
    elif pa.types.is_integer(t):
        if isinstance(value, int) and not isinstance(value, bool) and _in_range(value, t):
            return value
    elif pa.types.is_boolean(t):
        if isinstance(value, bool):
            return value
    elif pa.types.is_timestamp(t):
        if isinstance(value, dt.datetime):
            if t.tz is not None and value.utcoffset() is None:
                return value.replace(tzinfo=dt.timezone.utc)  # session time zone is UTC
            if t.tz is None and value.utcoffset() is not None:
                raise ValueError
            return value
    elif pa.types.is_date(t):
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
    elif pa.types.is_binary(t) and isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise ValueError


def _in_range(value: int, t: pa.DataType) -> bool:
    info = np.iinfo(t.to_pandas_dtype())
    return int(info.min) <= value <= int(info.max)


class RowConverter:
    """Column lists of Python values → Arrow tables with one schema for the whole stream.

    Types come from `types` where given, else from each column's first non-empty value in
    the first batch; a column empty throughout the first batch is text. A later value that
    does not fit its column's type is a SourceDataError naming the column and the value.
    Decimals in `exact` columns stay text, so normalize reads their digits, not a float.
    """

    def __init__(
        self,
        names: Sequence[str],
        types: dict[str, pa.DataType] | None = None,
        exact: Collection[str] = (),
    ):
        self.names = list(names)
        self.given = dict(types or {})
        self.exact = set(exact)
        self.schema: pa.Schema | None = None

    def _infer(self, columns: list[list[Any]]) -> pa.Schema:
        fields = []
        for name, values in zip(self.names, columns):
            t = self.given.get(name)
            if t is None and name in self.exact and any(isinstance(v, decimal.Decimal) for v in values):
                t = pa.string()
            if t is None:
                seen = {_type_of(v) for v in values if v is not None}
                if seen == {pa.int64(), pa.float64()}:
                    t = pa.float64()
                elif len(seen) == 1:
                    t = seen.pop()
                else:
                    t = pa.string()  # nothing seen, or mixed kinds: keep the text
            fields.append(pa.field(name, t))
        return pa.schema(fields)

    def table(self, rows: Sequence[Sequence[Any]], where: str = "") -> pa.Table:
        columns = [list(c) for c in zip(*rows)] if rows else [[] for _ in self.names]
        if self.schema is None:
            self.schema = self._infer(columns)
        arrays = []
        for f, values in zip(self.schema, columns):
            try:
                fitted = [_fit(v, f.type) for v in values]
            except ValueError:
                bad = next(v for v in values if not _fits(v, f.type))
                raise SourceDataError(
                    f"{where}column {f.name!r}: value {bad!r} does not fit type {f.type} "
                    "seen in the first batch; declare the column's type or cast it in a query"
                ) from None
            arrays.append(pa.array(fitted, type=f.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def frame(self, rows: Sequence[Sequence[Any]], where: str = "") -> pd.DataFrame:
        return to_frame(self.table(rows, where))


def _fits(value: Any, t: pa.DataType) -> bool:
    try:
        _fit(value, t)
        return True
    except ValueError:
        return False


def exact_columns(source: SourceSpec) -> set[str]:
    """Source names of declared columns that must not pass through float64 (integer,
    string, ...): a database decimal there is read as its exact text."""
    return {c.source_name for c in source.columns or [] if c.type != "float"}


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects become `parent.child` keys; lists stay one value (as JSON text)."""
    out: dict[str, Any] = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def naive_zone(source: SourceSpec, request: ExtractRequest) -> dt.tzinfo:
    """The zone the timestamp column's naive values are wall-clock time in: its `timezone`,
    the source's, or the pipeline's (the window's own zone)."""
    name = source.wall_clock_zone(source.timestamp_column, "")
    if name:
        return ZoneInfo(name)
    zone = request.window.start.tzinfo
    if zone is None:  # windows are built aware; a naive one is a bug, not data
        raise TypeError(f"window {request.window.key} has no time zone")
    return zone


def naive_bounds(source: SourceSpec, request: ExtractRequest) -> tuple[dt.datetime, dt.datetime]:
    """The window as wall-clock bounds in `naive_zone`, for columns without a time zone."""
    zone = naive_zone(source, request)
    start, end = window_bounds(source, request)
    return start.astimezone(zone).replace(tzinfo=None), end.astimezone(zone).replace(tzinfo=None)


def in_window(
    frame: pd.DataFrame, column: str, start: dt.datetime, end: dt.datetime, tz: Any, where: str
) -> pd.DataFrame:
    """Rows with `start <= column < end`, reading the column exactly as normalize will."""
    if not len(frame):
        return frame
    if column not in frame.columns:
        found = ", ".join(map(str, frame.columns))
        raise SourceDataError(
            f"{where}timestamp_column {column!r} is not in the data (found {found})"
        )
    try:
        ts = cast_column(frame[column].reset_index(drop=True), "timestamp", column, tz)
    except SourceDataError as e:
        raise SourceDataError(f"{where}{e}") from None
    keep = ((ts >= start) & (ts < end)).fillna(False).to_numpy(dtype=bool)
    return frame[keep].reset_index(drop=True)
