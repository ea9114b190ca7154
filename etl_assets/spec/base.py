"""What every spec model shares: identifiers, durations, column types, time zones, the
strict base model and the validators that keep credentials out of spec files."""

from __future__ import annotations

import datetime as dt
import difflib
import re
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict

from etl_assets.core.secrets import CREDENTIAL_ENV, CREDENTIAL_KEYS, ENV_REF
from etl_assets.spec.help import describe_fields

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
DURATION = re.compile(r"^\s*(\d+)\s*(m|min|h|d|w)\s*$")
OWNER = re.compile(r"^(team:[A-Za-z0-9_.-]+|[^@\s]+@[^@\s]+\.[^@\s]+)$")

Cadence = Literal["15min", "30min", "hourly", "daily", "weekly", "monthly"]
ColumnType = Literal["string", "integer", "float", "boolean", "date", "timestamp"]


def parse_duration(value: str) -> dt.timedelta:
    m = DURATION.match(value)
    if not m:
        raise ValueError(f"invalid duration {value!r}: use e.g. 30m, 12h, 3d or 1w")
    n, unit = int(m.group(1)), m.group(2)
    return {
        "m": dt.timedelta(minutes=n),
        "min": dt.timedelta(minutes=n),
        "h": dt.timedelta(hours=n),
        "d": dt.timedelta(days=n),
        "w": dt.timedelta(weeks=n),
    }[unit]


# Run history (etl_meta), the Dagster instance's tables (`public` of the warehouse database
# when ETL_INSTANCE_URL defaults to it) and PostgreSQL's own schemas are never load targets.
RESERVED_SCHEMAS = frozenset({"etl_meta", "public", "information_schema"})


def not_reserved(schema: str, what: str) -> None:
    low = schema.lower()
    if low in RESERVED_SCHEMAS or low.startswith("pg_"):
        raise ValueError(
            f"{what} {schema!r} is reserved for run history, the Dagster instance or PostgreSQL "
            "itself: load into a schema of your own"
        )


def identifier(value: str, what: str = "name") -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(
            f"{value!r} is not a valid {what}: use letters, digits and _ , starting with a letter"
        )
    return value


def known_timezone(v: str | None) -> str | None:
    if v is not None:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {v!r}: use an IANA name such as UTC{close_timezone(v)}"
            ) from None
    return v


def close_timezone(v: str) -> str:
    hint = difflib.get_close_matches(v, sorted(available_timezones()), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


class Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, frozen=True, json_schema_extra=describe_fields
    )


_QUERY_CREDENTIAL = re.compile(rf"[?&;](?:{CREDENTIAL_KEYS})=([^&#;]*)", re.IGNORECASE)


def credential_refs(value: str) -> str:
    CREDENTIAL_ENV.update(ENV_REF.findall(value))
    return value


def no_literal_secret_in_url(v: str, example: str) -> str:
    """A password written into a URL (user:pw@ or ?password=) would sit in the spec file."""
    m = re.match(r"^[a-z0-9+]+://[^:/@]*:([^@]*)@", v)
    literal = [m.group(1)] if m and m.group(1) else []
    literal += [q for q in _QUERY_CREDENTIAL.findall(v) if q]
    if any(not ENV_REF.fullmatch(x) for x in literal):
        raise ValueError(
            "the URL holds a literal password: reference an environment variable instead, "
            f"e.g. {example}"
        )
    return credential_refs(v)


def env_only(value: str, field: str) -> str:
    """Credentials live in the environment, never in the spec file."""
    if not ENV_REF.search(value):
        raise ValueError(f"{field} must reference an environment variable, e.g. \"${{API_TOKEN}}\"")
    return credential_refs(value)
