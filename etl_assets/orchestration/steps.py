"""How a step's errors end: transient ones propagate to RetryPolicy, the rest fail at once.

Transient errors propagate so the step's RetryPolicy retries them. Everything else becomes
`dg.Failure(allow_retries=False)` at once: retrying a schema error only hides it and hammers
the source.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from etl_assets.core.errors import describe, is_transient, next_delay, retry_after
from etl_assets.orchestration.memory import limit_failure


@contextmanager
def classified(
    context: dg.AssetExecutionContext,
    *,
    pipeline: str,
    source: str | None,
    partitions: list[str],
    policy: dg.RetryPolicy | None,
) -> Iterator[None]:
    """Let transient errors through for RetryPolicy (logging each retry); fail the rest now."""
    try:
        yield
    except dg.Failure:
        raise
    except Exception as exc:
        where = f"{pipeline}/{source}" if source else pipeline
        where += f" partition {', '.join(partitions)}"
        limited = limit_failure(exc, where)
        if limited is not None:
            raise limited from None
        attempt = context.retry_number
        max_retries = policy.max_retries if policy else 0
        if is_transient(exc) and attempt < max_retries:
            wait = next_delay(policy, attempt)
            asked = retry_after(exc)
            if asked and asked > wait:
                # RetryPolicy's delay is fixed; honour the server's longer wait here.
                time.sleep(min(asked - wait, 600))
                wait = asked
            context.log.warning(
                f"{where}: attempt {attempt + 1} of {max_retries + 1} failed with a transient "
                f"error ({describe(exc)}); retrying in {wait:.0f}s"
            )
            raise
        kind = "transient error, retries exhausted" if is_transient(exc) else "permanent error"
        raise dg.Failure(
            description=f"{where}: {describe(exc)}",
            metadata={
                "pipeline": pipeline,
                "source": source or "",
                "partitions": ", ".join(partitions),
                "error_type": type(exc).__name__,
                "classification": kind,
                "attempts": attempt + 1,
            },
            allow_retries=False,
        ) from None
