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
import hashlib
import io
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
from benchmarks.common import COLUMN_NAMES, pg_url, spec_dict, week_key, week_range

HERE = Path(__file__).resolve().parent
SRC_DB, WH_DB = "etl_bench_src", "etl_bench_profile_wh"

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
    from etl_assets.orchestration.assets import asset_key
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
            asset_selection=[asset_key("bench", layer, "orders") for layer in ("raw", "normalized", "validated", "loaded")],
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


# --- part 2: alternatives --------------------------------------------------------------------------


def best(fn: Callable[[], Any], n: int = 3) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(n):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return min(times), out


def arrow_canonical(series: Any, type_: str) -> list[str]:
    """The product's canonical text (normalize._canonical), computed with Arrow kernels."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(series, from_pandas=True)
    if type_ == "timestamp":
        text = pc.strftime(arr.cast(pa.timestamp("us", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
    elif type_ == "float":
        text = pc.cast(arr, pa.string())
        # Python's repr keeps ".0" on whole numbers; Arrow's shortest form drops it.
        plain = pc.invert(pc.match_substring_regex(text, r"[.eEn]"))
        text = pc.if_else(plain, pc.binary_join_element_wise(text, pa.scalar(".0"), ""), text)
    elif type_ == "boolean":
        text = pc.if_else(arr, pa.scalar("t"), pa.scalar("f"))
    else:
        text = pc.cast(arr, pa.string())
    return pc.fill_null(text, "\\N")


def arrow_record_hashes(frame: Any, types: dict[str, str]) -> list[str]:
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = [arrow_canonical(frame[c], types[c]) for c in types if c in frame.columns]
    joined = pc.binary_join_element_wise(*cols, pa.scalar("\x1f"))
    md5 = hashlib.md5
    return [md5(s.encode("utf-8")).hexdigest() for s in joined.to_pylist()]


def native_checks(frame: Any) -> dict[str, int]:
    """not_null, unique key, between — the unexpected counts GX reports, with pandas."""
    q = frame["quantity"]
    return {
        "not_null_customer_id": int(frame["customer_id"].isna().sum()),
        "unique_key": int(frame["order_id"].duplicated(keep=False).sum()),
        "between_quantity": int((q.notna() & ~q.between(1, 100)).sum()),
    }


def alternatives(weeks_dir: Path) -> list[dict[str, Any]]:
    import pandas as pd
    import psycopg
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from etl_assets import quality, sources
    from etl_assets.core.partitions import partitions_def, window_for
    from etl_assets.sources.base import ExtractRequest
    from etl_assets.spec import parse_pipeline
    from etl_assets.transform import normalize as norm

    rows: list[dict[str, Any]] = []

    def row(component: str, product: float, alt_name: str, alt: float | None, same: Any, note: str = "") -> None:
        rows.append({"component": component, "product_s": product, "alternative": alt_name, "alt_s": alt,
                     "same_result": same, "note": note})

    spec = parse_pipeline(spec_dict("src.orders", target_schema="bench_profile"), "bench.yaml")
    source = spec.sources[0]
    pdef = partitions_def(spec)
    request = ExtractRequest("bench", window_for(pdef, week_key(0)))

    # extract: the product's CSV COPY → Arrow vs binary COPY into Arrow-free bytes (the floor).
    t_extract, ex = best(lambda: sources.extract(source, request), 2)
    raw = ex.frame
    lo, hi = week_range(0, 1)

    def binary_copy() -> int:
        n = 0
        with psycopg.connect(pg_url(SRC_DB)) as conn:
            q = psycopg.ClientCursor(conn).mogrify(
                f"SELECT {', '.join(COLUMN_NAMES)} FROM src.orders WHERE updated_at >= %s AND updated_at < %s", (lo, hi)
            )
            with conn.cursor().copy(f"COPY ({q}) TO STDOUT (FORMAT binary)") as copy:
                for chunk in copy:
                    n += len(chunk)
        return n

    t_bin, _ = best(binary_copy, 2)
    row("raw: extract one week (COPY csv → pyarrow.csv → pandas)", t_extract,
        "bytes of a binary COPY alone (transfer floor)", t_bin, None)

    # Parquet layers.
    tmp = weeks_dir
    t_write, _ = best(lambda: raw.to_parquet(tmp / "raw.parquet", index=False, compression="zstd"))
    t_read, _ = best(lambda: pd.read_parquet(tmp / "raw.parquet"))
    table = pa.Table.from_pandas(raw, preserve_index=False)
    t_write_lz4, _ = best(lambda: pq.write_table(table, tmp / "raw_lz4.parquet", compression="lz4"))
    t_write_none, _ = best(lambda: pq.write_table(table, tmp / "raw_none.parquet", compression="none"))
    t_from_pandas, _ = best(lambda: pa.Table.from_pandas(raw, preserve_index=False))
    row("parquet: write one layer (pandas.to_parquet zstd)", t_write, "pyarrow write_table lz4 (table already Arrow)",
        t_write_lz4, None, f"uncompressed {t_write_none:.3f} s; pandas→Arrow conversion alone {t_from_pandas:.3f} s; "
        f"sizes zstd {os.path.getsize(tmp / 'raw.parquet') / 1e6:.1f} MB, lz4 "
        f"{os.path.getsize(tmp / 'raw_lz4.parquet') / 1e6:.1f} MB")
    row("parquet: read one layer (pandas.read_parquet)", t_read, "–", None, None)

    # normalize and its parts.
    t_norm, result = best(lambda: norm.normalize(raw, source, spec.timezone), 2)
    frame, types = result.frame, result.types
    cast_total = 0.0
    for c in source.columns:
        t, _ = best(lambda c=c: norm._cast(raw[c.source_name], c.type, c.name, spec.timezone), 2)
        cast_total += t
    t_hash, hashes = best(lambda: norm.record_hashes(frame, types), 2)
    canon = 0.0
    for c, ty in types.items():
        canonical = getattr(norm, "_canonical_arrow", norm._canonical)
        t, _ = best(lambda c=c, ty=ty, f=canonical: f(frame[c], ty), 2)
        canon += t
    t_dedupe, _ = best(lambda: frame.drop(columns=["record_hash"]).drop_duplicates(ignore_index=True), 2)
    t_sort, _ = best(lambda: frame.sort_values("updated_at", kind="stable").drop_duplicates(subset=["order_id"], keep="last")
                     .sort_values("order_id", kind="stable"), 2)
    reference = getattr(norm, "_record_hashes_reference", None) or arrow_record_hashes
    t_alt_hash, alt_hashes = best(lambda: reference(frame, types), 2)
    same_hash = list(hashes) == list(alt_hashes)
    row("normalized: normalize() one week", t_norm, "–", None, None,
        f"casts {cast_total:.3f} s, exact-duplicate drop {t_dedupe:.3f} s, sort + key dedupe {t_sort:.3f} s, "
        f"record_hashes {t_hash:.3f} s")
    row("normalized: record_hashes (product)", t_hash,
        "the plain pandas definition (str.cat + md5 per row)" if reference is not arrow_record_hashes
        else "Arrow canonical text + binary_join + md5 per row", t_alt_hash, same_hash,
        f"of which _canonical {canon:.3f} s")

    # checks: GX cold (in a fresh process it also imports GX), warm, and native.
    t_gx_frame, _ = best(lambda: quality._gx_frame(frame), 2)
    t_checks, checked = best(lambda: quality.run_checks(frame, source), 2)
    outcomes = getattr(checked, "outcomes", checked)  # a PartitionQuality, or (older) the list
    t_native, native = best(lambda: native_checks(frame), 3)
    gx_counts = {o.name: o.unexpected_count for o in outcomes}
    row("validated: run_checks one week (GX, warm context)", t_checks, "pandas isna / duplicated / between",
        t_native, gx_counts == native, f"of which _gx_frame copy {t_gx_frame:.3f} s; GX counts {gx_counts}")

    # validated layer: decode + re-encode the normalized file vs copying its bytes.
    frame.to_parquet(tmp / "normalized.parquet", index=False, compression="zstd")
    t_reencode, _ = best(lambda: pd.read_parquet(tmp / "normalized.parquet").to_parquet(
        tmp / "validated.parquet", index=False, compression="zstd"))
    t_copy, _ = best(lambda: shutil.copyfile(tmp / "normalized.parquet", tmp / "validated_copy.parquet"))
    row("validated: write the layer (read normalized + write zstd)", t_reencode, "copy the normalized file's bytes",
        t_copy, True)

    # loaded: Arrow CSV vs COPY binary of the same frame, and the upsert's SQL.
    data_cols = list(types) + ["record_hash"]
    staged = frame[data_cols].assign(_partition=week_key(0))

    def to_csv() -> bytes:
        buf = io.BytesIO()
        pacsv.write_csv(pa.Table.from_pandas(staged, preserve_index=False), buf,
                        pacsv.WriteOptions(include_header=False))
        return buf.getvalue()

    t_csv, csv_bytes = best(to_csv, 2)

    def copy_csv() -> None:
        with psycopg.connect(pg_url(WH_DB)) as conn:
            conn.execute("CREATE TEMP TABLE s (order_id bigint, customer_id bigint, customer_name text, sku text, "
                         "quantity bigint, unit_price double precision, status text, ordered_at timestamptz, "
                         "updated_at timestamptz, record_hash text, _partition text)")
            with conn.cursor().copy("COPY s FROM STDIN WITH (FORMAT csv)") as copy:
                copy.write(csv_bytes)

    t_copy_csv, _ = best(copy_csv, 2)

    def copy_product() -> None:
        from etl_assets.warehouses.postgres import Warehouse

        with psycopg.connect(pg_url(WH_DB)) as conn:
            conn.execute("CREATE TEMP TABLE s (order_id bigint, customer_id bigint, customer_name text, sku text, "
                         "quantity bigint, unit_price double precision, status text, ordered_at timestamptz, "
                         "updated_at timestamptz, record_hash text, _partition text)")
            Warehouse._copy_in(conn, "s", data_cols + ["_partition"], staged)

    t_copy_product, _ = best(copy_product, 2)
    row("loaded: _copy_in of one week into a temp table (product)", t_copy_product,
        "pa.Table.from_pandas + write_csv + COPY csv", t_csv + t_copy_csv, None,
        f"of which CSV writing {t_csv:.3f} s")
    return rows


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
