"""The great-expectations side of the checks: the ephemeral context, the frame GX can
compare, one suite run and GX's own errors. It knows expectations, not spec checks.

great_expectations is imported on first use (`etl_assets.spec.expectations.import_gx`): it
takes seconds to import and only validation steps need it, so definition loading stays fast.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pandas as pd

from etl_assets.spec.expectations import import_gx

# The expectation `meta` key that ties a GX result to its check: GX 1.x does not return
# results in suite order (expectations it cannot evaluate come first).
CHECK_META_KEY = "etl_assets_check"

_context: Any = None
# Suites this process has validated: what a reused quality result spares (benchmarks, tests).
validations_run = 0


def gx_context() -> tuple[ModuleType, Any]:
    """great_expectations and the process's one ephemeral context, without progress bars."""
    global _context
    gx = import_gx()
    # Lazy, like great_expectations itself: a module of it.
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if _context is None:
        _context = gx.get_context(mode="ephemeral")
        _context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return gx, _context


def gx_frame(frame: pd.DataFrame) -> pd.DataFrame:
    # GX compares with plain Python values; pandas' nullable NA confuses some expectations.
    out = frame.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.StringDtype):
            out[c] = out[c].astype(object).where(out[c].notna(), None)
        elif str(out[c].dtype) in ("Int64", "Float64"):
            out[c] = out[c].astype("float64") if out[c].isna().any() else out[c].astype(str(out[c].dtype).lower())
        elif str(out[c].dtype) == "boolean":
            out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out


def validate(
    frame: pd.DataFrame, name: str, expectations: list[Any], result_format: dict[str, Any]
) -> tuple[dict[str | None, Any], dict[str, Any]]:
    """GX's result for each expectation, by the `CHECK_META_KEY` of its meta, and the document."""
    global validations_run
    validations_run += 1
    gx, ctx = gx_context()
    ds = ctx.data_sources.add_or_update_pandas(name)
    data = gx_frame(frame)
    batch = (
        ds.add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": data})
    )
    suite = gx.ExpectationSuite(name=name, expectations=expectations)
    result = batch.validate(suite, result_format=result_format)
    ctx.data_sources.delete(name)
    # GX's batch objects reference each other in cycles that hold the frame until a full
    # garbage collection; emptying it now keeps a long range at one partition's memory.
    data.drop(columns=list(data.columns), inplace=True)
    try:
        document = result.to_json_dict()
    except Exception:
        document = {"success": result.success}
    by_check = {(r.expectation_config.meta or {}).get(CHECK_META_KEY): r for r in result.results}
    return by_check, document


def gx_error(res: Any) -> str | None:
    """GX's message when it could not evaluate an expectation (a missing column, bad kwargs).

    GX 1.x reports one exception per expectation, or one per metric it failed to resolve.
    """
    info = res.exception_info or {}
    infos = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [str(i.get("exception_message")) for i in infos if i.get("raised_exception")]
    return "; ".join(dict.fromkeys(messages))[:300] or None
