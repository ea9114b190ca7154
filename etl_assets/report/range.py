"""One report over a range of partitions: KPIs over the whole range, rows per partition, and
each check rolled up across the partitions.

Per-partition counts of offending *values* do not add up (the same orphan key in every week is
one orphan key over the year), so the roll-up counts distinct sample values, while offending
rows, which do add up, are summed.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from etl_assets import quality
from etl_assets.core.partitions import Window
from etl_assets.report import (
    ChartStore,
    ReportRun,
    SourceSummary,
    fmt,
    page_context,
    range_words,
    result_word,
    samples_text,
    templates,
    window_words,
)
from etl_assets.spec import KpiSpec, PipelineSpec


def range_name(first: str, last: str) -> str:
    """`<first>_<last>`: the file name of the report over a range, and the owner of its charts."""
    return f"{first}_{last}"


def rows_table(spec: PipelineSpec, windows: list[Window], per_partition: dict[str, list[SourceSummary]]) -> list[list[str]]:
    """One row per partition: its window in words, then the rows each source loaded for it."""
    table = []
    for w in windows:
        loaded = {s.name: s for s in per_partition.get(w.key, [])}
        cells = [window_words(spec, w)]
        for source in spec.sources:
            s = loaded.get(source.name)
            counts = [getattr(s, f) for f in ("inserted", "updated", "unchanged")] if s else []
            cells.append(fmt(sum(c for c in counts if c is not None)) if any(c is not None for c in counts) else "")
        table.append(cells)
    return table


def rolled_up_checks(spec: PipelineSpec, per_partition: dict[str, list[SourceSummary]]) -> list[dict[str, Any]]:
    """Each check across the range: how many partitions it failed in, the offending rows summed,
    and the distinct offending values (`≥` when a partition had more than its samples show)."""
    by_check: dict[tuple[str, str], dict[str, Any]] = {}
    for summaries in per_partition.values():
        for s in summaries:
            for c in s.checks:
                agg = by_check.setdefault((s.name, c["name"]), {
                    "source": s.name, "name": c["name"], "severity": c.get("severity"), "passed": True,
                    "partitions": 0, "failing": 0, "rows": 0, "values": {}, "truncated": False,
                })
                agg["partitions"] += 1
                agg["failing"] += 0 if c.get("passed") else 1
                agg["passed"] = agg["passed"] and bool(c.get("passed"))
                agg["rows"] += int(c.get("unexpected_count") or 0)
                samples = c.get("samples") or []
                agg["truncated"] = agg["truncated"] or len(samples) >= quality.SAMPLE_SIZE
                for v in samples:
                    agg["values"].setdefault(samples_text([v]), v)
    order = {(s.name, quality.check_name(c)): i for i, (s, c) in enumerate((s, c) for s in spec.sources for c in s.checks)}
    rows = []
    for key in sorted(by_check, key=lambda k: order.get(k, len(order))):
        agg = by_check[key]
        distinct = len(agg["values"])
        rows.append({
            **agg,
            "result": result_word(agg),
            "failing_text": f"{agg['failing']} of {agg['partitions']}",
            "rows_text": fmt(agg["rows"]),
            "distinct_text": ("≥" if agg["truncated"] else "") + fmt(distinct) if distinct else "",
            "samples_text": samples_text(sorted(agg["values"].values(), key=str)[: quality.SAMPLE_SIZE]),
        })
    return rows


def render_range(
    spec: PipelineSpec,
    windows: list[Window],
    kpis: list[tuple[KpiSpec, pd.DataFrame]],
    per_partition: dict[str, list[SourceSummary]],
    *,
    run: ReportRun | None = None,
    status: str = "success",
    status_reason: str = "",
    charts: ChartStore | None = None,
) -> tuple[str, str]:
    """Markdown and HTML of the range `windows[0]` … `windows[-1]`; `kpis` ran over all of it.
    `charts` keeps and reuses its charts (default: drawn, not kept)."""
    context = {
        **page_context(spec, range_words(spec, windows[0], windows[-1]), kpis, status, status_reason, run,
                       charts=charts, report=range_name(windows[0].key, windows[-1].key)),
        "sources": [s.name for s in spec.sources],
        "rows": rows_table(spec, windows, per_partition),
        "checks": rolled_up_checks(spec, per_partition),
    }
    md = templates.get_template("report_range.md.j2").render(**context)
    page = templates.get_template("report_range.html.j2").render(**context)
    return md, page
