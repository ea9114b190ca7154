"""The per-partition report: KPI tables and a chart, per-source counts and check outcomes.

Rendered from Jinja2 templates to HTML and Markdown files, and to Markdown for the UI. Charts
are PNGs embedded as data URLs, so a report is one self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import Any

import jinja2
import pandas as pd
from upath import UPath

from etl_assets.partitions import Window
from etl_assets.spec import KpiSpec, PipelineSpec

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("etl_assets", "templates"),
    autoescape=jinja2.select_autoescape(["html.j2"]),
    trim_blocks=False,
    keep_trailing_newline=True,
)


@dataclass
class SourceSummary:
    name: str
    status: str = "success"
    rows_extracted: int | None = None
    inserted: int | None = None
    updated: int | None = None
    unchanged: int | None = None
    deleted: int | None = None
    quarantined: int | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass
class RenderedReport:
    markdown: str
    html: str
    md_path: str
    html_path: str


def chart_png(frame: pd.DataFrame, kpi: KpiSpec) -> str | None:
    if kpi.chart is None or frame.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    x = frame[kpi.chart.x].astype(str)
    y = pd.to_numeric(frame[kpi.chart.y], errors="coerce")
    if kpi.chart.type == "line":
        ax.plot(x, y, marker="o", color="#3b82f6")
    else:
        ax.bar(x, y, color="#3b82f6")
    ax.set_title(kpi.title or kpi.name)
    ax.set_ylabel(kpi.chart.y)
    ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def trend_png(trend: dict[str, list[tuple[str, int]]]) -> str | None:
    """Rows per partition for each source over the last partitions: a break shows at a glance."""
    if not any(trend.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 2.6), dpi=100)
    for name, points in trend.items():
        if points:
            ax.plot([p for p, _ in points], [n for _, n in points], marker="o", label=name)
    ax.set_title("Rows per partition")
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _fmt(v: Any) -> str:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return ""
    if isinstance(v, float):
        return f"{v:,.2f}"
    return str(v)


def markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_No rows._"
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    sep = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(_fmt(v).replace("|", "\\|") for v in r) + " |" for r in frame.itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def html_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p><em>No rows.</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>"
        for r in frame.itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def render(
    spec: PipelineSpec,
    window: Window,
    kpis: list[tuple[KpiSpec, pd.DataFrame]],
    sources: list[SourceSummary],
    *,
    status: str = "success",
    status_reason: str = "",
    trend: dict[str, list[tuple[str, int]]] | None = None,
) -> tuple[str, str]:
    context = {
        "title": spec.report.title or f"{spec.name} report",
        "partition": window.key,
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "timezone": spec.timezone,
        "status": status,
        "status_reason": status_reason,
        "kpis": [
            {
                "title": k.title or k.name,
                "markdown": markdown_table(df),
                "html": html_table(df),
                "chart": chart_png(df, k),
            }
            for k, df in kpis
        ],
        "trend": trend_png(trend or {}),
        "sources": [
            {**s.__dict__, **{k: ("" if v is None else v) for k, v in s.__dict__.items() if k != "checks"}}
            for s in sources
        ],
    }
    md = _env.get_template("report.md.j2").render(**context)
    page = _env.get_template("report.html.j2").render(**context)
    return md, page


def write(base: str, pipeline: str, partition: str, md: str, page: str) -> RenderedReport:
    """Write both files atomically under `<base>/<pipeline>/reports/`."""
    folder = UPath(base) / pipeline / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext, text in (("md", md), ("html", page)):
        final = folder / f"{partition}.{ext}"
        tmp = folder / f".{partition}.{ext}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.rename(final)
        paths[ext] = str(final)
    return RenderedReport(md, page, paths["md"], paths["html"])
