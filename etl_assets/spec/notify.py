"""Where run alerts go: Slack channels and email recipients, checked when the spec loads."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from etl_assets.spec.base import Strict

NotifyEvent = Literal["success", "failure", "partial", "paused", "canceled", "warning"]
DEFAULT_NOTIFY_ON: tuple[NotifyEvent, ...] = ("failure", "partial", "paused")
EMAIL_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})$"
)
SLACK_CHANNEL = re.compile(r"^#?[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def _email_address(value: str) -> str:
    if len(value) > 254 or not EMAIL_ADDRESS.match(value):
        raise ValueError(f"{value!r} is not a valid email address")
    return value


def _distinct_events(v: list[str]) -> list[str]:
    return list(dict.fromkeys(v))


EmailAddress = Annotated[str, AfterValidator(_email_address)]
NotifyOn = Annotated[list[NotifyEvent], AfterValidator(_distinct_events)]


class SlackNotifySpec(Strict):
    """Where run alerts go in Slack. The bot token is a resource secret, never spec data."""

    channel: str
    on: NotifyOn = Field(default_factory=lambda: list(DEFAULT_NOTIFY_ON))
    # The Slack Web API root; a proxy or a local stand-in can replace it.
    api_url: str = "https://slack.com/api/"

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str) -> str:
        if not SLACK_CHANNEL.match(v):
            raise ValueError(f"{v!r} is not a Slack channel: use #name or a channel ID")
        return v


class EmailNotifySpec(Strict):
    """Who gets run mail. Addresses are checked at load, not when the first alert bounces."""

    to: list[EmailAddress] = Field(min_length=1)
    on: NotifyOn = Field(default_factory=lambda: list(DEFAULT_NOTIFY_ON))
    subject_prefix: str | None = None

    @field_validator("subject_prefix")
    @classmethod
    def _one_line(cls, v: str | None) -> str | None:
        if v is not None and ("\n" in v or "\r" in v):
            raise ValueError("subject_prefix must be a single line")
        return v


class NotifySpec(Strict):
    slack: SlackNotifySpec | None = None
    email: EmailNotifySpec | None = None

