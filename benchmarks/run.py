"""Run the benchmark suite and write RESULTS.md (and results.json beside it).

    .venv/bin/python -m benchmarks.run                 # the full suite, ~25 minutes on 2 cores
    .venv/bin/python -m benchmarks.run --smoke         # tiny sizes, a few minutes, to a temp dir
    .venv/bin/python -m benchmarks.run --only sql_upsert,etl_assets --sizes 1w

Every measured run is a fresh `python -m benchmarks.worker` process; its peak RSS comes from
wait4(). A scenario's number is the median of its repetitions. Rerun and 10%-changed runs start
from the state the previous runs of the same variant left: first loads leave the `src.orders`
state, so a no-change rerun loads it again, and the 10%-changed runs alternate between
`src.orders_v1` and `src.orders`, each run changing exactly 10% of the rows.

Beyond the variant tables (scenarios/): Dagster's fixed overhead and `definitions validate`,
the small-partitions scenario, and the CLI/UI runs on a real webserver and daemon. RESULTS.md
opens with the headline lines (summary.HEADLINES), all from this one run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import datagen, snapshot
from benchmarks.common import pg_url
from benchmarks.process import ROOT, run_process
from benchmarks.report import _f, render
from benchmarks.scenarios.cli import run_cli_scenarios
from benchmarks.scenarios.extras import run_overhead, run_validate
from benchmarks.scenarios.small import run_small
from benchmarks.summary import HEADLINES, VARIANT_TITLES, summarize

HERE = Path(__file__).resolve().parent
# Names --only takes besides the variants: the scenarios outside the variant tables.
SCENARIOS = ("small_partitions", "cli")

@dataclass
class Profile:
    """The sizes and repetitions of one suite run."""

    name: str
    rows_per_week: int
    weeks_generated: int
    sizes: dict[str, int]  # label → weeks loaded in one run
    reps: int
    big_reps: int  # repetitions of the 52-week backfill
    pandas_limit: int  # pandas loads at most this many rows per week (then extrapolated)
    overhead_reps: int
    validate_reps: int
    grouped: bool  # smoke: one process per (variant, size) runs all its scenarios in turn
    small_weeks: int = 52  # the small-partitions scenario's weeks …
    small_scale: int = 1  # … and its tables' sizes divided by this
    cli_reps: int = 3  # repetitions of each CLI/UI scenario
    dlt_chunk_size: int = 100_000
    size_labels: dict[str, str] = field(default_factory=dict)


FULL = Profile(
    name="full",
    rows_per_week=125_000,
    weeks_generated=52,
    sizes={"1w": 1, "1m": 8, "52w": 52},
    reps=3,
    big_reps=1,
    pandas_limit=12_500,
    overhead_reps=3,
    validate_reps=3,
    grouped=False,
)
SMOKE = Profile(
    name="smoke",
    rows_per_week=200,
    weeks_generated=6,
    sizes={"1w": 1, "1m": 4, "52w": 6},
    reps=1,
    big_reps=1,
    pandas_limit=50,
    overhead_reps=1,
    validate_reps=1,
    grouped=True,
    small_weeks=4,
    small_scale=100,
    cli_reps=1,
    dlt_chunk_size=1_000,
)


def have_dlt() -> bool:
    # Looked up, not imported: the parent stays small, so wait4()'s peak RSS of a child
    # (which counts the memory it was forked from) is the child's own.
    return importlib.util.find_spec("dlt") is not None


# --- the suite -----------------------------------------------------------------------------------


class Suite:
    def __init__(self, profile: Profile, args: argparse.Namespace):
        self.p, self.args = profile, args
        prefix = args.db_prefix or ("etl_bench" if profile.name == "full" else f"etl_bench_smoke_{os.getpid()}")
        self.src_db, self.wh_db, self.inst_db = f"{prefix}_src", f"{prefix}_wh", f"{prefix}_instance"
        self.work = Path(tempfile.mkdtemp(prefix=f"etl_bench_{profile.name}_"))
        self.log_dir = self.work / "logs"
        self.runs: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.small: dict[str, Any] | None = None
        self.variants = [v for v in VARIANT_TITLES if not args.only or v in args.only]
        self.dlt = have_dlt()
        if "dlt_merge" in self.variants and not self.dlt:
            self.variants.remove("dlt_merge")
            self.notes.append("dlt is not installed (`pip install -e '.[bench]'`): variant (d) not measured.")
        # Smoke: tiny sizes, but a shared 2-core machine under load can take minutes per process.
        self.timeout = 3600 if profile.name == "full" else 420
        # The product measured: a git revision exported beside a copy of benchmarks/, or the tree.
        self.product = snapshot.describe(args.product_ref)
        self.code_dir = (
            snapshot.make_snapshot(args.product_ref, self.work / "product") if args.product_ref else ROOT
        )

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def base_job(self, variant: str, label: str, weeks: int) -> dict[str, Any]:
        rows = self.p.rows_per_week * weeks
        job = {
            "variant": variant,
            "label": label,
            "source_url": pg_url(self.src_db),
            "warehouse_url": pg_url(self.wh_db),
            "instance_url": pg_url(self.inst_db),
            "first_week": 0,
            "weeks": weeks,
            "rows": rows,
            "dlt_chunk_size": self.p.dlt_chunk_size,
            "prefilter": self.args.prefilter,
        }
        if variant == "pandas_upsert":
            job["limit"] = min(self.p.pandas_limit, self.p.rows_per_week)
            job["rows"] = job["limit"] * weeks
        return job

    def dirs(self, variant: str, label: str, fresh: bool) -> dict[str, str]:
        base = self.work / "state" / variant / label
        if fresh and base.exists():
            shutil.rmtree(base)
        (base / "storage").mkdir(parents=True, exist_ok=True)
        return {"storage_dir": str(base / "storage"), "dlt_dir": str(base / "dlt")}

    def measure(self, variant: str, label: str, weeks: int, steps: list[dict[str, Any]], rep: int) -> None:
        job = {**self.base_job(variant, label, weeks), "steps": steps,
               **self.dirs(variant, label, fresh=any(s.get("reset") for s in steps))}
        load = os.getloadavg()[0]
        try:
            results, proc = run_process(job, self.log_dir, self.timeout, self.code_dir)
        except RuntimeError as e:  # one failed measurement does not lose the others
            self.log(str(e))
            self.notes.append(f"{variant} {label} rep {rep} failed: {str(e).splitlines()[-1][:300]}")
            return
        for r in results:
            r.update(rep=rep, load1_before=round(load, 2), **proc)
            r["grouped"] = len(results) > 1
            self.runs.append(r)
            self.log(f"{variant:<14} {r['label']:<4} {r['scenario']:<9} rep {rep}: {r['wall_s']:.2f} s  "
                     f"{r['rows_per_s'] or 0:,.0f} rows/s  RSS {proc['peak_rss_mb']:.0f} MB  load {load:.1f}")

    def scenario_steps(self, variant: str) -> list[tuple[str, list[str]]]:
        """(scenario, tables per repetition): reruns alternate the changed table."""
        r = self.p.reps
        out = [("first", ["src.orders"] * r)]
        if variant != "copy_limit":
            out.append(("nochange", ["src.orders"] * r))
            out.append(("changed", [("src.orders_v1" if i % 2 == 0 else "src.orders") for i in range(r)]))
        return out

    def sizes_for(self, variant: str) -> list[str]:
        labels = [s for s in ("1w", "1m", "52w") if not self.args.sizes or s in self.args.sizes]
        if variant == "pandas_upsert":
            return [s for s in labels if s == "1w"]  # measured on a slice of one week, extrapolated
        if variant not in ("copy_limit", "sql_upsert", "etl_assets"):
            return [s for s in labels if s != "52w"]
        return labels

    def run_variant(self, variant: str) -> None:
        """Every measured run of one variant, in order: each size's first loads, reruns, changes."""
        if self.p.grouped:
            steps = []
            for label in self.sizes_for(variant):
                weeks = self.p.sizes[label]
                rows = self.base_job(variant, label, weeks)["rows"]
                plan = self.scenario_steps(variant) if label != "52w" else [("first", ["src.orders"])]
                steps += [{"scenario": sc, "table": tables[0], "reset": sc == "first", "weeks": weeks,
                           "rows": rows, "label": label} for sc, tables in plan]
            self.measure(variant, "all", 1, steps, 0)
            return
        for label in self.sizes_for(variant):
            weeks = self.p.sizes[label]
            if label == "52w":
                for rep in range(self.p.big_reps):
                    self.measure(variant, label, weeks, [{"scenario": "first", "table": "src.orders", "reset": True}], rep)
                continue
            for scenario, tables in self.scenario_steps(variant):
                for rep, table in enumerate(tables):
                    self.measure(variant, label, weeks, [{"scenario": scenario, "table": table, "reset": scenario == "first"}], rep)

    def environment(self) -> dict[str, Any]:
        with psycopg.connect(pg_url("postgres")) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            settings = {
                k: conn.execute("SELECT current_setting(%s)", (k,)).fetchone()[0]
                for k in ("shared_buffers", "work_mem", "maintenance_work_mem", "synchronous_commit",
                          "max_wal_size", "wal_level")
            }
        versions = {"python": platform.python_version()}
        for dist in ("dagster", "dagster-celery", "pandas", "pyarrow", "great-expectations", "psycopg", "dlt"):
            try:
                versions[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                pass
        return {
            "cpus": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "kernel": platform.release(),
            "postgres": version,
            "postgres_settings": settings,
            "versions": versions,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        }

    def wants(self, name: str) -> bool:
        return not self.args.only or name in self.args.only

    def _lane(self, variants: list[str], scenarios: list[str]) -> None:
        for variant in variants:
            self.run_variant(variant)
        for name in scenarios:
            if name == "extras" and self.wants("etl_assets"):
                run_overhead(self)
                run_validate(self)
            elif name == "small_partitions" and self.wants(name):
                self.small = run_small(self)
            elif name == "cli" and self.wants(name):
                run_cli_scenarios(self)

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        env = self.environment()
        self.log(f"profile {self.p.name}: {self.p.rows_per_week:,} rows/week, work dir {self.work}")
        gen = datagen.generate(self.src_db, self.p.rows_per_week, self.p.weeks_generated,
                               force=self.args.regenerate, log=self.log)
        datagen.drop_database(self.wh_db)
        datagen.ensure_database(self.wh_db)
        try:
            if self.p.grouped:
                # Smoke: two lanes at once (the numbers are not the point, the harness is).
                heavy = [v for v in self.variants if v == "etl_assets"]
                light = [v for v in self.variants if v != "etl_assets"]
                with concurrent.futures.ThreadPoolExecutor(2) as pool:
                    lanes = [pool.submit(self._lane, heavy, ["cli"]),
                             pool.submit(self._lane, light, ["extras", "small_partitions"])]
                    for f in lanes:
                        f.result()
            else:
                self._lane(self.variants, ["extras", "small_partitions", "cli"])
        finally:
            self.load_at_end = [round(x, 2) for x in os.getloadavg()]
            if not self.args.keep_databases:
                datagen.drop_database(self.wh_db)
                datagen.drop_database(self.inst_db)
                if self.p.name != "full":
                    datagen.drop_database(self.src_db)
            shutil.rmtree(self.work / "state", ignore_errors=True)
        return {
            "profile": self.p.name,
            "product": self.product,
            "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "suite_seconds": round(time.perf_counter() - started, 1),
            "rows_per_week": self.p.rows_per_week,
            "sizes": {k: {"weeks": v, "rows": v * self.p.rows_per_week} for k, v in self.p.sizes.items()},
            "reps": self.p.reps,
            "big_reps": self.p.big_reps,
            "grouped": self.p.grouped,
            "pandas_limit": self.p.pandas_limit,
            "prefilter": self.args.prefilter,
            "data": gen,
            "environment": {**env, "load_average_at_end": self.load_at_end},
            "notes": self.notes,
            "small": self.small,
            "runs": self.runs,
        }


# --- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one run each, a few minutes")
    ap.add_argument("--out", type=Path, help="RESULTS.md path (default: benchmarks/RESULTS.md; "
                                             "with --smoke a temporary directory)")
    ap.add_argument("--only", type=lambda v: v.split(","),
                    help=f"comma-separated variants and scenarios ({', '.join(SCENARIOS)})")
    ap.add_argument("--sizes", type=lambda v: v.split(","), help="comma-separated of 1w,1m,52w")
    ap.add_argument("--reps", type=int, help="repetitions per scenario (the CLI/UI ones too, at most 5)")
    ap.add_argument("--db-prefix", help="database name prefix (default etl_bench, or a per-process one for --smoke)")
    ap.add_argument("--regenerate", action="store_true", help="regenerate the source data even if current")
    ap.add_argument("--keep-databases", action="store_true")
    ap.add_argument("--prefilter", action="store_true",
                    help="variant (b) with a NOT EXISTS hash pre-filter before the upsert (to see what it costs)")
    ap.add_argument("--from-json", type=Path, help="only render RESULTS.md again from a results.json")
    ap.add_argument("--product-ref", help="measure etl_assets as of this git revision (e.g. HEAD) instead of "
                                          "the working tree, which may be mid-edit")
    args = ap.parse_args(argv)
    profile = SMOKE if args.smoke else FULL
    if args.reps:
        profile.reps = profile.cli_reps = args.reps
    out = args.out or (
        Path(tempfile.mkdtemp(prefix="etl_bench_smoke_out_")) / "RESULTS.md" if args.smoke else HERE / "RESULTS.md"
    )
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        data.pop("summary", None)
    else:
        data = Suite(profile, args).run()
    summary = summarize(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(data, summary))
    json_path = out.with_name("results.json")
    json_path.write_text(json.dumps({**data, "summary": summary}, indent=1, default=str))
    for name in HEADLINES:
        print(f"{name}: {_f(summary['headlines'].get(name))}")
    print(f"wrote {out} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
