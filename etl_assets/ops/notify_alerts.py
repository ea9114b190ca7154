"""Alerts that are not about one run: a missed deadline, its recovery, a failed tick.

A title and a few plain lines, sent once to each channel the pipelines' `notify` names,
through the same delivery (and masking) as run alerts.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any
from zoneinfo import ZoneInfo

from etl_assets.ops.notify_channels import (
    EmailNotifier,
    Log,
    SlackNotifier,
    post_email,
    post_slack,
    scrub,
    secret_values,
)
from etl_assets.ops.notify_text import HEADER_MAX, SECTION_MAX, clip, mrkdwn
from etl_assets.spec import NotifySpec


@dataclass(frozen=True)
class Alert:
    """A missed deadline, its recovery or a failed tick: a title and a few plain lines."""

    emoji: str
    word: str  # DEADLINE MISSED, RECOVERED, TICK FAILED
    about: str  # "shop 2025-03-09": the title's subject, and what the logs name
    lines: tuple[str, ...]

    @property
    def title(self) -> str:
        return " ".join(f"{self.emoji} {self.word}: {self.about}".split())


def _when(instant: dt.datetime, timezone: str) -> str:
    return instant.astimezone(ZoneInfo(timezone)).strftime("%a %Y-%m-%d %H:%M %Z")


def deadline_missed_alert(
    pipeline: str, partition: str, deadline: dt.datetime, timezone: str, state: str, command: str
) -> Alert:
    """`state`: one sentence on where the partition is (never run, still running, failed)."""
    return Alert(
        "⏰", "DEADLINE MISSED", f"{pipeline} {partition}",
        (
            f"{pipeline} partition {partition} was due by {_when(deadline, timezone)} and is not loaded: {state}",
            f"To load it, run `{command}`.",
        ),
    )


def deadline_recovered_alert(
    pipeline: str, partition: str, deadline: dt.datetime, timezone: str, how: str
) -> Alert:
    return Alert(
        "✅", "RECOVERED", f"{pipeline} {partition}",
        (f"{pipeline} partition {partition} is loaded now ({how}), after missing its deadline of {_when(deadline, timezone)}.",),
    )


def tick_failure_alert(kind: str, name: str, at: dt.datetime, error: str, count: int = 1) -> Alert:
    """`kind`: schedule or sensor; `error`: the first line of the newest failure."""
    times = "" if count == 1 else f" ({count} failed ticks since the last alert)"
    return Alert(
        "🛑", "TICK FAILED", f"{kind} {name}",
        (
            f"The {kind} {name} failed to evaluate at {at.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC{times}: {error}",
            "Nothing it would have started has run; see its tick history in the UI.",
        ),
    )


def _alert_slack(alert: Alert) -> tuple[str, list[dict[str, Any]]]:
    body = "\n".join(mrkdwn(line) for line in alert.lines)
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(alert.title, HEADER_MAX), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": clip(body, SECTION_MAX)}},
    ]
    return "\n".join([alert.title, *alert.lines]), blocks


def _alert_email(
    alert: Alert, prefix: str | None, sender: str, recipients: list[str], secrets: list[str | None]
) -> EmailMessage:
    """The alert as a plain-text mail; `post_email` supplies sender, recipients and secrets."""
    msg = EmailMessage()
    subject = f"{'[etl]' if prefix is None else prefix} {alert.title}"
    msg["Subject"] = scrub(" ".join(subject.split()), secrets)
    msg["From"], msg["To"] = sender, ", ".join(recipients)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or "localhost")
    msg.set_content(scrub("\n\n".join([alert.title, *alert.lines]) + "\n", secrets))
    return msg


def notify_alert(
    alert: Alert,
    specs: Iterable[NotifySpec],
    slack: SlackNotifier | None,
    email: EmailNotifier | None,
    log: Log,
) -> dict[str, bool]:
    """Send `alert` once to each Slack channel and each recipient list the `specs` name.

    Keys: "slack:<channel>" and "email:<addresses>", True if it went out.
    """
    mask = secret_values(slack, email)
    sent: dict[str, bool] = {}
    for spec in specs:
        if spec.slack is not None and f"slack:{spec.slack.channel}" not in sent:
            key = f"slack:{spec.slack.channel}"
            if slack is None:
                log.warning(f"Slack alert for {alert.about} skipped: no Slack resource configured")
                sent[key] = False
            else:
                sent[key] = post_slack(slack, spec.slack.channel, alert.about, functools.partial(_alert_slack, alert), log, mask)
        if spec.email is not None and f"email:{','.join(spec.email.to)}" not in sent:
            key = f"email:{','.join(spec.email.to)}"
            if email is None:
                log.warning(f"Email alert for {alert.about} skipped: no email resource configured")
                sent[key] = False
            else:
                build = functools.partial(_alert_email, alert, spec.email.subject_prefix)
                sent[key] = post_email(email, spec.email.to, alert.about, build, log, mask)
    return sent
