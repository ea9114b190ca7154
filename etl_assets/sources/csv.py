"""CSV folders: a glob of files, local or on an object store, read with pyarrow.

Every file read is recorded with its sha256, size and row count. Parse problems name the
file and the line, because "CSV parse error" alone sends people hunting.
"""

from __future__ import annotations

import csv as pycsv
import datetime as dt
import gzip
import hashlib
import io
import re
import zipfile
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from etl_assets.secrets import resolve
from etl_assets.sources.base import Extract, ExtractRequest, SourceDataError


def _compression(source: Any, path: str) -> str | None:
    if source.compression == "infer":
        if path.endswith(".gz"):
            return "gzip"
        if path.endswith(".zip"):
            return "zip"
        return None
    return None if source.compression == "none" else source.compression


def _decompress(raw: bytes, kind: str | None, path: str) -> bytes:
    if kind == "gzip":
        try:
            return gzip.decompress(raw)
        except OSError as e:
            raise SourceDataError(f"{path}: not a valid gzip file ({e})") from None
    if kind == "zip":
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                members = [n for n in zf.namelist() if not n.endswith("/")]
                if len(members) != 1:
                    raise SourceDataError(f"{path}: a zip must hold exactly one CSV, found {len(members)}")
                return zf.read(members[0])
        except zipfile.BadZipFile as e:
            raise SourceDataError(f"{path}: not a valid zip file ({e})") from None
    return raw


def _file_date(source: Any, path: str) -> dt.date | None:
    """The date in a file name, from a strftime pattern such as `orders_%Y%m%d.csv`."""
    name = path.rsplit("/", 1)[-1]
    pattern = re.escape(source.filename_date)
    for code, rx in (("%Y", r"\d{4}"), ("%m", r"\d{2}"), ("%d", r"\d{2}")):
        pattern = pattern.replace(re.escape(code), f"(?P<{code[1]}>{rx})")
    m = re.fullmatch(pattern, name)
    if not m:
        return None
    return dt.date(int(m.group("Y")), int(m.group("m")), int(m.group("d")))


def _decode_error(path: str, data: bytes, encoding: str, exc: UnicodeDecodeError) -> SourceDataError:
    line = data[: exc.start].count(b"\n") + 1
    return SourceDataError(
        f"{path}: line {line}: bytes are not valid {encoding} "
        f"({data[exc.start:exc.start + 4]!r}); set the source's encoding"
    )


def _parse_problem(source: Any, path: str, text: str, exc: Exception) -> SourceDataError:
    """Find the line a pyarrow parse error came from, with the standard csv module."""
    reader = pycsv.reader(io.StringIO(text), delimiter=source.delimiter, quotechar=source.quotechar)
    width = None
    for i, row in enumerate(reader, start=1):
        if not row:
            continue
        if width is None:
            width = len(row)
        elif len(row) != width:
            return SourceDataError(
                f"{path}: line {reader.line_num}: expected {width} fields, found {len(row)}"
            )
    return SourceDataError(f"{path}: cannot parse CSV: {exc}")


def read_file(source: Any, path: str, data: bytes) -> pd.DataFrame:
    data = _decompress(data, _compression(source, path), path)
    try:
        text = data.decode(source.encoding)
    except UnicodeDecodeError as e:
        raise _decode_error(path, data, source.encoding, e) from None
    # Arrow reads UTF-8; everything else was decoded above and is re-encoded once.
    payload = data if source.encoding.lower().replace("-", "") == "utf8" else text.encode()
    column_names = None
    if not source.header:
        if not source.columns:
            raise SourceDataError(f"{path}: header: false needs the source's columns")
        column_names = [c.source_name for c in source.columns]
    try:
        table = pacsv.read_csv(
            io.BytesIO(payload),
            read_options=pacsv.ReadOptions(column_names=column_names, block_size=1 << 22),
            parse_options=pacsv.ParseOptions(
                delimiter=source.delimiter, quote_char=source.quotechar
            ),
            convert_options=pacsv.ConvertOptions(
                # Types are the normalize step's job; raw keeps the file's text faithfully.
                column_types={c.source_name: pa.string() for c in source.columns or []},
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as e:
        raise _parse_problem(source, path, text, e) from None
    if source.columns:
        missing = [c.source_name for c in source.columns if c.source_name not in table.column_names]
        if missing:
            raise SourceDataError(
                f"{path}: line 1: header lacks column(s) {', '.join(missing)} "
                f"(found {', '.join(table.column_names)})"
            )
    return table.to_pandas(types_mapper=lambda t: pd.StringDtype() if pa.types.is_string(t) else None)


def extract(source: Any, request: ExtractRequest) -> Extract:
    pattern = resolve(source.path, where=f"{request.pipeline}.sources.{source.name}.path")
    fs, _, paths = fsspec.get_fs_token_paths(pattern)
    paths = sorted(paths)
    start = request.window.start - source.lookback_delta
    if source.mode == "incremental" and source.filename_date and not source.timestamp_column:
        local = [(p, _file_date(source, p)) for p in paths]
        paths = [p for p, d in local if d and start.date() <= d < request.window.end.date()]
    frames, files = [], []
    for p in paths:
        data = fs.cat_file(p)
        frame = read_file(source, p, data)
        files.append(
            {
                "path": p,
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "rows": len(frame),
            }
        )
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {c.source_name: pd.Series(dtype="string") for c in source.columns or []}
    )
    if source.mode == "incremental" and source.timestamp_column and len(frame):
        ts_col = next(
            (c.source_name for c in source.columns or [] if c.name == source.timestamp_column),
            source.timestamp_column,
        )
        ts = _to_utc(frame[ts_col], request.window.start.tzinfo)
        frame = frame[(ts >= start) & (ts < request.window.end)].reset_index(drop=True)
    return Extract(
        frame,
        {
            "kind": "csv",
            "path": pattern,
            "files": files,
            "window_start": start.isoformat(),
            "window_end": request.window.end.isoformat(),
            "rows": len(frame),
        },
    )


def _to_utc(values: pd.Series, tz: Any) -> pd.Series:
    """Timestamps without an offset are read as the pipeline's local time."""
    parsed = pd.to_datetime(values, errors="coerce", utc=False, format="mixed")
    if getattr(parsed.dt, "tz", None) is None:
        parsed = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    return parsed.dt.tz_convert("UTC")
