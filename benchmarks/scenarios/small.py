"""The small-partitions scenario: many weeks of small tables, as a real dataset has.

Five sources (SMALL_SOURCES: two incremental tables, three `mode: full` ones) over
`Profile.small_weeks` weekly partitions, loaded in one run by etl-assets (`small_etl`) and by
the SQL staging-upsert limit (`small_sql`); then each one's no-change rerun.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchmarks import datagen
from benchmarks.common import SMALL_SOURCES

if TYPE_CHECKING:
    from benchmarks.run import Suite

VARIANTS = ("small_sql", "small_etl")
LABEL = "small"


def small_rows(sizes: dict[str, int], weeks: int) -> int:
    """Rows read by one run: every week of the incremental tables, and the full tables once."""
    return sum(sizes[n] * (weeks if mode == "incremental" else 1) for n, mode, _ in SMALL_SOURCES)


def run_small(suite: Suite) -> dict[str, Any]:
    """Generate the tables, then measure both variants: first loads, then no-change reruns."""
    sizes = datagen.small_sizes(suite.p.small_scale)
    weeks = suite.p.small_weeks
    gen = datagen.generate_small(suite.src_db, sizes, weeks, force=suite.args.regenerate, log=suite.log)
    rows = small_rows(sizes, weeks)
    for variant in VARIANTS:
        steps = [{"scenario": "first", "table": "small.*", "reset": True, "rows": rows},
                 {"scenario": "nochange", "table": "small.*", "reset": False, "rows": rows}]
        if suite.p.grouped:
            suite.measure(variant, LABEL, weeks, steps, 0)
            continue
        for step in steps:
            for rep in range(suite.p.reps):
                # Each first load starts from an empty schema; the reruns from the last load.
                suite.measure(variant, LABEL, weeks, [step], rep)
    return {**gen, "sizes": sizes, "weeks": weeks, "rows": rows}
