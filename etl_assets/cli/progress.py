"""Live progress of an in-process run: one line per step as it starts and ends.

Dagster captures the run's stdout and stderr while it executes in this process: it points
their file descriptors at a log file and mirrors that file back with `tail -F`, which polls
once a second and is killed when the run ends. A line written to the stream during the run
goes through that tail, and the last ones (the report step's end) were lost whenever the
tail had not polled them yet (issue 19). Progress therefore writes to its own duplicate of
the stream's descriptor, taken before the run starts, which the capture does not redirect.
"""

from __future__ import annotations

import io
import os
from typing import Self, TextIO

import dagster as dg

from etl_assets.core.keys import LAYERS
from etl_assets.orchestration.runner import step_selection
from etl_assets.spec import PipelineSpec


def _own_stream(stream: TextIO) -> TextIO | None:
    """A line-buffered file on a duplicate of `stream`'s descriptor; None for a stream without
    one (a StringIO), which no capture redirects anyway."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None
    stream.flush()
    return open(  # closed by Progress.__exit__
        os.dup(fd), "w", buffering=1, closefd=True,
        encoding=getattr(stream, "encoding", None) or "utf-8", errors=getattr(stream, "errors", None) or "strict",
    )


class Progress:
    """One line per step as it starts and as it ends; on a terminal, a bar over partitions.

    Fed by the instance's event listener while the run executes in this process.
    """

    def __init__(self, spec: PipelineSpec, keys: list[str], step: str | None, stream: TextIO) -> None:
        # rich takes a few tenths of a second to import; a run without progress never loads it.
        from rich import progress as rp
        from rich.console import Console

        self.own = _own_stream(stream)
        self.console = Console(file=self.own or stream, soft_wrap=True, highlight=False)
        self.span = keys[0] if len(keys) == 1 else f"{keys[0]} … {keys[-1]}"
        self.partitions = len(keys)
        selected = step_selection(spec, step)
        self.total = len(selected) if selected else len(spec.sources) * len(LAYERS) + 1
        self.index: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.rows: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.ended: set[str] = set()
        self.bar: rp.Progress | None = None
        if self.console.is_terminal:
            self.bar = rp.Progress(
                rp.TextColumn("partitions"), rp.BarColumn(), rp.MofNCompleteColumn(), rp.TimeElapsedColumn(),
                console=self.console, transient=True,
            )
            self.task = self.bar.add_task("", total=self.total * self.partitions)

    def __enter__(self) -> Self:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
        if self.own is not None:
            self.own.close()  # flushes: every line is out before the summary

    def _label(self, step: str) -> str:
        parts = step.split("__")
        name = f"{parts[2]} {parts[1]}" if len(parts) == 3 else parts[-1]
        return f"[{self.index[step]}/{self.total}] {name} {self.span}"

    def _advance(self, step: str, n: int) -> None:
        n = min(n, self.partitions - self.done.get(step, 0))
        self.done[step] = self.done.get(step, 0) + n
        if self.bar is not None and n > 0:
            self.bar.advance(self.task, n)

    def _count_rows(self, step: str, materialization: dg.AssetMaterialization | None) -> None:
        """The rows a step wrote: summed over partitions, or a layer's own row count."""
        meta = materialization.metadata if materialization is not None else {}
        by_partition = getattr(meta.get("rows_by_partition"), "value", None)
        row_count = getattr(meta.get("dagster/row_count"), "value", None)
        if isinstance(by_partition, dict):
            self.rows[step] = sum(int(v or 0) for v in by_partition.values())
        elif isinstance(row_count, int) and step.count("__") == 2:
            self.rows[step] = row_count

    def __call__(self, entry: dg.EventLogEntry) -> None:
        event, step = entry.dagster_event, entry.step_key
        if event is None or not step:
            return
        kind = event.event_type
        if kind == dg.DagsterEventType.STEP_START:
            self.index.setdefault(step, len(self.index) + 1)
            self.started[step] = entry.timestamp
            self.console.print(f"{self._label(step)} …", markup=False)
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            self._count_rows(step, entry.asset_materialization)
            self._advance(step, 1)
        elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            self.index.setdefault(step, len(self.index) + 1)
            self.ended.add(step)
            took = entry.timestamp - self.started.get(step, entry.timestamp)
            word = "OK" if kind == dg.DagsterEventType.STEP_SUCCESS else "FAILED"
            rows = f" {self.rows[step]:,} rows" if step in self.rows else ""
            self._advance(step, self.partitions)
            self.console.print(f"{self._label(step)} … {word}{rows} {took:.1f} s", markup=False)
        elif kind == dg.DagsterEventType.STEP_SKIPPED:
            self.index.setdefault(step, len(self.index) + 1)
            self.ended.add(step)
            self._advance(step, self.partitions)
            self.console.print(f"{self._label(step)} … SKIPPED (upstream failed)", markup=False)
