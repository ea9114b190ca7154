"""From results.json's runs to the numbers RESULTS.md shows: medians, ratios, headlines."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.scenarios.cli import VARIANTS as CLI_VARIANTS
from benchmarks.scenarios.small import LABEL as SMALL_LABEL
from benchmarks.scenarios.small import VARIANTS as SMALL_VARIANTS

VARIANT_TITLES = {
    "copy_limit": "(a) binary COPY pipe, no transform — physical limit",
    "sql_upsert": "(b) COPY → staging + SQL upsert — idempotent-upsert limit",
    "etl_assets": "(c) etl-assets end to end (Dagster, one run)",
    "dlt_merge": "(d) dlt merge, pyarrow backend",
    "pandas_upsert": "(e) pandas to_sql(method=\"multi\") + SQL upsert",
}
SCENARIO_TITLES = {
    "first": "first load",
    "nochange": "no-change rerun",
    "changed": "10% changed",
}
RESULT_LINE = "end_to_end_vs_sql_limit_1m"
# The machine-readable lines near the top of RESULTS.md, in order (issue 18).
HEADLINES = [
    RESULT_LINE,
    "dlt_vs_end_to_end_1m",
    "rerun_vs_sql_nochange_1m",
    "ui_run_vs_cli_run",
    "small_partitions_first_vs_sql",
    "small_partitions_rerun_vs_sql",
    "cli_history_wall_s",
    "tiny_run_wall_s",
    "peak_rss_mb_1m",
    "peak_rss_52w_vs_1w",
]


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def headlines(s: dict[str, Any]) -> dict[str, float | None]:
    """Each headline from the medians of this one suite run."""
    m1 = s["table"].get("1m", {})
    first, nochange = m1.get("first", {}), m1.get("nochange", {})
    small, cli = s["small"], s["cli"]

    def get(cells: dict[str, Any], variant: str, key: str) -> float | None:
        return cells.get(variant, {}).get(key)

    return {
        RESULT_LINE: get(first, "etl_assets", "vs_sql_limit"),
        "dlt_vs_end_to_end_1m": _ratio(get(first, "dlt_merge", "wall_s"), get(first, "etl_assets", "wall_s")),
        "rerun_vs_sql_nochange_1m": get(nochange, "etl_assets", "vs_sql_limit"),
        "ui_run_vs_cli_run": _ratio(cli.get("ui_run"), cli.get("cli_run")),
        "small_partitions_first_vs_sql": get(small.get("first", {}), "small_etl", "vs_sql_limit"),
        "small_partitions_rerun_vs_sql": get(small.get("nochange", {}), "small_etl", "vs_sql_limit"),
        "cli_history_wall_s": cli.get("cli_history"),
        "tiny_run_wall_s": cli.get("tiny_run"),
        "peak_rss_mb_1m": get(first, "etl_assets", "peak_rss_mb"),
        "peak_rss_52w_vs_1w": s["rss_ratio_52w_vs_1w"],
    }


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    """Medians per (size, scenario, variant), ratios to the SQL limit, RSS, overhead, headlines."""
    runs = data["runs"]
    table = cell_table([r for r in runs if r["variant"] in VARIANT_TITLES], "sql_upsert")
    out = _summarize_tables(data, runs, table)
    out["small"] = cell_table([r for r in runs if r["variant"] in SMALL_VARIANTS], "small_sql").get(SMALL_LABEL, {})
    out["cli"] = {v: median([r["wall_s"] for r in runs if r["variant"] == v]) for v in CLI_VARIANTS}
    out["headlines"] = headlines(out)
    return out


def cell_table(runs: list[dict[str, Any]], limit_variant: str) -> dict[str, Any]:
    """label → scenario → variant → medians of its runs, and `vs_sql_limit` against `limit_variant`."""
    table: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for r in runs:
        cell = table.setdefault(r["label"], {}).setdefault(r["scenario"], {}).setdefault(r["variant"], {"runs": []})
        cell["runs"].append(r)
    for scenarios in table.values():
        for variants in scenarios.values():
            for cell in variants.values():
                rs = cell["runs"]
                cell.update(
                    n=len(rs),
                    wall_s=median([r["wall_s"] for r in rs]),
                    rows=rs[0]["rows"],
                    peak_rss_mb=median([r["peak_rss_mb"] for r in rs]),
                    counts={f: rs[-1].get(f) for f in ("inserted", "updated", "unchanged")},
                )
                cell["rows_per_s"] = cell["rows"] / cell["wall_s"] if cell["wall_s"] else None
            limit = variants.get(limit_variant, {}).get("wall_s")
            for cell in variants.values():
                cell["vs_sql_limit"] = cell["wall_s"] / limit if limit and cell["wall_s"] else None
    return table


def _summarize_tables(data: dict[str, Any], runs: list[dict[str, Any]], table: dict[str, Any]) -> dict[str, Any]:
    # pandas: measured on a slice, extrapolated to the full sizes at the measured rate.
    extrapolated: dict[str, dict[str, Any]] = {}
    slice_ = table.get("1w", {})
    for label in ("1w", "1m"):
        rows = data["sizes"][label]["rows"]
        for scenario in SCENARIO_TITLES:
            cell = slice_.get(scenario, {}).get("pandas_upsert")
            if not cell or not cell["rows_per_s"]:
                continue
            est = rows / cell["rows_per_s"]
            limit = table.get(label, {}).get(scenario, {}).get("sql_upsert", {}).get("wall_s")
            extrapolated.setdefault(label, {})[scenario] = {
                "wall_s": est, "rows": rows, "measured_rows": cell["rows"], "measured_wall_s": cell["wall_s"],
                "rows_per_s": cell["rows_per_s"], "vs_sql_limit": est / limit if limit else None,
            }
    one = table.get("1w", {}).get("first", {}).get("etl_assets", {}).get("peak_rss_mb")
    big = table.get("52w", {}).get("first", {}).get("etl_assets", {}).get("peak_rss_mb")
    overhead = [r for r in runs if r["variant"] == "overhead"]
    validate = [r for r in runs if r["variant"] == "definitions_validate"]
    return {
        "table": table,
        "pandas_extrapolated": extrapolated,
        "rss_1w_mb": one,
        "rss_52w_mb": big,
        "rss_ratio_52w_vs_1w": big / one if big and one else None,
        "overhead": summarize_overhead(overhead),
        "validate": {
            label: median([r["wall_s"] for r in validate if r["label"] == label])
            for label in dict.fromkeys(r["label"] for r in validate)
        },
    }


def summarize_overhead(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in dict.fromkeys(r.get("instance_kind", "test") for r in runs):
        rs = [r for r in runs if r.get("instance_kind", "test") == kind]
        b = [r["breakdown"] for r in rs]
        phases = {k: median([x[k] for x in b]) for k in b[0] if k != "steps_s"}
        steps = {s: median([x["steps_s"].get(s) for x in b]) for s in b[0]["steps_s"]}
        startup = median([r.get("startup_s") for r in rs])
        exit_s = median([
            r["process_wall_s"] - (r.get("startup_s") or 0) - r["breakdown"]["imports_s"] - r["wall_s"]
            - r["breakdown"]["validate_loadable_s"]
            for r in rs
        ])
        out[kind] = {
            "n": len(rs),
            "interpreter_startup_s": startup,
            "exit_s": exit_s,
            **phases,
            "steps_s": steps,
            "wall_s": median([r["wall_s"] for r in rs]),
            "process_wall_s": median([r["process_wall_s"] for r in rs]),
            "peak_rss_mb": median([r["peak_rss_mb"] for r in rs]),
        }
    return out
