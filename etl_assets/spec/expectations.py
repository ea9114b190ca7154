"""The great-expectations adapter the spec needs: an expectation built from its class name.

It imports nothing above `etl_assets.core`, so validating an `expectation` check does not pull
in the quality package. great_expectations itself is imported on first use only: it takes
seconds to import, and only specs with an `expectation` check (and validation steps) need it.
"""

from __future__ import annotations

import difflib
import os
from types import ModuleType
from typing import Any


def import_gx() -> ModuleType:
    """great_expectations, imported on first use with its usage analytics off."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx  # lazy: heavy, and needed only by GX checks

    return gx


def build_expectation(name: str, kwargs: dict[str, Any]) -> Any:
    """A GX expectation from its class name; a clear ValueError for a bad name or argument."""
    expectations = import_gx().expectations
    cls = getattr(expectations, name, None)
    if not isinstance(cls, type):
        known = [n for n in dir(expectations) if n.startswith("Expect")]
        hint = difflib.get_close_matches(name, known, n=1)
        raise ValueError(
            f"unknown great-expectations expectation {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        )
    try:
        return cls(**kwargs)
    except Exception as e:  # pydantic's error for a bad argument, reduced to its first line
        first = str(e).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:3]) if len(first) > 1 else first[0] if first else ""
        raise ValueError(f"invalid arguments for {name}: {detail}") from None
