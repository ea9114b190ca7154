"""Part 2 of benchmarks.profile: the product's functions on one week's frame against
alternatives that give the same result, each checked to.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import COLUMN_NAMES, pg_url, spec_dict, week_key, week_range

SRC_DB, WH_DB = "etl_bench_src", "etl_bench_profile_wh"


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


def row(rows: list[dict[str, Any]], component: str, product: float, alt_name: str, alt: float | None,
        same: Any, note: str = "") -> None:
    rows.append({"component": component, "product_s": product, "alternative": alt_name, "alt_s": alt,
                 "same_result": same, "note": note})


def alternatives(weeks_dir: Path) -> list[dict[str, Any]]:
    from etl_assets.core.partitions import partitions_def, window_for
    from etl_assets.sources.base import ExtractRequest
    from etl_assets.spec import parse_pipeline

    rows: list[dict[str, Any]] = []
    spec = parse_pipeline(spec_dict("src.orders", target_schema="bench_profile"), "bench.yaml")
    source = spec.sources[0]
    request = ExtractRequest("bench", window_for(partitions_def(spec), week_key(0)))
    raw = _extract_and_parquet(rows, source, request, weeks_dir)
    frame, types = _normalize(rows, raw, source, spec.timezone)
    _checks(rows, frame, source, weeks_dir)
    _load(rows, frame, types)
    return rows


def _extract_and_parquet(rows: list[dict[str, Any]], source: Any, request: Any, tmp: Path) -> Any:
    import pandas as pd
    import psycopg
    import pyarrow as pa
    import pyarrow.parquet as pq

    from etl_assets import sources

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
    row(rows, "raw: extract one week (COPY csv → pyarrow.csv → pandas)", t_extract,
        "bytes of a binary COPY alone (transfer floor)", t_bin, None)

    # Parquet layers.
    t_write, _ = best(lambda: raw.to_parquet(tmp / "raw.parquet", index=False, compression="zstd"))
    t_read, _ = best(lambda: pd.read_parquet(tmp / "raw.parquet"))
    table = pa.Table.from_pandas(raw, preserve_index=False)
    t_write_lz4, _ = best(lambda: pq.write_table(table, tmp / "raw_lz4.parquet", compression="lz4"))
    t_write_none, _ = best(lambda: pq.write_table(table, tmp / "raw_none.parquet", compression="none"))
    t_from_pandas, _ = best(lambda: pa.Table.from_pandas(raw, preserve_index=False))
    row(rows, "parquet: write one layer (pandas.to_parquet zstd)", t_write, "pyarrow write_table lz4 (table already Arrow)",
        t_write_lz4, None, f"uncompressed {t_write_none:.3f} s; pandas→Arrow conversion alone {t_from_pandas:.3f} s; "
        f"sizes zstd {os.path.getsize(tmp / 'raw.parquet') / 1e6:.1f} MB, lz4 "
        f"{os.path.getsize(tmp / 'raw_lz4.parquet') / 1e6:.1f} MB")
    row(rows, "parquet: read one layer (pandas.read_parquet)", t_read, "–", None, None)

    return raw


def _normalize(rows: list[dict[str, Any]], raw: Any, source: Any, timezone: str) -> tuple[Any, dict[str, str]]:
    from etl_assets.transform import normalize as norm

    # normalize and its parts.
    t_norm, result = best(lambda: norm.normalize(raw, source, timezone), 2)
    frame, types = result.frame, result.types
    cast_total = 0.0
    for c in source.columns:
        t, _ = best(lambda c=c: norm._cast(raw[c.source_name], c.type, c.name, timezone), 2)
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
    row(rows, "normalized: normalize() one week", t_norm, "–", None, None,
        f"casts {cast_total:.3f} s, exact-duplicate drop {t_dedupe:.3f} s, sort + key dedupe {t_sort:.3f} s, "
        f"record_hashes {t_hash:.3f} s")
    row(rows, "normalized: record_hashes (product)", t_hash,
        "the plain pandas definition (str.cat + md5 per row)" if reference is not arrow_record_hashes
        else "Arrow canonical text + binary_join + md5 per row", t_alt_hash, same_hash,
        f"of which _canonical {canon:.3f} s")

    return frame, types


def _checks(rows: list[dict[str, Any]], frame: Any, source: Any, tmp: Path) -> None:
    import pandas as pd

    from etl_assets import quality

    # checks: GX cold (in a fresh process it also imports GX), warm, and native.
    t_gx_frame, _ = best(lambda: quality._gx_frame(frame), 2)
    t_checks, checked = best(lambda: quality.run_checks(frame, source), 2)
    outcomes = getattr(checked, "outcomes", checked)  # a PartitionQuality, or (older) the list
    t_native, native = best(lambda: native_checks(frame), 3)
    gx_counts = {o.name: o.unexpected_count for o in outcomes}
    row(rows, "validated: run_checks one week (GX, warm context)", t_checks, "pandas isna / duplicated / between",
        t_native, gx_counts == native, f"of which _gx_frame copy {t_gx_frame:.3f} s; GX counts {gx_counts}")

    # validated layer: decode + re-encode the normalized file vs copying its bytes.
    frame.to_parquet(tmp / "normalized.parquet", index=False, compression="zstd")
    t_reencode, _ = best(lambda: pd.read_parquet(tmp / "normalized.parquet").to_parquet(
        tmp / "validated.parquet", index=False, compression="zstd"))
    t_copy, _ = best(lambda: shutil.copyfile(tmp / "normalized.parquet", tmp / "validated_copy.parquet"))
    row(rows, "validated: write the layer (read normalized + write zstd)", t_reencode, "copy the normalized file's bytes",
        t_copy, True)



def _load(rows: list[dict[str, Any]], frame: Any, types: dict[str, str]) -> None:
    import psycopg
    import pyarrow as pa
    import pyarrow.csv as pacsv

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
    row(rows, "loaded: _copy_in of one week into a temp table (product)", t_copy_product,
        "pa.Table.from_pandas + write_csv + COPY csv", t_csv + t_copy_csv, None,
        f"of which CSV writing {t_csv:.3f} s")
