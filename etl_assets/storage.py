"""Parquet files for the raw, normalized and validated layers, one file per partition.

Paths are `<base>/<pipeline>/<layer>/<source>/<partition>.parquet`; the base may be a local
folder or an fsspec URL. A file is written under a temporary name and renamed into place, so
a rerun replaces it and a crash never leaves half a file where a reader looks.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import pandas as pd
from upath import UPath


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

    def dump_to_path(self, context: dg.OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with tmp.open("wb") as f:
            obj.to_parquet(f, index=False, compression="zstd")
        tmp.rename(path)

    def load_from_path(self, context: dg.InputContext | None, path: UPath) -> pd.DataFrame:
        with path.open("rb") as f:
            return pd.read_parquet(f)

    def handle_output(self, context: dg.OutputContext, obj: Mapping[str, pd.DataFrame]) -> None:
        """Write one file per partition, so a single-run backfill stores every week."""
        paths = self._get_paths_for_partitions(context)
        missing = set(paths) - set(obj)
        if missing:
            raise dg.Failure(
                f"{context.asset_key.to_user_string()}: no data produced for partition(s) "
                f"{', '.join(sorted(missing))}",
                allow_retries=False,
            )
        for key, path in paths.items():
            self.make_directory(path.parent)
            self.dump_to_path(context=context, obj=obj[key], path=path)

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
