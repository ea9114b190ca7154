"""Where the end-to-end time goes, and what the alternatives would save.

    .venv/bin/python -m benchmarks.profile [--weeks 1] [--out benchmarks/PROFILE.md]

Part 1 runs the benchmark pipeline in-process through Dagster (cold, then a no-change rerun)
with timers wrapped around the product's functions at run time (no product code is changed),
so each step's time splits into extract, Parquet, normalize parts, checks, COPY and SQL, and
what is left is Dagster's own. Part 2 times the same functions on one week's frame against
alternatives that produce the same result, and checks that they do.

Needs the full source data (`python -m benchmarks.run` generates it, or it is generated here).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import datagen
from benchmarks.common import pg_url, spec_dict, week_key
from benchmarks.profile_alternatives import SRC_DB, WH_DB, alternatives

HERE = Path(__file__).resolve().parent

TIMES: dict[str, float] = defaultdict(float)
CALLS: Counter = Counter()


def timed(name: str, fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[name] += time.perf_counter() - started
            CALLS[name] += 1

    return wrapper


def instrument() -> None:
    """Wrap the product's functions with timers (module attributes, looked up at call time)."""
    from etl_assets import quality, sources
    from etl_assets.io import storage
    from etl_assets.orchestration import assets
    from etl_assets.transform import normalize as norm
    from etl_assets.warehouses import postgres as warehouse

    sources.extract = timed("raw: sources.extract (COPY CSV → Arrow → pandas)", sources.extract)
    assets.latest_metadata = timed("raw: latest_metadata (instance query per partition)", assets.latest_metadata)
    assets.normalize = timed("normalized: normalize() total", assets.normalize)
    norm._cast = timed("normalized: _cast (types, strip, UTC)", norm._cast)
    norm.record_hashes = timed("normalized: record_hashes total", norm.record_hashes)
    if hasattr(norm, "_canonical_arrow"):
        norm._canonical_arrow = timed("normalized: record_hashes → _canonical_arrow", norm._canonical_arrow)
    else:
        norm._canonical = timed("normalized: record_hashes → _canonical", norm._canonical)
    quality.run_checks = timed("validated: quality.run_checks total", quality.run_checks)
    quality._gx = timed("validated: run_checks → _gx (import GX, context)", quality._gx)
    quality._gx_frame = timed("validated: run_checks → _gx_frame (copy for GX)", quality._gx_frame)
    if hasattr(quality, "_run_gx"):
        quality._run_gx = timed("validated: run_checks → _run_gx (GX suite on the frame)", quality._run_gx)
    if hasattr(assets, "write_atomic"):
        assets.write_atomic = timed("validated: write_atomic (quality JSON document)", assets.write_atomic)
    P = storage.ParquetIOManager
    P.dump_to_path = timed("parquet: dump_to_path (write zstd)", P.dump_to_path)
    if hasattr(assets, "write_partition"):  # layers written inside their steps
        assets.write_partition = timed("parquet: write_partition in a step (write zstd)", assets.write_partition)
        assets.copy_file = timed("validated: copy_file (the normalized file as validated)", assets.copy_file)
    P.load_from_path = timed("parquet: load_from_path (read)", P.load_from_path)
    P.handle_output = timed("parquet: handle_output total", P.handle_output)
    W = warehouse.Warehouse
    W.ensure_table = timed("loaded: ensure_table", W.ensure_table)
    W.load_partition = timed("loaded: load_partition total", W.load_partition)
    W._copy_in = staticmethod(timed("loaded: load_partition → _copy_in (Arrow → binary COPY)", W._copy_in))


def e2e(weeks: int, storage_dir: str, table: str = "src.orders") -> dict[str, Any]:
    import dagster as dg

    from etl_assets.definitions import build_defs
    from etl_assets.spec import parse_pipeline

    TIMES.clear()
    CALLS.clear()
    spec = parse_pipeline(spec_dict(table, target_schema="bench_profile"), "bench.yaml")
    defs = build_defs([spec])
    job = defs.resolve_job_def("bench_job")
    keys = [week_key(w) for w in range(weeks)]
    kw: dict[str, Any] = (
        {"partition_key": keys[0]}
        if weeks == 1
        else {"tags": {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}}
    )
    started = time.perf_counter()
    # Kept beside the storage, so the rerun sees the first run's history, as in production.
    home = os.path.join(os.path.dirname(storage_dir.rstrip("/")), "dagster_home")
    os.makedirs(home, exist_ok=True)
    with dg.instance_for_test(temp_dir=home) as instance:
        opened = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(["bench", layer, "orders"]) for layer in ("raw", "normalized", "validated", "loaded")],
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            **kw,
        )
        ran = time.perf_counter()
        steps: dict[str, float] = {}
        begun: dict[str, float] = {}
        for entry in instance.all_logs(result.run_id):
            ev = entry.dagster_event
            if ev is None or not ev.step_key:
                continue
            if ev.event_type == dg.DagsterEventType.STEP_START:
                begun[ev.step_key] = entry.timestamp
            elif ev.event_type == dg.DagsterEventType.STEP_SUCCESS:
                steps[ev.step_key.split("__")[1]] = entry.timestamp - begun[ev.step_key]
    assert result.success
    return {
        "wall_s": time.perf_counter() - started,
        "instance_s": opened - started,
        "run_s": ran - opened,
        "steps": steps,
        "times": dict(TIMES),
        "calls": dict(CALLS),
    }


# --- report ----------------------------------------------------------------------------------------


def render(weeks: int, runs: dict[str, dict[str, Any]], alts: list[dict[str, Any]], rows: int) -> str:
    lines = [
        "# Profile: where etl-assets spends a run",
        "",
        f"Generated by `python -m benchmarks.profile --weeks {weeks}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {rows:,} rows ({weeks} week(s)) of the benchmark "
        f"data set, one Dagster run in-process, load average {os.getloadavg()[0]:.1f} at the end; etl-assets "
        f"commit {os.environ.get('ETL_BENCH_PRODUCT') or 'working tree'}. "
        "Timers are wrapped around the product's functions at run time; nested timers are included in "
        "their callers' totals.",
        "",
    ]
    for title, run in runs.items():
        lines += [
            f"## {title}: {run['wall_s']:.2f} s wall ({run['instance_s']:.2f} s opening the instance, "
            f"{run['run_s']:.2f} s executing)",
            "",
            "| step | seconds |",
            "| --- | ---: |",
        ] + [f"| {k} | {v:.2f} |" for k, v in run["steps"].items()] + [
            f"| outside steps (Dagster: plan, events, run start/end) | {run['run_s'] - sum(run['steps'].values()):.2f} |",
            "",
            "| function | seconds | calls | share of execution |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, v in sorted(run["times"].items(), key=lambda kv: kv[0]):
            lines.append(f"| {name} | {v:.2f} | {run['calls'][name]} | {100 * v / run['run_s']:.0f}% |")
        lines.append("")
    lines += [
        "## One week's frame: the product's function vs an alternative with the same result",
        "",
        "Best of 2–3 timings each, in this process (great-expectations already imported).",
        "",
        "| component | product s | alternative | alternative s | same result | notes |",
        "| --- | ---: | --- | ---: | --- | --- |",
    ]
    for a in alts:
        alt = "–" if a["alt_s"] is None else f"{a['alt_s']:.3f}"
        same = "–" if a["same_result"] is None else ("yes" if a["same_result"] else "**no**")
        lines.append(f"| {a['component']} | {a['product_s']:.3f} | {a['alternative']} | {alt} | {same} | {a['note']} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    ap.add_argument("--weeks", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "PROFILE.md")
    ap.add_argument("--product-ref", help="profile etl_assets as of this git revision (e.g. HEAD)")
    args = ap.parse_args(argv)
    if args.product_ref:
        import subprocess

        from benchmarks.snapshot import describe, make_snapshot

        code = make_snapshot(args.product_ref, Path(tempfile.mkdtemp(prefix="etl_bench_product_")))
        os.environ["ETL_BENCH_PRODUCT"] = describe(args.product_ref)
        return subprocess.call(
            [sys.executable, "-m", "benchmarks.profile", "--weeks", str(args.weeks), "--out", str(args.out.resolve())],
            cwd=code, env={**os.environ, "PYTHONPATH": str(code)},
        )
    datagen.generate(SRC_DB, 125_000, 52)
    datagen.drop_database(WH_DB)
    datagen.ensure_database(WH_DB)
    work = Path(tempfile.mkdtemp(prefix="etl_bench_profile_"))
    os.environ.update({
        "BENCH_SOURCE_URL": pg_url(SRC_DB),
        "ETL_WAREHOUSE_URL": pg_url(WH_DB),
        "ETL_STORAGE_DIR": str(work / "storage"),
        "GX_ANALYTICS_ENABLED": "false",
        "DAGSTER_DISABLE_TELEMETRY": "1",
    })
    try:
        instrument()
        runs = {
            "First load (cold process: imports great-expectations)": e2e(args.weeks, str(work / "storage")),
            "No-change rerun (same process)": e2e(args.weeks, str(work / "storage")),
        }
        for title, run in runs.items():
            print(title, {k: round(v, 2) for k, v in run["steps"].items()}, f"wall {run['wall_s']:.2f}")
        alts = alternatives(work)
        text = render(args.weeks, runs, alts, 125_000 * args.weeks)
        args.out.write_text(text)
        print(text)
    finally:
        datagen.drop_database(WH_DB)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
