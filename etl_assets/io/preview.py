"""A frame's first rows as a Markdown table: the `preview` metadata of every stored layer.

Here, below the report layer, so the IO manager can describe what it wrote; the report's
tables format cells the same way.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float, Decimal, np.number)) and not isinstance(v, (bool, np.bool_))


def format_cell(v: Any) -> str:
    """A cell as a reader expects it: thousands separated, two decimals for fractional numbers."""
    if v is None or (not isinstance(v, (str, dict, list, tuple)) and pd.isna(v)):
        return ""
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):,.2f}"
    if isinstance(v, Decimal):
        return f"{v:,.2f}" if v == v.quantize(Decimal("0.01")) else f"{v:,f}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={format_cell(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(map(format_cell, v))
    if hasattr(v, "isoformat"):
        return v.isoformat(sep=" ") if isinstance(v, dt.datetime) else v.isoformat()
    return str(v)


def numeric_columns(frame: pd.DataFrame) -> list[bool]:
    """Per column, whether it holds numbers (right-aligned in a table)."""
    return [
        pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
        or (frame[c].notna().any() and frame[c].dropna().map(is_number).all())
        for c in frame.columns
    ]


def markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_No rows._"
    numeric = numeric_columns(frame)
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    sep = "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"
    rows = [
        "| " + " | ".join(format_cell(v).replace("|", "\\|") for v in r) + " |"
        for r in frame.itertuples(index=False)
    ]
    return "\n".join([head, sep, *rows])
