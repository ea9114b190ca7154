"""Run alerts: Slack and email when a pipeline run finishes.

Everything here reads the run's `RunOutcome` (or its record, the dict form), so the daemon
sensors and the in-process CLI path send identical messages. Sending never raises: a broken
Slack or SMTP server must not turn a finished run into a failed one; it is logged instead.

The content is in `notify_text`, the resources and delivery in `notify_channels`, alerts not
about one run in `notify_alerts`; their public names are importable from here too.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from typing import Any

from etl_assets.core.outcome import RunOutcome, as_outcome
from etl_assets.ops.notify_alerts import (
    Alert,
    deadline_missed_alert,
    deadline_recovered_alert,
    notify_alert,
    tick_failure_alert,
)
from etl_assets.ops.notify_channels import (
    DEFAULT_SENDER,
    SLACK_API_URL,
    SMTP_ENV,
    SMTP_SECURITY,
    EmailNotifier,
    Log,
    SlackNotifier,
    email_from_environment,
    notifier_resources,
    post_email,
    post_slack,
    secret_values,
)
from etl_assets.ops.notify_text import (
    COUNT_FIELDS,
    EVENT_BY_STATUS,
    STATUS_LOOK,
    build_email,
    event_for,
    format_duration,
    partitions_label,
    render_email,
    run_view,
    short_partitions,
    slack_message,
)
from etl_assets.spec import NotifySpec

__all__ = [
    "COUNT_FIELDS", "DEFAULT_SENDER", "EVENT_BY_STATUS", "SLACK_API_URL", "SMTP_ENV", "SMTP_SECURITY",
    "STATUS_LOOK", "Alert", "EmailNotifier", "Log", "SlackNotifier", "build_email",
    "deadline_missed_alert", "deadline_recovered_alert", "email_from_environment", "event_for",
    "format_duration", "notifier_resources", "notify_alert", "notify_run", "partitions_label",
    "render_email", "run_view", "send_email", "send_slack", "slack_message", "tick_failure_alert",
]


def _what(o: RunOutcome) -> str:
    """The run as log lines name it: `shop 2025-03-09 (failed)`."""
    return f"{o.pipeline} {short_partitions(o.partitions or [])} ({o.status})"


def send_slack(
    notifier: SlackNotifier,
    channel: str,
    run: RunOutcome | Mapping[str, Any],
    log: Log,
    *,
    mask: Sequence[str] = (),
) -> bool:
    """Post the run alert to `channel`. False, and a warning logged, if Slack refused it.

    `mask`: more secret values to keep out of the message and the logs (the token always is).
    """
    o = as_outcome(run)
    return post_slack(notifier, channel, _what(o), functools.partial(slack_message, o), log, mask)


def _run_email(
    o: RunOutcome, subject_prefix: str | None, sender: str, recipients: list[str], secrets: list[str | None]
) -> EmailMessage:
    return build_email(sender, recipients, o, subject_prefix, mask=secrets)


def send_email(
    notifier: EmailNotifier,
    to: Sequence[str],
    run: RunOutcome | Mapping[str, Any],
    log: Log,
    *,
    subject_prefix: str | None = None,
    mask: Sequence[str] = (),
) -> bool:
    """Mail the run summary (text and HTML alternatives) to every address in `to`.

    True when the server accepted at least one recipient; refusals are logged, never raised.
    `mask`: more secret values to keep out of the mail and the logs (the password always is).
    """
    o = as_outcome(run)
    return post_email(notifier, to, _what(o), functools.partial(_run_email, o, subject_prefix), log, mask)


def notify_run(
    run: RunOutcome | Mapping[str, Any],
    spec_notify: NotifySpec | None,
    slack: SlackNotifier | None,
    email: EmailNotifier | None,
    log: Log,
    *,
    warned: bool = False,
) -> dict[str, bool]:
    """Send the alerts the pipeline's `notify` asks for, for this run's status.

    `warned`: the run's warn-severity checks failed, so `on: [warning]` wants it too; a
    channel gets one message per run whichever of its events match.
    Returns one entry per channel that wanted this event: True if it went out. A channel the
    spec asks for but with no resource configured counts as not sent, with a warning.
    """
    o = as_outcome(run)
    sent: dict[str, bool] = {}
    events = {e for e in (event_for(o.status), "warning" if warned else None) if e}
    if spec_notify is None or not events:
        return sent
    mask = secret_values(slack, email)
    if spec_notify.slack is not None and events & set(spec_notify.slack.on):
        if slack is None:
            log.warning(f"Slack alert for {_what(o)} skipped: no Slack resource configured")
            sent["slack"] = False
        else:
            sent["slack"] = send_slack(slack, spec_notify.slack.channel, o, log, mask=mask)
    if spec_notify.email is not None and events & set(spec_notify.email.on):
        if email is None:
            log.warning(f"Email alert for {_what(o)} skipped: no email resource configured")
            sent["email"] = False
        else:
            sent["email"] = send_email(
                email,
                spec_notify.email.to,
                o,
                log,
                subject_prefix=spec_notify.email.subject_prefix,
                mask=mask,
            )
    return sent
