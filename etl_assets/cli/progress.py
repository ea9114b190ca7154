"""Live progress of an in-process run: one line per step as it starts and ends."""

from __future__ import annotations

from typing import Any, Self, TextIO

import dagster as dg

from etl_assets.orchestration.assets import LAYERS
from etl_assets.orchestration.runner import step_selection
from etl_assets.spec import PipelineSpec


class Progress:
    """One line per step as it starts and as it ends; on a terminal, a bar over partitions.

    Fed by the instance's event listener while the run executes in this process.
    """

    def __init__(self, spec: PipelineSpec, keys: list[str], step: str | None, stream: TextIO) -> None:
        from rich.console import Console

        self.console = Console(file=stream, soft_wrap=True, highlight=False)
        self.span = keys[0] if len(keys) == 1 else f"{keys[0]} … {keys[-1]}"
        self.partitions = len(keys)
        selected = step_selection(spec, step)
        self.total = len(selected) if selected else len(spec.sources) * len(LAYERS) + 1
        self.index: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.rows: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.ended: set[str] = set()
        self.bar: Any = None
        if self.console.is_terminal:
            from rich import progress as rp

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

    def finish(self, instance: dg.DagsterInstance, run_id: str) -> None:
        """Print the end of every step whose end event the listener has not seen, from the
        stored event log: the run's summary never follows a step left hanging at "…"."""
        ends = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_SKIPPED}
        for entry in instance.all_logs(run_id, of_type=ends):
            if entry.step_key and entry.step_key not in self.ended:
                self(entry)

    def _label(self, step: str) -> str:
        parts = step.split("__")
        name = f"{parts[2]} {parts[1]}" if len(parts) == 3 else parts[-1]
        return f"[{self.index[step]}/{self.total}] {name} {self.span}"

    def _advance(self, step: str, n: int) -> None:
        n = min(n, self.partitions - self.done.get(step, 0))
        self.done[step] = self.done.get(step, 0) + n
        if self.bar is not None and n > 0:
            self.bar.advance(self.task, n)

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
            meta = entry.asset_materialization.metadata
            by_partition = getattr(meta.get("rows_by_partition"), "value", None)
            if isinstance(by_partition, dict):
                self.rows[step] = sum(int(v or 0) for v in by_partition.values())
            elif meta.get("dagster/row_count") is not None and step.count("__") == 2:
                self.rows[step] = int(meta["dagster/row_count"].value)
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
