"""Report charts: a KPI's bar or line chart and the rows-per-partition trend, as PNG data.

matplotlib loads lazily: it is heavy, and only a report with a chart or a trend needs it.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import pandas as pd

from etl_assets.spec import KpiSpec


def _figure(height: float) -> tuple[Any, Any]:
    import matplotlib  # heavy and optional: loaded when a chart is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): no display backend is ever tried

    return plt.subplots(figsize=(6.4, height), dpi=100)


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt  # heavy: loaded (already, by _figure) only for charts

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _from_zero(ax: Any) -> None:
    """Bars and lines measured from zero: a truncated axis makes a 5% change look like 50%."""
    ax.set_ylim(bottom=0, top=max(ax.get_ylim()[1], 1))
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:,.0f}")


def kpi_figure(frame: pd.DataFrame, kpi: KpiSpec) -> Any:
    chart = kpi.chart
    assert chart is not None, "only a KPI with a chart is drawn"
    fig, ax = _figure(3.2)
    x = frame[chart.x].astype(str)
    y = pd.to_numeric(frame[chart.y], errors="coerce").astype(float)
    if chart.type == "line":
        ax.plot(x, y, marker="o", color="#3b82f6")
    else:
        ax.bar(x, y, color="#3b82f6")
    ax.set_title(kpi.title or kpi.name)
    ax.set_ylabel(chart.y)
    ax.tick_params(axis="x", labelrotation=30)
    _from_zero(ax)
    return fig


def chart_png(frame: pd.DataFrame, kpi: KpiSpec) -> str | None:
    if kpi.chart is None or frame.empty:
        return None
    return _png(kpi_figure(frame, kpi))


def trend_figure(trend: dict[str, list[tuple[str, int]]]) -> Any:
    """Rows per partition of every source: a source with nothing loaded shows as a flat zero."""
    fig, ax = _figure(2.6)
    keys = sorted({p for points in trend.values() for p, _ in points})
    for name, points in trend.items():
        counts = dict(points)
        ax.plot(keys, [counts.get(k, 0) for k in keys], marker="o", label=name)
    ax.set_title("Rows per partition")
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    ax.legend(fontsize=7)
    _from_zero(ax)
    return fig


def trend_png(trend: dict[str, list[tuple[str, int]]]) -> str | None:
    """Rows per partition for each source over the last partitions: a break shows at a glance."""
    if not any(trend.values()):
        return None
    return _png(trend_figure(trend))


