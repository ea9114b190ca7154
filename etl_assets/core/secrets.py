"""`${ENV_VAR}` references: resolved at run time, and scrubbed from anything we show.

`redact` is the one place text is scrubbed before it leaves the process (metadata, logs,
history, reports, alerts). It masks, by value:

- every value of an environment variable a spec uses for a credential (connection URLs,
  auth, headers and params; `CREDENTIAL_ENV`, filled as specs are parsed), whatever its length;
- when such a value is itself a URL or DSN, its password-like parts alone (a client library
  may echo just the password, e.g. libpq's "invalid percent-encoded token");
- by pattern, in any text: the password of `scheme://user:pw@`, `?password=`/`token=`/`key=`…
  query values and DSN `password=` words.

Values shorter than `_WHOLE_WORD_BELOW` characters are masked only as whole words (not next to
a letter or digit), so a 3-character secret such as `abc` is masked in `key=abc` or `"abc"` but
does not turn `tabcase` into `t***case`.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

# `${NAME}` references in a spec.
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Names of the environment variables that hold credentials (connection URLs, auth, headers
# and params set from ${ENV}): every process that parsed a spec can mask their values.
CREDENTIAL_ENV: set[str] = set()
# Query parameters and DSN keys that carry a credential.
CREDENTIAL_KEYS = r"password|passwd|pwd|pass|token|access_token|api_key|apikey|key|secret"

MASK = "***"
_WHOLE_WORD_BELOW = 6
# Settings that always hold credentials, whether or not a spec names them.
_SETTINGS = ("ETL_WAREHOUSE_URL", "ETL_INSTANCE_URL", "ETL_DEMO_SOURCE_URL")

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<tail>@)")
# `?token=…`, `&key=…` in URLs and `password=…` words in DSNs.
_KEY_VALUE = re.compile(
    rf"(?P<head>(?:^|(?<=[?&;\s\"'(]))(?:{CREDENTIAL_KEYS})=)(?P<value>'[^']*'|[^&#;\s\"'<>)]+)",
    re.IGNORECASE,
)
_DSN_PASSWORD = re.compile(r"(?:^|\s)password\s*=\s*('[^']*'|\S+)", re.IGNORECASE)


class MissingSecret(Exception):
    """A `${VAR}` the spec references is not set in the environment."""


def resolve(text: str, *, where: str) -> str:
    """Replace `${VAR}` with its value. `where` names the spec field for the error."""
    return ENV_REF.sub(functools.partial(_env_value, where=where), text)


def _env_value(m: re.Match[str], *, where: str) -> str:
    value = os.environ.get(m.group(1))
    if value is None:
        raise MissingSecret(f"{where}: environment variable {m.group(1)} is not set")
    if m.group(1) in CREDENTIAL_ENV:
        # Kept even if the variable changes later in this process.
        _known_secrets.update(secret_parts(value))
    return value


_known_secrets: set[str] = set()


def secret_parts(value: str) -> set[str]:
    """What to mask for one credential value: the value, or a URL's/DSN's passwords."""
    value = value.strip()
    if not value:
        return set()
    parts: set[str] = set()
    if "://" in value:
        split = urlsplit(value)
        netloc = split.netloc.rpartition("@")[0]
        if ":" in netloc:
            parts.add(netloc.split(":", 1)[1])
        for piece in split.query.split("&"):
            key, _, raw = piece.partition("=")
            if re.fullmatch(CREDENTIAL_KEYS, key, re.IGNORECASE):
                parts.add(raw)
    elif "=" in value and " " in value or value.lower().startswith("password="):
        # A DSN's password words; a value that only looks like one (`Bearer abc==`) is masked whole.
        dsn = [m.group(1).strip("'") for m in _DSN_PASSWORD.finditer(value)]
        parts.update(dsn or [value])
    else:
        parts.add(value)
    forms: set[str] = set()
    for p in filter(None, parts):
        forms |= {p, unquote(p), quote(p, safe=""), html.escape(p), json.dumps(p)[1:-1]}
    return {f for f in forms if f}


def _secret_values() -> set[str]:
    values = set(_known_secrets)
    for name in (*CREDENTIAL_ENV, *_SETTINGS):
        value = os.environ.get(name)
        if value:
            values |= secret_parts(value)
    return values


def _mask_values(text: str, values: Iterable[str]) -> str:
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= _WHOLE_WORD_BELOW:
            text = text.replace(value, MASK)
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", MASK, text)
    return text


def redact(text: str) -> str:
    """Mask URL passwords, credential parameters and every credential value we know of."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}{m.group('tail')}", text)
    text = _KEY_VALUE.sub(lambda m: f"{m.group('head')}{MASK}", text)
    return _mask_values(text, _secret_values())
