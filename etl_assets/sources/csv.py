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
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from etl_assets.core.secrets import redact, resolve
from etl_assets.sources.base import Extract, SourceDataError, window_bounds
from etl_assets.sources.tabular import counted, in_window, naive_zone, to_frame

if TYPE_CHECKING:
    from etl_assets.sources.base import ExtractRequest
    from etl_assets.spec import CsvSource


def _compression(source: CsvSource, path: str) -> str | None:
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
                    raise SourceDataError(
                        f"{path}: a zip must hold exactly one CSV, found {len(members)}"
                    )
                return zf.read(members[0])
        except zipfile.BadZipFile as e:
            raise SourceDataError(f"{path}: not a valid zip file ({e})") from None
    return raw


def _file_date(filename_date: str, path: str) -> dt.date | None:
    """The date in a file name, from a strftime pattern such as `orders_%Y%m%d.csv`."""
    name = path.rsplit("/", 1)[-1]
    pattern = re.escape(filename_date)
    for code, rx in (("%Y", r"\d{4}"), ("%m", r"\d{2}"), ("%d", r"\d{2}")):
        pattern = pattern.replace(re.escape(code), f"(?P<{code[1]}>{rx})")
    m = re.fullmatch(pattern, name)
    if not m:
        return None
    return dt.date(int(m.group("Y")), int(m.group("m")), int(m.group("d")))


def _decode_error(
    path: str, data: bytes, encoding: str, exc: UnicodeDecodeError
) -> SourceDataError:
    line = data[: exc.start].count(b"\n") + 1
    return SourceDataError(
        f"{path}: line {line}: bytes are not valid {encoding} "
        f"({data[exc.start : exc.start + 4]!r}); set the source's encoding"
    )


def _parse_problem(source: CsvSource, path: str, text: str, exc: Exception) -> SourceDataError:
    """Find the line a pyarrow parse error came from, with the standard csv module."""
    reader = pycsv.reader(io.StringIO(text), delimiter=source.delimiter, quotechar=source.quotechar)
    # Without a header the declared columns set the width; with one, the header does.
    width = None if source.header else len(source.columns or [])
    for row in reader:
        if not row:
            continue
        if width is None:
            width = len(row)
        elif len(row) != width:
            return SourceDataError(
                f"{path}: line {reader.line_num}: expected {width} fields, found {len(row)}"
            )
    return SourceDataError(f"{path}: cannot parse CSV: {exc}")


def _text_columns(source: CsvSource, text: str) -> dict[str, pa.DataType] | None:
    """Columns to keep as text. Declared columns always are (types are normalize's job);
    a streamed read keeps every column as text, so all files share one schema."""
    types = {c.source_name: pa.string() for c in source.columns or []}
    if source.batch_size and source.header:
        first = next(
            pycsv.reader(io.StringIO(text), delimiter=source.delimiter, quotechar=source.quotechar),
            [],
        )
        types.update({name: pa.string() for name in first})
    return types or None


def _null_values(source: CsvSource) -> list[str]:
    """The fields read as NULL: pyarrow's default tokens unless `keep_default_na` is false,
    plus `na_values`."""
    defaults = pacsv.ConvertOptions().null_values if source.keep_default_na else []
    return list(dict.fromkeys([*defaults, *source.na_values]))


def read_file(source: CsvSource, path: str, data: bytes) -> pd.DataFrame:
    data = _decompress(data, _compression(source, path), path)
    try:
        text = data.decode(source.encoding)
    except UnicodeDecodeError as e:
        raise _decode_error(path, data, source.encoding, e) from None
    # Arrow reads UTF-8; everything else was decoded above and is re-encoded once.
    payload = (
        data
        if source.encoding.lower().replace("-", "").replace("_", "") == "utf8"
        else text.encode()
    )
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
                column_types=_text_columns(source, text),
                null_values=_null_values(source),
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as e:
        raise _parse_problem(source, path, text, e) from None
    if source.columns and not source.schema_checked:  # a schema check reports it instead
        missing = [c.source_name for c in source.columns if c.source_name not in table.column_names]
        if missing:
            raise SourceDataError(
                f"{path}: line 1: header lacks column(s) {', '.join(missing)} "
                f"(found {', '.join(table.column_names)})"
            )
    return to_frame(table)


def _options(source: CsvSource) -> dict[str, Any]:
    """What shapes the parse: files with the same hashes read with the same options give
    the same rows, so a later extract may skip them."""
    return {
        "delimiter": source.delimiter,
        "encoding": source.encoding,
        "header": source.header,
        "quotechar": source.quotechar,
        "compression": source.compression,
        "columns": [c.source_name for c in source.columns] if source.columns else None,
        "mode": source.mode,
        "timestamp_column": source.timestamp_column_source,
        "filename_date": source.filename_date,
        "batched": bool(source.batch_size),
        "null_values": _null_values(source),
        "timezone": source.wall_clock_zone(source.timestamp_column, ""),
    }


def _digest(fs: fsspec.AbstractFileSystem, path: str) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def _unchanged(
    fs: fsspec.AbstractFileSystem, paths: list[str], inputs: dict[str, Any], previous: dict[str, Any]) -> bool:
    """True when the previous extract read exactly these files, byte for byte, the same way."""
    if not isinstance(previous.get("files"), list):
        return False
    for key in ("options", "window_start", "window_end"):
        if previous.get(key) != inputs[key]:
            return False
    before = [(f.get("path"), f.get("sha256"), f.get("size")) for f in previous["files"]]
    if [b[0] for b in before] != paths:
        return False
    return all((p, *_digest(fs, p)) == b for p, b in zip(paths, before))


def _select(source: CsvSource, paths: list[str], start: dt.datetime, end: dt.datetime) -> list[str]:
    filename_date = source.filename_date
    if source.mode != "incremental" or not filename_date:
        return paths
    dated = [(p, _file_date(filename_date, p)) for p in paths]
    return [p for p, d in dated if d is not None and start.date() <= d < end.date()]


def extract(source: CsvSource, request: ExtractRequest) -> Extract:
    pattern = resolve(source.path, where=f"{request.pipeline}.sources.{source.name}.path")
    fs, _, paths = fsspec.get_fs_token_paths(pattern)
    start, end = window_bounds(source, request)
    paths = _select(source, sorted(paths), start, end)
    inputs: dict[str, Any] = {
        "kind": "csv",
        "path": redact(pattern),
        "files": [],
        "options": _options(source),
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "rows": None,
    }
    previous = request.previous_inputs
    if previous is not None and _unchanged(fs, paths, inputs, previous):
        # Hashed without parsing: the raw file stored by that extract is still right.
        inputs.update(files=previous["files"], rows=previous.get("rows"))
        return Extract(None, inputs, unchanged=True)
    if source.batch_size:
        frames = _frames(fs, source, request, paths, inputs)
        return Extract(counted(_batches(source, frames, paths, source.batch_size), inputs), inputs)
    parts = list(_frames(fs, source, request, paths, inputs))
    frame = pd.concat(parts, ignore_index=True) if parts else _empty(source)
    inputs["rows"] = len(frame)
    return Extract(frame, inputs)


def _frames(
    fs: fsspec.AbstractFileSystem,
    source: CsvSource,
    request: ExtractRequest,
    paths: list[str],
    inputs: dict[str, Any],
) -> Iterator[pd.DataFrame]:
    """Each file's rows in the window, recording the file in `inputs` as it is read."""
    start, end = window_bounds(source, request)
    # Rows are filtered by timestamp unless the file name already chose the window's files.
    by_time = source.mode == "incremental" and not source.filename_date
    ts_column = source.timestamp_column_source if by_time else None
    for p in paths:
        data = fs.cat_file(p)
        frame = read_file(source, p, data)
        inputs["files"].append(
            {
                "path": p,
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "rows": len(frame),
            }
        )
        del data
        if ts_column:
            frame = in_window(frame, ts_column, start, end, naive_zone(source, request), f"{p}: ")
        yield frame


def _empty(source: CsvSource) -> pd.DataFrame:
    return pd.DataFrame({c.source_name: pd.Series(dtype="string") for c in source.columns or []})


def _batches(
    source: CsvSource, frames: Iterator[pd.DataFrame], paths: list[str], size: int
) -> Iterator[pd.DataFrame]:
    """Frames of at most batch_size rows; each file is parsed whole, one at a time."""
    first: pd.DataFrame | None = None
    yielded = False
    for p, frame in zip(paths, frames):
        if first is None:
            first = frame.iloc[0:0]
        elif list(frame.columns) != list(first.columns):
            raise SourceDataError(
                f"{p}: columns {', '.join(frame.columns)} differ from the first file's "
                f"({', '.join(first.columns)}); a streamed read needs the same header in every file"
            )
        for i in range(0, len(frame), size):
            yielded = True
            yield frame.iloc[i : i + size].reset_index(drop=True)
    if not yielded:  # one empty frame, so the writer still learns the columns
        yield first if first is not None else _empty(source)
