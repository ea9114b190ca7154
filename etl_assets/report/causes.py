"""Why a check failed, in the words of the spec the user wrote: one wording for the CLI
summary, the report and alerts."""

from __future__ import annotations

from typing import Any

from etl_assets.spec import RowCountCheck


def _expected_rows(check: RowCountCheck) -> str:
    if check.max is None:
        return f"at least {check.min or 0}"
    if check.min is None:
        return f"at most {check.max}"
    return f"between {check.min} and {check.max}"


def check_cause(c: dict[str, Any], check: Any | None) -> str:
    """Why a check failed, in the words of the spec the user wrote."""
    if c.get("message"):
        return str(c["message"])
    if isinstance(check, RowCountCheck):
        return f"{c.get('observed')} rows, expected {_expected_rows(check)}"
    if c.get("unexpected_count"):
        samples = ", ".join(map(str, (c.get("samples") or [])[:3]))
        return (f"{c['unexpected_count']:,} of {c.get('element_count') or 0:,} rows fail "
                f"'{c.get('description')}'" + (f" (e.g. {samples})" if samples else ""))
    return f"expected {c.get('description')}, observed {c.get('observed')}"
