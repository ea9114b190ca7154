"""Run the benchmark suite and write RESULTS.md (and results.json beside it).

    .venv/bin/python -m benchmarks.run                 # the full suite, ~25 minutes on 2 cores
    .venv/bin/python -m benchmarks.run --smoke         # tiny sizes, under a minute, to a temp dir
    .venv/bin/python -m benchmarks.run --only sql_upsert,etl_assets --sizes 1w

Every measured run is a fresh `python -m benchmarks.worker` process; its peak RSS comes from
wait4(). A scenario's number is the median of its repetitions. Rerun and 10%-changed runs start
from the state the previous runs of the same variant left: first loads leave the `src.orders`
state, so a no-change rerun loads it again, and the 10%-changed runs alternate between
`src.orders_v1` and `src.orders`, each run changing exactly 10% of the rows.
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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml

from benchmarks import datagen, snapshot
from benchmarks.common import TINY_ROWS, pg_url, spec_dict

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
RESULT_LINE = "end_to_end_vs_sql_limit_1m"

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
    dlt_chunk_size=1_000,
)


def have_dlt() -> bool:
    # Looked up, not imported: the parent stays small, so wait4()'s peak RSS of a child
    # (which counts the memory it was forked from) is the child's own.
    return importlib.util.find_spec("dlt") is not None


# --- running one process -------------------------------------------------------------------------


def run_process(job: dict[str, Any], log_dir: Path, timeout: float, cwd: Path = ROOT) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run one worker; return its results and the process's peak RSS and wall time."""
    log_dir.mkdir(parents=True, exist_ok=True)
    err_path = log_dir / f"{job['variant']}_{job['label']}_{int(time.time() * 1000)}.stderr"
    env = {**os.environ, "PYTHONPATH": str(cwd), "GX_ANALYTICS_ENABLED": "false",
           "DAGSTER_DISABLE_TELEMETRY": "1", "RUNTIME__DLTHUB_TELEMETRY": "false"}
    started = time.perf_counter()
    job = {**job, "launched_at": time.time()}
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", json.dumps(job)],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err,
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            timer.cancel()
            if proc.stdout:
                proc.stdout.close()
    wall = time.perf_counter() - started
    results = [json.loads(line[len("BENCH_RESULT "):]) for line in out.splitlines() if line.startswith("BENCH_RESULT ")]
    if proc.returncode != 0:
        tail = err_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{job['variant']} {job['label']} failed (exit {proc.returncode}):\n{tail}")
    return results, {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "process_wall_s": round(wall, 3)}


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
        self.variants = [v for v in VARIANT_TITLES if not args.only or v in args.only]
        self.dlt = have_dlt()
        if "dlt_merge" in self.variants and not self.dlt:
            self.variants.remove("dlt_merge")
            self.notes.append("dlt is not installed (`pip install -e '.[bench]'`): variant (d) not measured.")
        self.timeout = 3600 if profile.name == "full" else 120
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

    def run_overhead(self) -> None:
        kinds = [("test", self.p.overhead_reps)]
        if self.p.name == "full":
            kinds += [("ephemeral", 1), ("postgres", 1)]
        for kind, reps in kinds:
            for rep in range(reps):
                if kind == "postgres":
                    datagen.drop_database(self.inst_db)
                    datagen.ensure_database(self.inst_db)
                job = {**self.base_job("overhead", "tiny", 1), "rows": TINY_ROWS,
                       "steps": [{"scenario": "first", "table": "src.orders_tiny", "reset": True, "instance": kind}],
                       **self.dirs("overhead", "tiny", fresh=True)}
                try:
                    results, proc = run_process(job, self.log_dir, self.timeout, self.code_dir)
                except RuntimeError as e:
                    self.log(str(e))
                    self.notes.append(f"overhead ({kind}) rep {rep} failed: {str(e).splitlines()[-1][:300]}")
                    continue
                for r in results:
                    r.update(rep=rep, **proc)
                    self.runs.append(r)
                    self.log(f"overhead ({kind}) rep {rep}: {r['wall_s']:.2f} s, process {proc['process_wall_s']:.2f} s")
        datagen.drop_database(self.inst_db)

    def run_validate(self) -> None:
        """`dagster definitions validate` on the shipped workspace, and on 20 pipelines."""
        home = self.work / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        many = self.work / "pipelines_20"
        many.mkdir(exist_ok=True)
        for i in range(20):
            (many / f"bench_{i:02d}.yaml").write_text(
                yaml.safe_dump(spec_dict("src.orders", name=f"bench_{i:02d}"), sort_keys=False)
            )
        cases = [("shipped pipelines/ (1 pipeline)", None)]
        if self.p.name == "full":
            cases.append(("20 pipelines", str(many)))
        for title, pdir in cases:
            for rep in range(self.p.validate_reps):
                env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_DISABLE_TELEMETRY": "1"}
                if pdir:
                    env["ETL_PIPELINES_DIR"] = pdir
                started = time.perf_counter()
                proc = subprocess.run(
                    [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
                    cwd=self.code_dir, env=env, capture_output=True, text=True, timeout=300,
                )
                wall = time.perf_counter() - started
                ok = proc.returncode == 0
                self.runs.append({"variant": "definitions_validate", "label": title, "rep": rep,
                                  "wall_s": wall, "ok": ok, "scenario": "validate"})
                self.log(f"definitions validate, {title}: {wall:.2f} s {'ok' if ok else 'FAILED'}")
                if not ok:
                    self.notes.append(f"`dagster definitions validate` failed for {title}: {proc.stderr[-500:]}")

    def environment(self) -> dict[str, Any]:
        with psycopg.connect(pg_url("postgres")) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            settings = {
                k: conn.execute(f"SHOW {k}").fetchone()[0]
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

    def _lane(self, variants: list[str], extras: bool) -> None:
        for variant in variants:
            self.run_variant(variant)
        if extras and (not self.args.only or "etl_assets" in self.args.only):
            self.run_overhead()
            self.run_validate()

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
                    lanes = [pool.submit(self._lane, heavy, False), pool.submit(self._lane, light, True)]
                    for f in lanes:
                        f.result()
            else:
                self._lane(self.variants, True)
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
            "runs": self.runs,
        }


# --- summarising ----------------------------------------------------------------------------------


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    """Medians per (size, scenario, variant), ratios to the SQL limit, RSS and overhead."""
    runs = data["runs"]
    table: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for r in runs:
        if r["variant"] not in VARIANT_TITLES:
            continue
        cell = table.setdefault(r["label"], {}).setdefault(r["scenario"], {}).setdefault(r["variant"], {"runs": []})
        cell["runs"].append(r)
    for label, scenarios in table.items():
        for scenario, variants in scenarios.items():
            for variant, cell in variants.items():
                rs = cell["runs"]
                cell.update(
                    n=len(rs),
                    wall_s=median([r["wall_s"] for r in rs]),
                    rows=rs[0]["rows"],
                    peak_rss_mb=median([r["peak_rss_mb"] for r in rs]),
                    counts={f: rs[-1].get(f) for f in ("inserted", "updated", "unchanged")},
                )
                cell["rows_per_s"] = cell["rows"] / cell["wall_s"] if cell["wall_s"] else None
            limit = variants.get("sql_upsert", {}).get("wall_s")
            for variant, cell in variants.items():
                cell["vs_sql_limit"] = cell["wall_s"] / limit if limit and cell["wall_s"] else None
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
    ratio = table.get("1m", {}).get("first", {}).get("etl_assets", {}).get("vs_sql_limit")
    one = table.get("1w", {}).get("first", {}).get("etl_assets", {}).get("peak_rss_mb")
    big = table.get("52w", {}).get("first", {}).get("etl_assets", {}).get("peak_rss_mb")
    overhead = [r for r in runs if r["variant"] == "overhead"]
    validate = [r for r in runs if r["variant"] == "definitions_validate"]
    return {
        "table": table,
        "pandas_extrapolated": extrapolated,
        RESULT_LINE: ratio,
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


# --- RESULTS.md -----------------------------------------------------------------------------------


def _f(v: Any, fmt: str = "{:.2f}") -> str:
    return "–" if v is None else fmt.format(v)


def render(data: dict[str, Any], s: dict[str, Any]) -> str:
    env = data["environment"]
    p_rows = data["rows_per_week"]
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `python -m benchmarks.run{' --smoke' if data['profile'] == 'smoke' else ''}"
        f"{'' if 'working tree' in data.get('product', 'working tree') else ' --product-ref ' + data['product'][:7]}` "
        f"on {data['generated_at']} in {data['suite_seconds'] / 60:.1f} min "
        f"(profile `{data['profile']}`).",
        "",
        f"{RESULT_LINE}: {_f(s[RESULT_LINE])}",
        "",
        "## Setup",
        "",
        f"- Machine: {env['cpus']} cores, {env['memory_gb']} GiB, Linux {env['kernel']}; PostgreSQL "
        f"{env['postgres']} on 127.0.0.1 ({', '.join(f'{k}={v}' for k, v in env['postgres_settings'].items())}).",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".",
        f"- Load average (1, 5, 15 min) at the start {', '.join(map(str, env.get('load_average_at_start', [])))}, "
        f"at the end {', '.join(map(str, env.get('load_average_at_end', [])))}; each run's is in results.json "
        "(`load1_before`). Other work on the machine slows every variant, PostgreSQL included.",
        f"- etl-assets measured: commit {data.get('product', '?')}.",
        f"- Data: `src.orders`, 9 columns (order_id, customer_id, customer_name, sku, quantity, "
        f"unit_price numeric, status, ordered_at, updated_at), {p_rows:,} rows per week, generated "
        f"deterministically inside PostgreSQL ({data['data']['fingerprint']}). Source and target are "
        f"databases on the same server.",
        f"- Each number is the median of {data['reps']} run(s), each run a fresh Python process "
        + ("(smoke profile: one process per variant and size runs its scenarios in turn, 1 run each)"
           if data["grouped"] else "")
        + f"; the {data['sizes']['52w']['weeks']}-week backfill ran {data['big_reps']} time(s) per variant "
        "(it is there for peak memory, and each run takes minutes).",
        "- *Wall* is measured inside the process after imports and includes everything a run does from "
        "there: for etl-assets, building the definitions, opening the instance (SQLite in the variant's "
        "state folder, kept across its runs as a production instance is, and new for each first load), "
        "importing great-expectations on first use, and the run itself. "
        "*Peak RSS* is the process's maximum resident set (wait4), PostgreSQL's memory excluded.",
        "- *× SQL limit* is wall time divided by variant (b)'s in the same scenario.",
        "- Rerun and 10%-changed runs start from the state the variant's previous runs left (the "
        "changed runs alternate between two versions of the source, each changing exactly 10% of the rows).",
        "",
        "Variants:",
        "",
        "- **(a)** `COPY (SELECT …) TO STDOUT (FORMAT binary)` piped into `COPY … FROM STDIN (FORMAT binary)` "
        "of a table with the same columns and primary key, one transaction per week. First load only.",
        "- **(b)** per week, in one transaction: binary COPY into a temporary staging table, `ANALYZE`, then "
        "`INSERT … SELECT …, md5(…) ON CONFLICT (order_id) DO UPDATE … "
        "WHERE record_hash IS DISTINCT FROM EXCLUDED.record_hash` (the hash computed once, in SQL), into a table "
        "shaped like etl-assets' (plus record_hash, _partition, _loaded_at, _run_id and the _partition index). "
        + ("**Run with a `NOT EXISTS` hash pre-filter before the upsert.**" if data.get("prefilter") else
           "Without a `NOT EXISTS` hash pre-filter, which measured slower in every scenario (`--prefilter` adds it)."),
        "- **(c)** `etl_assets.definitions.build_defs([spec])`, `resolve_job_def('bench_job').execute_in_process(…)` "
        "selecting raw → normalized → validated (not_null, unique key, between: great-expectations) → loaded, "
        "the weeks as one single-run partition range (`dagster/asset_partition_range_start/end`).",
        "- **(d)** dlt `sql_table(backend=\"pyarrow\")` with an `updated_at` incremental bounded to the weeks, "
        "`write_disposition=\"merge\"` on `order_id` (dlt's default delete-insert strategy), CSV loader files (COPY).",
        f"- **(e)** `pd.read_sql` per week, `to_sql(method=\"multi\", chunksize=1000)` into a staging table, "
        f"then (b)'s upsert. **Measured on {data['pandas_limit']:,} rows of each week and extrapolated "
        "linearly** (it runs at a few thousand rows/s).",
        "",
    ]
    if data["notes"]:
        lines += ["Notes:", ""] + [f"- {n}" for n in data["notes"]] + [""]
    for label in ("1w", "1m"):
        size = data["sizes"][label]
        scenarios = s["table"].get(label, {})
        for scenario, title in SCENARIO_TITLES.items():
            variants = scenarios.get(scenario, {})
            if not variants and not s["pandas_extrapolated"].get(label, {}).get(scenario):
                continue
            lines += [
                f"## {title}, {size['rows']:,} rows ({size['weeks']} week{'s' if size['weeks'] > 1 else ''}, one run)",
                "",
                "| variant | wall s | rows/s | × SQL limit | peak RSS MB | inserted / updated / unchanged | runs |",
                "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
            ]
            for variant, vt in VARIANT_TITLES.items():
                cell = variants.get(variant)
                if cell:
                    c = cell["counts"]
                    counts = " / ".join("–" if c.get(f) is None else f"{c[f]:,}" for f in ("inserted", "updated", "unchanged"))
                    lines.append(
                        f"| {vt}{' — measured slice' if variant == 'pandas_upsert' else ''} | {_f(cell['wall_s'])} | "
                        f"{_f(cell['rows_per_s'], '{:,.0f}')} | {_f(cell['vs_sql_limit'], '{:.2f}×')} | "
                        f"{_f(cell['peak_rss_mb'], '{:.0f}')} | {counts} | {cell['n']} |"
                    )
                if variant == "pandas_upsert":
                    ex = s["pandas_extrapolated"].get(label, {}).get(scenario)
                    if ex:
                        lines.append(
                            f"| {vt} — **extrapolated** from {ex['measured_rows']:,} rows in "
                            f"{ex['measured_wall_s']:.2f} s | {_f(ex['wall_s'])} | {_f(ex['rows_per_s'], '{:,.0f}')} | "
                            f"{_f(ex['vs_sql_limit'], '{:.2f}×')} | – | – | – |"
                        )
            lines.append("")
    big = s["table"].get("52w", {}).get("first", {})
    size = data["sizes"]["52w"]
    lines += [
        f"## Memory: {size['weeks']}-week single-run backfill ({size['rows']:,} rows) vs one week",
        "",
        "| variant | rows | wall s | rows/s | × SQL limit | peak RSS MB | runs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for variant in ("copy_limit", "sql_upsert", "etl_assets"):
        cell = big.get(variant)
        if cell:
            lines.append(
                f"| {VARIANT_TITLES[variant]} | {cell['rows']:,} | {_f(cell['wall_s'])} | "
                f"{_f(cell['rows_per_s'], '{:,.0f}')} | {_f(cell['vs_sql_limit'], '{:.2f}×')} | "
                f"{_f(cell['peak_rss_mb'], '{:.0f}')} | {cell['n']} |"
            )
    lines += [
        "",
        f"etl-assets peak RSS: one week {_f(s['rss_1w_mb'], '{:.0f}')} MB, {size['weeks']} weeks "
        f"{_f(s['rss_52w_mb'], '{:.0f}')} MB: ratio {_f(s['rss_ratio_52w_vs_1w'], '{:.2f}')}×.",
        "",
        f"rss_ratio_52w_vs_1w: {_f(s['rss_ratio_52w_vs_1w'])}",
        "",
    ]
    lines += render_overhead(s["overhead"])
    if s["validate"]:
        lines += [
            "## `dagster definitions validate -w workspace.yaml`",
            "",
            "Wall time of the CLI process (interpreter start, imports, loading and validating the code location).",
            "",
            "| pipelines | wall s |",
            "| --- | ---: |",
        ] + [f"| {k} | {_f(v)} |" for k, v in s["validate"].items()] + [""]
    return "\n".join(lines)


def render_overhead(o: dict[str, Any]) -> list[str]:
    if not o or "test" not in o:
        return []
    t = o["test"]
    lines = [
        f"## Dagster fixed overhead per run ({TINY_ROWS}-row partition, in-process)",
        "",
        "Everything a run pays whatever its size, measured on a 100-row partition: the process "
        "(interpreter start, imports), definitions, the instance, and each step.",
        "",
        "| phase | seconds |",
        "| --- | ---: |",
        f"| interpreter start (Popen to the first line of the worker module) | {_f(t['interpreter_startup_s'])} |",
        f"| imports (dagster, etl_assets, pandas, pyarrow, psycopg) | {_f(t['imports_s'])} |",
        f"| build_defs([spec]) | {_f(t['build_defs_s'], '{:.3f}')} |",
        f"| Definitions.validate_loadable (not in wall) | {_f(t['validate_loadable_s'], '{:.3f}')} |",
        f"| resolve_job_def | {_f(t['resolve_job_s'], '{:.3f}')} |",
        f"| instance: dg.instance_for_test() | {_f(t['instance_s'])} |",
    ]
    for step, v in t["steps_s"].items():
        extra = " (includes importing great-expectations and creating its context)" if step == "validated" else ""
        lines.append(f"| step {step}{extra} | {_f(v)} |")
    lines += [
        f"| run overhead outside steps (plan, events, storage, run start/end) | {_f(t['run_overhead_s'])} |",
        f"| execute_in_process total | {_f(t['execute_in_process_s'])} |",
        f"| instance close | {_f(t['instance_close_s'])} |",
        f"| interpreter exit (the run's end to the process's end: atexit, module teardown) | "
        f"{_f(t['exit_s'])} |",
        f"| **wall (as in the tables above)** | **{_f(t['wall_s'])}** |",
        f"| **process wall, start to exit** | **{_f(t['process_wall_s'])}** |",
        "",
        f"Peak RSS of the tiny run: {_f(t['peak_rss_mb'], '{:.0f}')} MB. Runs: {t['n']}.",
        "",
    ]
    others = {k: v for k, v in o.items() if k != "test"}
    if others:
        lines += [
            "The same run on other instances (1 run each):",
            "",
            "| instance | open s | run overhead outside steps s | execute_in_process s | wall s |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| instance_for_test (SQLite) | {_f(t['instance_s'])} | {_f(t['run_overhead_s'])} | "
            f"{_f(t['execute_in_process_s'])} | {_f(t['wall_s'])} |",
        ]
        names = {"ephemeral": "DagsterInstance.ephemeral() (in memory)", "postgres": "PostgreSQL storage (production)"}
        for k, v in others.items():
            lines.append(
                f"| {names.get(k, k)} | {_f(v['instance_s'])} | {_f(v['run_overhead_s'])} | "
                f"{_f(v['execute_in_process_s'])} | {_f(v['wall_s'])} |"
            )
        lines.append("")
    return lines


# --- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one run each, under a minute")
    ap.add_argument("--out", type=Path, help="RESULTS.md path (default: benchmarks/RESULTS.md; "
                                             "with --smoke a temporary directory)")
    ap.add_argument("--only", type=lambda v: v.split(","), help="comma-separated variants")
    ap.add_argument("--sizes", type=lambda v: v.split(","), help="comma-separated of 1w,1m,52w")
    ap.add_argument("--reps", type=int, help="repetitions per scenario")
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
        profile.reps = args.reps
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
    print(f"{RESULT_LINE}: {_f(summary[RESULT_LINE])}")
    print(f"wrote {out} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
