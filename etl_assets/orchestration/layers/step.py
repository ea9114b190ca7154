"""What every per-source step body works with: its pipeline, source, run context and store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg

from etl_assets.core.keys import asset_key
from etl_assets.core.partitions import Window, window_for
from etl_assets.io.storage import LayerStore
from etl_assets.orchestration.steps import classified
from etl_assets.spec import PipelineSpec, SourceSpec


@dataclass(frozen=True)
class Step:
    """One run of one source's step over the run's partitions."""

    spec: PipelineSpec
    source: SourceSpec
    pdef: dg.TimeWindowPartitionsDefinition
    context: dg.AssetExecutionContext
    store: LayerStore
    # The step's RetryPolicy, for the steps whose transient errors are retried.
    retry: dg.RetryPolicy | None = None

    @property
    def partitions(self) -> list[str]:
        return list(self.context.partition_keys)

    @property
    def where(self) -> str:
        """`pipeline/source`, as log lines name the step."""
        return f"{self.spec.name}/{self.source.name}"

    def key(self, layer: str, source: str | None = None) -> dg.AssetKey:
        """This source's asset of `layer` (or another source's of the same pipeline)."""
        return asset_key(self.spec.name, layer, source or self.source.name)

    def window(self, partition: str) -> Window:
        return window_for(self.pdef, partition)

    @contextmanager
    def classified(self, partitions: list[str] | None = None, *, retried: bool = False) -> Iterator[None]:
        """Errors in the block for `partitions` (default: all), under the step's retry policy
        when `retried`, else failed at once."""
        with classified(
            self.context,
            pipeline=self.spec.name,
            source=self.source.name,
            partitions=self.partitions if partitions is None else partitions,
            policy=self.retry if retried else None,
        ):
            yield
