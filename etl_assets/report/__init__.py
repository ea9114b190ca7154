"""The per-partition report: KPI tables and a chart, per-source counts and check outcomes.

Rendered from Jinja2 templates to HTML and Markdown files, and to Markdown for the UI. Charts
(`report.charts`) are PNGs embedded as data URLs, so a report is one self-contained file; a
chart whose data did not change is reused, and the report says since when.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import pandas as pd
from babel.dates import get_timezone_location
from upath import UPath

from etl_assets.core.partitions import Window
from etl_assets.io.preview import format_cell as fmt
from etl_assets.io.preview import markdown_table, numeric_columns
from etl_assets.report.charts import Chart, ChartStore, kpi_chart, trend_chart
from etl_assets.report.charts import kpi_figure as kpi_figure  # re-exported
from etl_assets.report.charts import trend_figure as trend_figure  # re-exported
from etl_assets.spec import KpiSpec, PipelineSpec, check_name
from etl_assets.warehouses.postgres import failures_table

templates = jinja2.Environment(
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
    # This partition's load: scd2 versions, rows in <table>__failures, schema drift events.
    versions_opened: int | None = None
    versions_closed: int | None = None
    failures_stored: int | None = None
    drift: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ReportRun:
    """Where a page came from, so a reader can tell how fresh it is and open the run."""

    generated_at: dt.datetime
    run_id: str | None = None
    run_url: str | None = None


@dataclass
class RenderedReport:
    markdown: str
    html: str
    md_path: str
    html_path: str


_NUM = ' class="num"'


def html_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p><em>No rows.</em></p>"
    numeric = numeric_columns(frame)
    head = "".join(
        f'<th{_NUM if n else ""}>{html.escape(str(c))}</th>' for c, n in zip(frame.columns, numeric)
    )
    rows = "".join(
        "<tr>" + "".join(
            f'<td{_NUM if n else ""}>{html.escape(fmt(v))}</td>' for v, n in zip(r, numeric)
        ) + "</tr>"
        for r in frame.itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


# --- words ----------------------------------------------------------------------------------


def place(timezone: str) -> str:
    """`São Paulo time` for America/Sao_Paulo: what a reader calls the pipeline's clock."""
    if timezone.upper() in ("UTC", "ETC/UTC", "GMT"):
        return "UTC"
    return f"{get_timezone_location(timezone, locale='en', return_city=True)} time"


def _day(d: dt.datetime) -> str:
    return f"{d.day} {d:%b %Y}"


def window_words(spec: PipelineSpec, window: Window) -> str:
    """The window as a reader names it: `week of 22 Nov 2026`, `22 Nov 2026`, `November 2026`."""
    start, end, cadence = window.start, window.end, spec.partitions.cadence
    if cadence == "weekly":
        return f"week of {_day(start)}"
    if cadence == "daily":
        return _day(start)
    if cadence == "monthly":
        return f"{start:%B %Y}"
    last = end - dt.timedelta(microseconds=1)
    if last.date() == start.date():
        return f"{_day(start)} {start:%H:%M}–{end:%H:%M}"
    return f"{_day(start)} {start:%H:%M} to {_day(end)} {end:%H:%M}"


def range_words(spec: PipelineSpec, first: Window, last: Window) -> str:
    """`weeks of 9 Mar 2025 to 16 Mar 2025`: a range of partitions in the same words."""
    if first.key == last.key:
        return window_words(spec, first)
    words = f"{window_words(spec, first)} to {window_words(spec, last)}"
    return words.replace("week of", "weeks of", 1).replace(" to week of ", " to ")


def _clock(spec: PipelineSpec, at: dt.datetime) -> str:
    local = at.astimezone(ZoneInfo(spec.timezone))
    return f"{_day(local)}, {local:%H:%M} {place(spec.timezone)}"


def generated_words(spec: PipelineSpec, at: dt.datetime) -> str:
    return f"Generated {_clock(spec, at)}"


def chart_words(spec: PipelineSpec, chart: Chart | None) -> str:
    """`Chart unchanged since 9 Mar 2025, 14:02 New York time` for a reused chart, else nothing."""
    if chart is None or not chart.reused or chart.drawn_at is None:
        return ""
    return f"Chart unchanged since {_clock(spec, chart.drawn_at)}"


# --- headline and rows ------------------------------------------------------------------------


def _totals(frame: pd.DataFrame) -> dict[str, Any]:
    """The sum of each numeric column, identifiers aside."""
    out: dict[str, Any] = {}
    for c, numeric in zip(frame.columns, numeric_columns(frame)):
        if numeric and not str(c).lower().endswith("id"):
            out[str(c)] = frame[c].dropna().sum()
    return out


def _change(now: Any, before: Any) -> str:
    if before is None or not before:
        return "–"
    pct = (float(now) - float(before)) / abs(float(before)) * 100
    return f"{pct:+.1f}%"


def headline(
    kpis: list[tuple[KpiSpec, pd.DataFrame]], previous: list[tuple[KpiSpec, pd.DataFrame]] | None
) -> list[dict[str, str]]:
    """The first KPI's totals, each against the previous window's."""
    if not kpis:
        return []
    kpi, frame = kpis[0]
    before: dict[str, Any] = {}
    for k, df in previous or []:
        if k.name == kpi.name:
            before = _totals(df)
    return [
        {"name": name.replace("_", " ").capitalize(), "now": fmt(value),
         "before": fmt(before.get(name)) if previous is not None else "",
         "change": _change(value, before.get(name)) if previous is not None else ""}
        for name, value in _totals(frame).items()
    ]


def samples_text(samples: list[Any]) -> str:
    """Sample values as values: a compound key reads `(customer_id=3, product_sku=SKU-0001)`."""
    return ", ".join(f"({fmt(v)})" if isinstance(v, dict) else fmt(v) for v in samples or [])


def result_word(check: dict[str, Any]) -> str:
    return "PASS" if check.get("passed") else ("FAIL" if check.get("severity") == "error" else "WARN")


def check_rows(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check outcomes as the report shows them."""
    return [
        {**c, "result": result_word(c), "unexpected": fmt(c.get("unexpected_count")),
         "samples_text": samples_text(c.get("samples") or [])}
        for c in checks
    ]


def contracts_context(spec: PipelineSpec, partition: str, sources: list[SourceSummary]) -> dict[str, list[dict[str, Any]]]:
    """Graded checks with their thresholds and outcome, drift, scd2 versions, stored failures."""
    declared = {(src.name, check_name(c)): c for src in spec.sources for c in src.checks}
    graded, drift, versions, failures = [], [], [], []
    for s in sources:
        for c in s.checks:
            d = declared.get((s.name, c.get("name", "")))
            if d is not None and d.graded:
                graded.append({
                    "source": s.name, "check": c["name"], "warn_if": d.warn_if or "—", "error_if": d.error_if or "—",
                    "outcome": result_word(c), "threshold": c.get("threshold") or "none", "failing": fmt(c.get("unexpected_count")),
                })
        drift += [{"source": s.name, "partition": partition, **{k: e.get(k) or "—" for k in ("column", "change", "before", "after")}}
                  for e in s.drift]
        src = next((x for x in spec.sources if x.name == s.name), None)
        if src is not None and src.load.strategy == "scd2" and s.versions_opened is not None:
            versions.append({"source": s.name, "partition": partition, "opened": fmt(s.versions_opened),
                             "closed": fmt(s.versions_closed)})
        if s.failures_stored is not None and src is not None and any(c.store_failures for c in src.checks):
            failures.append({"source": s.name, "table": failures_table(spec.target(src)), "rows": fmt(s.failures_stored)})
    return {"graded": graded, "drift": drift, "versions": versions, "failures": failures}


def _source_row(s: SourceSummary) -> dict[str, Any]:
    counts = ("rows_extracted", "inserted", "updated", "unchanged", "deleted", "quarantined")
    return {**s.__dict__, **{k: fmt(getattr(s, k)) for k in counts}, "checks": check_rows(s.checks)}


def _kpi_context(spec: PipelineSpec, kpi: KpiSpec, frame: pd.DataFrame, charts: ChartStore, report: str) -> dict[str, Any]:
    chart = kpi_chart(charts, report, frame, kpi)
    return {"title": kpi.title or kpi.name, "markdown": markdown_table(frame), "html": html_table(frame),
            "chart": chart.png if chart else None, "chart_note": chart_words(spec, chart)}


def page_context(
    spec: PipelineSpec, when: str, kpis: list[tuple[KpiSpec, pd.DataFrame]], status: str, status_reason: str,
    run: ReportRun | None, *, charts: ChartStore | None = None, report: str = "",
) -> dict[str, Any]:
    """What every report page says: title, window, status, KPIs and where it came from.

    `charts` keeps and reuses the charts of the report named `report` (default: drawn, not kept).
    """
    run = run or ReportRun(dt.datetime.now(dt.timezone.utc))
    charts = charts if charts is not None else ChartStore()
    return {
        "title": spec.report.title or f"{spec.name} report",
        "when": f"{when}, {place(spec.timezone)}",
        "status": status,
        "status_reason": status_reason,
        "generated": generated_words(spec, run.generated_at),
        "run_id": (run.run_id or "")[:8],
        "run_url": run.run_url,
        "kpis": [_kpi_context(spec, k, df, charts, report) for k, df in kpis],
    }


PERIODS = {"weekly": "week", "daily": "day", "monthly": "month", "hourly": "hour"}


def render(
    spec: PipelineSpec,
    window: Window,
    kpis: list[tuple[KpiSpec, pd.DataFrame]],
    sources: list[SourceSummary],
    *,
    status: str = "success",
    status_reason: str = "",
    trend: dict[str, list[tuple[str, int]]] | None = None,
    previous: tuple[Window, list[tuple[KpiSpec, pd.DataFrame]]] | None = None,
    run: ReportRun | None = None,
    charts: ChartStore | None = None,
) -> tuple[str, str]:
    """The report of one window, as Markdown (for the UI) and a self-contained HTML page;
    `charts` keeps and reuses its charts (default: drawn, not kept)."""
    charts = charts if charts is not None else ChartStore()
    rows_chart = trend_chart(charts, window.key, trend or {})
    context = {
        **page_context(spec, window_words(spec, window), kpis, status, status_reason, run,
                       charts=charts, report=window.key),
        "partition": window.key,
        "period": PERIODS.get(spec.partitions.cadence, "window"),
        "headline": headline(kpis, previous[1] if previous else None),
        "previous": window_words(spec, previous[0]) if previous else "",
        "trend": rows_chart.png if rows_chart else None,
        "trend_note": chart_words(spec, rows_chart),
        "sources": [_source_row(s) for s in sources],
        "contracts": contracts_context(spec, window.key, sources),
    }
    md = templates.get_template("report.md.j2").render(**context)
    page = templates.get_template("report.html.j2").render(**context)
    return md, page


def reports_folder(base: str, pipeline: str) -> UPath:
    """`<base>/<pipeline>/reports/`: the reports, and their kept charts in `.charts/`."""
    return UPath(base) / pipeline / "reports"


def chart_store(base: str, pipeline: str) -> ChartStore:
    """The store that keeps `pipeline`'s report charts beside its reports."""
    return ChartStore(reports_folder(base, pipeline) / ".charts")


def write(base: str, pipeline: str, partition: str, md: str, page: str) -> RenderedReport:
    """Write both files atomically under `<base>/<pipeline>/reports/`."""
    folder = reports_folder(base, pipeline)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext, text in (("md", md), ("html", page)):
        final = folder / f"{partition}.{ext}"
        tmp = folder / f".{partition}.{ext}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.rename(final)
        paths[ext] = str(final)
    return RenderedReport(md, page, paths["md"], paths["html"])
