"""Report charts: a KPI's bar or line chart and the rows-per-partition trend, as PNG data.

A chart is drawn only when what it shows changed. Each is keyed by a hash of exactly what its
drawing reads (the points, the KPI's chart settings and title, `DRAWING_VERSION` and
matplotlib's version) and kept as `<reports>/.charts/<report>.<sha256>.png`, so a rerun over
unchanged data reuses its PNGs without starting matplotlib. A chart file belongs to the report
named first in it, so pruning one report's old charts never touches another's.

matplotlib loads lazily: it is heavy, and only a chart that has to be drawn needs it.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import importlib.metadata
import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from upath import UPath

from etl_assets.spec import KpiSpec

# Part of every chart's key: bump it when a change to the drawing code changes what a chart
# looks like, so no report keeps showing a PNG the old code drew.
DRAWING_VERSION = 1
# The PNG text chunk that records when a chart was first drawn (a standard PNG keyword).
DRAWN_AT = "Creation Time"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"


@functools.cache
def _matplotlib_version() -> str:
    """Read from the installed distribution, so a reused chart does not import matplotlib."""
    try:
        return importlib.metadata.version("matplotlib")
    except importlib.metadata.PackageNotFoundError:
        return ""


# --- drawing -------------------------------------------------------------------------------


def _figure(height: float) -> tuple[Any, Any]:
    import matplotlib  # heavy and optional: loaded when a chart is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): no display backend is ever tried

    return plt.subplots(figsize=(6.4, height), dpi=100)


def _png(fig: Any, drawn_at: dt.datetime) -> bytes:
    import matplotlib.pyplot as plt  # heavy: loaded (already, by _figure) only for charts

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={DRAWN_AT: drawn_at.isoformat()})
    plt.close(fig)
    return buf.getvalue()


def _from_zero(ax: Any) -> None:
    """Bars and lines measured from zero: a truncated axis makes a 5% change look like 50%."""
    ax.set_ylim(bottom=0, top=max(ax.get_ylim()[1], 1))
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:,.0f}")


def kpi_points(frame: pd.DataFrame, kpi: KpiSpec) -> dict[str, Any]:
    """Everything a KPI's chart shows, as plain values: what it is drawn from and keyed by."""
    chart = kpi.chart
    assert chart is not None, "only a KPI with a chart is drawn"
    return {
        "kind": "kpi", "type": chart.type, "title": kpi.title or kpi.name, "ylabel": chart.y,
        "x": frame[chart.x].astype(str).tolist(),
        "y": pd.to_numeric(frame[chart.y], errors="coerce").astype(float).tolist(),
    }


def _draw_kpi(points: dict[str, Any]) -> Any:
    fig, ax = _figure(3.2)
    if points["type"] == "line":
        ax.plot(points["x"], points["y"], marker="o", color="#3b82f6")
    else:
        ax.bar(points["x"], points["y"], color="#3b82f6")
    ax.set_title(points["title"])
    ax.set_ylabel(points["ylabel"])
    ax.tick_params(axis="x", labelrotation=30)
    _from_zero(ax)
    return fig


def kpi_figure(frame: pd.DataFrame, kpi: KpiSpec) -> Any:
    return _draw_kpi(kpi_points(frame, kpi))


def trend_points(trend: dict[str, list[tuple[str, int]]]) -> dict[str, Any]:
    """Rows per partition of every source, in legend order: a source with nothing loaded shows
    as a flat zero."""
    keys = sorted({p for points in trend.values() for p, _ in points})
    return {
        "kind": "trend", "x": keys,
        "series": [[name, [dict(points).get(k, 0) for k in keys]] for name, points in trend.items()],
    }


def _draw_trend(points: dict[str, Any]) -> Any:
    fig, ax = _figure(2.6)
    for name, counts in points["series"]:
        ax.plot(points["x"], counts, marker="o", label=name)
    ax.set_title("Rows per partition")
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    ax.legend(fontsize=7)
    _from_zero(ax)
    return fig


def trend_figure(trend: dict[str, list[tuple[str, int]]]) -> Any:
    return _draw_trend(trend_points(trend))


# --- reuse ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    png: str  # base64, for a data URL
    drawn_at: dt.datetime | None  # when this picture was first drawn
    reused: bool


def chart_key(points: dict[str, Any]) -> str:
    """sha256 of what a drawing reads and of the code that draws it."""
    keyed = {"points": points, "drawing": DRAWING_VERSION, "matplotlib": _matplotlib_version()}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()


def _drawn_at(png: bytes) -> dt.datetime | None:
    """When a kept chart was drawn; None for anything but a complete PNG that records it."""
    if not png.startswith(_PNG_SIGNATURE) or not png.endswith(_PNG_END):
        return None
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(png):
        length, kind = int.from_bytes(png[pos:pos + 4], "big"), png[pos + 4:pos + 8]
        if kind == b"tEXt":
            name, _, value = png[pos + 8:pos + 8 + length].partition(b"\0")
            if name.decode("latin-1") == DRAWN_AT:
                try:
                    return dt.datetime.fromisoformat(value.decode("latin-1"))
                except ValueError:
                    return None
        pos += 12 + length  # length, type, data, CRC
    return None


def _keep(folder: UPath, name: str, data: bytes) -> None:
    """Written to a temporary name of its own, then renamed, as reports are: a reader sees all
    of a chart or none of it, even with two writers."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
    tmp.write_bytes(data)
    tmp.rename(folder / name)


@dataclass
class ChartStore:
    """The charts of the reports one step renders, kept under `folder` (None: drawn every
    time, kept nowhere); counts what it drew and reused, for the step's metadata."""

    folder: UPath | None = None
    drawn: int = 0
    reused: int = 0
    used: dict[str, set[str]] = field(default_factory=dict)  # report -> its chart files now

    def chart(self, report: str, points: dict[str, Any], draw: Callable[[dict[str, Any]], Any]) -> Chart:
        """`report`'s chart of `points`: the kept PNG when one exists, else drawn and kept."""
        name = f"{report}.{chart_key(points)}.png"
        self.used.setdefault(report, set()).add(name)
        if self.folder is not None:
            try:
                data = (self.folder / name).read_bytes()
            except FileNotFoundError:
                data = b""
            drawn_at = _drawn_at(data)
            if drawn_at is not None:
                self.reused += 1
                return Chart(base64.b64encode(data).decode(), drawn_at, reused=True)
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        data = _png(draw(points), now)
        self.drawn += 1
        if self.folder is not None:
            _keep(self.folder, name, data)
        return Chart(base64.b64encode(data).decode(), now, reused=False)

    def prune(self) -> int:
        """Delete the charts of the reports rendered here that those reports no longer show;
        other reports' charts stay. Returns how many were deleted."""
        if self.folder is None or not self.used or not self.folder.exists():
            return 0
        pruned = 0
        for path in list(self.folder.iterdir()):
            name = path.name
            if name.startswith(".") or not name.endswith(".png"):
                continue  # another writer's temporary file
            owner = name.removesuffix(".png").rsplit(".", 1)[0]
            if owner in self.used and name not in self.used[owner]:
                path.unlink(missing_ok=True)
                pruned += 1
        return pruned


def kpi_chart(store: ChartStore, report: str, frame: pd.DataFrame, kpi: KpiSpec) -> Chart | None:
    if kpi.chart is None or frame.empty:
        return None
    return store.chart(report, kpi_points(frame, kpi), _draw_kpi)


def trend_chart(store: ChartStore, report: str, trend: dict[str, list[tuple[str, int]]]) -> Chart | None:
    """Rows per partition for each source over the last partitions: a break shows at a glance."""
    if not any(trend.values()):
        return None
    return store.chart(report, trend_points(trend), _draw_trend)
