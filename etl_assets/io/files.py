"""Atomic file primitives for stored Parquet and its side files.

A file is written under a temporary name and renamed into place, so a rerun replaces it and
a crash never leaves half a file where a reader looks. Only `io.storage` calls these: it
decides where each file lives.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import uuid
from collections.abc import Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

PREVIEW_ROWS = 10


def _tmp_for(path: UPath) -> UPath:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def stream_batches(tmp: UPath, batches: Iterable[pd.DataFrame]) -> tuple[int, pd.DataFrame]:
    """Write batches of one frame to `tmp` as one Parquet file; return (rows, first rows)."""
    rows, head, writer, schema = 0, None, None, None
    with tmp.open("wb") as f:
        try:
            for batch in batches:
                table = pa.Table.from_pandas(batch, preserve_index=False, schema=schema)
                if writer is None:
                    schema = table.schema
                    writer = pq.ParquetWriter(f, schema, compression="zstd")
                    head = batch.head(PREVIEW_ROWS)
                writer.write_table(table)
                rows += len(batch)
            if writer is None:  # a source that yielded nothing: an empty, column-less file
                pd.DataFrame().to_parquet(f, index=False)
        finally:
            if writer is not None:
                writer.close()
    return rows, head if head is not None else pd.DataFrame()


def write_partition(path: UPath, obj: pd.DataFrame | Iterable[pd.DataFrame]) -> tuple[int, pd.DataFrame]:
    """Write a frame, or stream batches, to `path` atomically; return (rows, first rows)."""
    tmp = _tmp_for(path)
    try:
        if isinstance(obj, pd.DataFrame):
            with tmp.open("wb") as f:
                obj.to_parquet(f, index=False, compression="zstd")
            rows, head = len(obj), obj.head(PREVIEW_ROWS)
        else:
            rows, head = stream_batches(tmp, obj)
        tmp.rename(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return rows, head


def copy_file(source: UPath, path: UPath) -> None:
    """Copy a stored partition file atomically (a layer that passes its input on unchanged),
    a chunk at a time, so a large file is never held in memory whole."""
    tmp = _tmp_for(path)
    try:
        with source.open("rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.rename(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_atomic(path: UPath, data: bytes) -> None:
    tmp = _tmp_for(path)
    with tmp.open("wb") as f:
        f.write(data)
    tmp.rename(path)


def file_sha256(path: UPath) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def same_file(a: UPath, b: UPath) -> bool:
    """Whether `b` exists and holds exactly the bytes of `a`."""
    return b.exists() and file_sha256(a) == file_sha256(b)


def stored_rows(path: UPath) -> tuple[int, pd.DataFrame]:
    """Rows and the first rows of a stored partition file, without reading all of it."""
    with path.open("rb") as f:
        pf = pq.ParquetFile(f)
        rows = pf.metadata.num_rows
        head = next(pf.iter_batches(batch_size=PREVIEW_ROWS), None)
        return rows, (head.to_pandas() if head is not None else pf.schema_arrow.empty_table().to_pandas())


def frame_bytes(frame: pd.DataFrame) -> bytes:
    """A frame as the bytes of a Parquet file, as every layer stores it."""
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, compression="zstd")
    return buf.getvalue()


def read_frame_bytes(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))


def read_frame(path: UPath) -> pd.DataFrame:
    with path.open("rb") as f:
        return pd.read_parquet(f)
