"""Parquet files for the raw, normalized and validated layers, one file per partition.

Paths are `<base>/<pipeline>/<layer>/<source>/<partition>.parquet`; the base may be a local
folder or an fsspec URL. A file is written under a temporary name and renamed into place, so
a rerun replaces it and a crash never leaves half a file where a reader looks.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

PREVIEW_ROWS = 10


class _Keep:
    """Marks a partition whose stored file is still right (its source proved unchanged)."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()


class Written:
    """A partition the asset wrote itself, so that a long range holds one partition in memory.

    Files written before the step fails are complete (atomic rename) but not recorded as a
    materialization; the next run rewrites them.
    """

    def __init__(self, path: UPath):
        self.path = path

    def __repr__(self) -> str:
        return f"Written({self.path})"


# What an asset may hand over per partition: a frame, batches of one, a thunk, KEEP or Written.
PartitionValue = pd.DataFrame | Iterable[pd.DataFrame] | Callable[[], pd.DataFrame] | _Keep | Written


def layer_path(base: str, key: dg.AssetKey, partition: str) -> UPath:
    """Where the Parquet IO manager keeps `key`'s `partition`, as UPathIOManager lays it out."""
    return UPath(base).joinpath(*key.path, f"{partition}{ParquetIOManager.extension}")


def write_partition(path: UPath, obj: pd.DataFrame | Iterable[pd.DataFrame]) -> tuple[int, pd.DataFrame]:
    """Write a frame, or stream batches, to `path` atomically; return (rows, first rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        if isinstance(obj, pd.DataFrame):
            with tmp.open("wb") as f:
                obj.to_parquet(f, index=False, compression="zstd")
            rows, head = len(obj), obj.head(PREVIEW_ROWS)
        else:
            rows, head = ParquetIOManager._stream(tmp, obj)
        tmp.rename(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return rows, head


def copy_file(source: UPath, path: UPath) -> None:
    """Copy a stored partition file atomically (a layer that passes its input on unchanged),
    a chunk at a time, so a large file is never held in memory whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with source.open("rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.rename(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def file_sha256(path: UPath) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


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


class PartitionFrames(Mapping[str, pd.DataFrame]):
    """An upstream layer's partitions, read one at a time so memory holds one partition."""

    def __init__(self, paths: dict[str, UPath], load: Any):
        self._paths, self._load = paths, load

    def __getitem__(self, key: str) -> pd.DataFrame:
        return self._load(self._paths[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, key: str) -> str:
        return str(self._paths[key])


class ParquetIOManager(dg.UPathIOManager):
    extension = ".parquet"

    def dump_to_path(self, context: Any, obj: pd.DataFrame | Iterable[pd.DataFrame], path: UPath) -> tuple[int, pd.DataFrame]:
        """Write a frame, or stream batches, to `path`; return (rows, first rows for preview)."""
        return write_partition(path, obj)

    @staticmethod
    def _stream(tmp: UPath, batches: Iterable[pd.DataFrame]) -> tuple[int, pd.DataFrame]:
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

    def load_from_path(self, context: dg.InputContext | None, path: UPath) -> pd.DataFrame:
        with path.open("rb") as f:
            return pd.read_parquet(f)

    def handle_output(self, context: dg.OutputContext, obj: Mapping[str, PartitionValue]) -> None:
        """Write one file per partition, so a single-run backfill stores every window, and
        describe what was written: row counts, column schema and a preview."""
        from etl_assets.report import markdown_table

        paths = self._get_paths_for_partitions(context)
        missing = set(paths) - set(obj)
        if missing:
            raise dg.Failure(
                f"{context.asset_key.to_user_string()}: no data produced for partition(s) "
                f"{', '.join(sorted(missing))}",
                allow_retries=False,
            )
        rows: dict[str, int] = {}
        preview: pd.DataFrame | None = None
        for key, path in paths.items():
            value = obj[key]
            if isinstance(value, Written) and value.path != path:
                copy_file(value.path, path)  # written under another base path than ours
            if value is KEEP or isinstance(value, Written):
                if not path.exists():
                    raise dg.Failure(f"{path}: partition {key} has no stored file", allow_retries=False)
                rows[key], stored_head = stored_rows(path)
                head = stored_head if preview is None or preview.empty else None
            else:
                if callable(value):
                    value = value()
                self.make_directory(path.parent)
                rows[key], head = self.dump_to_path(context=context, obj=value, path=path)
            if preview is None or (preview.empty and head is not None and len(head)):
                preview = head
        preview = preview if preview is not None else pd.DataFrame()
        context.add_output_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(sum(rows.values())),
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name=str(c), type=str(preview[c].dtype)) for c in preview.columns]
                ),
                "preview": dg.MetadataValue.md(markdown_table(preview)),
                "rows_by_partition": dg.MetadataValue.json(rows),
                "path": dg.MetadataValue.path(str(next(iter(paths.values())).parent)),
            }
        )

    def load_input(self, context: dg.InputContext) -> PartitionFrames:
        paths = self._get_paths_for_partitions(context)
        missing = [k for k, p in paths.items() if not p.exists()]
        if missing:
            layer = context.asset_key.path[1] if len(context.asset_key.path) > 1 else "upstream"
            raise dg.Failure(
                f"{context.asset_key.to_user_string()} is missing for partition(s) "
                f"{', '.join(missing)}: materialize the {layer} step first "
                f"(looked in {paths[missing[0]].parent})",
                allow_retries=False,
            )
        return PartitionFrames(paths, lambda p: self.load_from_path(None, p))


class ParquetIOManagerResource(dg.ConfigurableIOManagerFactory):
    """Partitioned Parquet layers under ETL_STORAGE_DIR (a folder or an object-store URL)."""

    base_path: str

    def create_io_manager(self, context: dg.InitResourceContext) -> ParquetIOManager:
        return ParquetIOManager(base_path=UPath(self.base_path))


def side_path(base: str, pipeline: str, kind: str, source: str, key: str, ext: str) -> UPath:
    """Files beside the layers: `<base>/<pipeline>/<kind>/<source>/<partition>.<ext>`."""
    return UPath(base) / pipeline / kind / source / f"{key}.{ext}"


def write_atomic(path: UPath, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
    tmp.rename(path)


def frame_bytes(frame: pd.DataFrame) -> bytes:
    """A frame as the bytes of a Parquet file, as every layer stores it."""
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, compression="zstd")
    return buf.getvalue()


def read_frame_bytes(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))


def write_frame(path: UPath, frame: pd.DataFrame) -> None:
    write_atomic(path, frame_bytes(frame))


def read_frame(path: UPath) -> pd.DataFrame:
    with path.open("rb") as f:
        return pd.read_parquet(f)
