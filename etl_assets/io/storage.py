"""The one owner of layer data: where every file lives and every read and write of it.

Paths are `<base>/<pipeline>/<layer>/<source>/<partition>.parquet` for the raw, normalized and
validated layers, and `<base>/<pipeline>/<kind>/<source>/<partition>.<ext>` for the files
beside them (quality documents, quarantined and failing rows). The base, a local folder or an
fsspec URL, is the IO manager's `base_path` and nothing else: steps write through the
manager's `LayerStore` (so a long range holds one window in memory and a streamed extract's
errors surface inside the step), and the manager records what was stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeAlias

import dagster as dg
import pandas as pd
from upath import UPath

from etl_assets.io import contract
from etl_assets.io.files import (
    copy_file,
    file_sha256,
    frame_bytes,
    read_frame,
    same_file,
    sha256_of,
    stored_rows,
    write_atomic,
    write_partition,
)
from etl_assets.io.preview import markdown_table

EXTENSION = ".parquet"
# Files beside the layers, by kind: the extension each is stored with.
SIDE_KINDS = {"quality": "json", "quarantine": "parquet", "failures": "parquet"}


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
PartitionValue: TypeAlias = pd.DataFrame | Iterable[pd.DataFrame] | Callable[[], pd.DataFrame] | _Keep | Written


class LayerStore:
    """Every stored file of the layers under one base path, and the writes a step makes."""

    def __init__(self, base: UPath) -> None:
        self.base = base

    def path(self, key: dg.AssetKey, partition: str) -> UPath:
        """Where `key`'s `partition` is stored: the one place the layers' layout is decided."""
        return self.base.joinpath(*key.path, f"{partition}{EXTENSION}")

    def side_path(self, pipeline: str, kind: str, source: str, partition: str) -> UPath:
        return self.base / pipeline / kind / source / f"{partition}.{SIDE_KINDS[kind]}"

    def write(self, key: dg.AssetKey, partition: str, obj: pd.DataFrame | Iterable[pd.DataFrame]) -> Written:
        """Write a frame, or stream batches, as `key`'s `partition`."""
        path = self.path(key, partition)
        write_partition(path, obj)
        return Written(path)

    def write_hashed(self, key: dg.AssetKey, partition: str, frame: pd.DataFrame) -> tuple[Written, str]:
        """Store a frame as `key`'s `partition`; (file, sha256 of its bytes) for lineage."""
        path, data = self.path(key, partition), frame_bytes(frame)
        write_atomic(path, data)
        return Written(path), sha256_of(data)

    def copy(self, source: UPath, key: dg.AssetKey, partition: str) -> Written:
        """Store another stored file, unchanged, as `key`'s `partition`."""
        path = self.path(key, partition)
        copy_file(source, path)
        return Written(path)

    def reuse(
        self, source: UPath, key: dg.AssetKey, partition: str, source_sha256: str | None = None
    ) -> tuple[Written, bool]:
        """Store `source` as `key`'s `partition` unless it already holds those bytes; (file, kept).

        `source_sha256`, when the caller knows it, spares reading `source` again for each copy.
        """
        path = self.path(key, partition)
        if source_sha256 is None:
            kept = same_file(source, path)
        else:
            kept = path.exists() and file_sha256(path) == source_sha256
        if not kept:
            copy_file(source, path)
        return Written(path), kept

    def stored_sha256(self, key: dg.AssetKey, partition: str) -> str:
        return file_sha256(self.path(key, partition))

    def holds(self, key: dg.AssetKey, partition: str, sha256: str | None) -> bool:
        """Whether `key`'s `partition` is stored with exactly the bytes hashing to `sha256`."""
        path = self.path(key, partition)
        return path.exists() and file_sha256(path) == sha256

    def write_document(self, pipeline: str, kind: str, source: str, partition: str, doc: Any) -> str:
        """Store a JSON document beside the layers; the sha256 of its bytes, for lineage."""
        data = json.dumps(doc, default=str, indent=1).encode()
        write_atomic(self.side_path(pipeline, kind, source, partition), data)
        return sha256_of(data)

    def read_document(self, pipeline: str, kind: str, source: str, partition: str, sha256: str | None) -> Any:
        """The stored document if it holds exactly the bytes hashing to `sha256`, else None."""
        path = self.side_path(pipeline, kind, source, partition)
        if sha256 is None or not path.exists():
            return None
        data = path.read_bytes()
        return json.loads(data) if sha256_of(data) == sha256 else None

    def write_side_frame(self, pipeline: str, kind: str, source: str, partition: str, frame: pd.DataFrame) -> None:
        write_atomic(self.side_path(pipeline, kind, source, partition), frame_bytes(frame))

    def read_side_frame(self, pipeline: str, kind: str, source: str, partition: str) -> pd.DataFrame:
        return read_frame(self.side_path(pipeline, kind, source, partition))


class PartitionFrames(Mapping[str, pd.DataFrame]):
    """An upstream layer's partitions, read one at a time so memory holds one partition."""

    def __init__(self, paths: dict[str, UPath], load: Callable[[UPath], pd.DataFrame]):
        self._paths, self._load = paths, load

    def __getitem__(self, key: str) -> pd.DataFrame:
        return self._load(self._paths[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, key: str) -> UPath:
        return self._paths[key]

    def sha256(self, key: str) -> str:
        """The sha256 of partition `key`'s stored file: what its content is, for lineage."""
        return file_sha256(self._paths[key])

    def read_bytes(self, key: str) -> bytes:
        """The stored file of partition `key` as bytes (to hash it and to read it once)."""
        return self._paths[key].read_bytes()


def _describe(rows: dict[str, int], preview: pd.DataFrame, folder: UPath) -> dict[str, Any]:
    return {
        contract.ROW_COUNT: dg.MetadataValue.int(sum(rows.values())),
        contract.COLUMN_SCHEMA: dg.TableSchema(
            columns=[dg.TableColumn(name=str(c), type=str(preview[c].dtype)) for c in preview.columns]
        ),
        contract.PREVIEW: dg.MetadataValue.md(markdown_table(preview)),
        contract.ROWS_BY_PARTITION: dg.MetadataValue.json(rows),
        contract.PATH: dg.MetadataValue.path(str(folder)),
    }


class ParquetIOManager(dg.UPathIOManager):
    extension = EXTENSION

    def __init__(self, base_path: UPath) -> None:
        super().__init__(base_path=base_path)
        self.store = LayerStore(base_path)

    def dump_to_path(self, context: Any, obj: pd.DataFrame | Iterable[pd.DataFrame], path: UPath) -> tuple[int, pd.DataFrame]:
        """Write a frame, or stream batches, to `path`; return (rows, first rows for preview)."""
        return write_partition(path, obj)

    def load_from_path(self, context: dg.InputContext | None, path: UPath) -> pd.DataFrame:
        return read_frame(path)

    def _paths(self, context: dg.InputContext | dg.OutputContext) -> dict[str, UPath]:
        """Each partition's file, laid out by the store the steps write through."""
        return {k: self.store.path(context.asset_key, k) for k in context.asset_partition_keys}

    def _store(self, context: dg.OutputContext, key: str, value: PartitionValue, path: UPath) -> tuple[int, pd.DataFrame]:
        """Store one partition's value at `path`, or find it stored there; (rows, first rows)."""
        if isinstance(value, _Keep | Written):  # a Written's path is this store's `path`
            if not path.exists():
                raise dg.Failure(f"{path}: partition {key} has no stored file", allow_retries=False)
            return stored_rows(path)
        frame = value() if callable(value) else value
        self.make_directory(path.parent)
        return self.dump_to_path(context=context, obj=frame, path=path)

    def handle_output(self, context: dg.OutputContext, obj: Mapping[str, PartitionValue]) -> None:
        """Write one file per partition, so a single-run backfill stores every window, and
        describe what was written: row counts, column schema and a preview."""
        paths = self._paths(context)
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
            rows[key], head = self._store(context, key, value, path)
            if preview is None or (preview.empty and len(head)):
                preview = head
        preview = preview if preview is not None else pd.DataFrame()
        context.add_output_metadata(_describe(rows, preview, next(iter(paths.values())).parent))

    def load_input(self, context: dg.InputContext) -> PartitionFrames:
        paths = self._paths(context)
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
