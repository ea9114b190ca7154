"""`${ENV_VAR}` references: resolved at run time, and scrubbed from anything we show."""

from __future__ import annotations

import os
import re

from etl_assets.spec import ENV_REF

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<tail>@)")


class MissingSecret(Exception):
    """A `${VAR}` the spec references is not set in the environment."""


def resolve(text: str, *, where: str) -> str:
    """Replace `${VAR}` with its value. `where` names the spec field for the error."""

    def sub(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1))
        if value is None:
            raise MissingSecret(f"{where}: environment variable {m.group(1)} is not set")
        if _looks_secret(value):
            _known_secrets.add(value)
        return value

    return ENV_REF.sub(sub, text)


_known_secrets: set[str] = set()


def _looks_secret(value: str) -> bool:
    # Short values (ports, 'public') would scrub innocent text; URLs are handled by pattern.
    return len(value) >= 6 and "://" not in value


def redact(text: str) -> str:
    """Mask URL passwords and every secret value resolved in this process."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}***{m.group('tail')}", text)
    for value in sorted(_known_secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return text
