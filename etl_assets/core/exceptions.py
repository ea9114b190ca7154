"""The project's own error types, in a module that imports nothing: every layer raises them, and
commands that only read specs or history load them without Dagster."""

from __future__ import annotations


class SpecError(Exception):
    """An invalid pipeline spec. The message alone tells the user what to fix."""


class SourceDataError(Exception):
    """The source's data or schema is wrong: retrying cannot help."""


class TransientSourceError(Exception):
    """A failure worth retrying (rate limit, 5xx, timeout); `retry_after` is in seconds."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after
