"""Alert channels: the Slack and SMTP resources, and delivery with masking and error reporting.

Sending never raises: a broken Slack or SMTP server must not turn a finished run into a failed
one; it is logged instead. Every alert kind (run alerts, deadlines, failed ticks) goes through
`post_slack` and `post_email`, so all share one masking of secrets.
"""

from __future__ import annotations

import html
import os
import re
import smtplib
import ssl
from collections.abc import Callable, Iterable, Sequence
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any, Protocol, TypeVar

import dagster as dg
import slack_sdk
from dagster_slack import SlackResource
from pydantic import Field, ValidationError, field_validator
from slack_sdk.errors import SlackApiError

from etl_assets.core.secrets import redact
from etl_assets.spec import PipelineSpec

SLACK_API_URL = "https://slack.com/api/"
SMTP_SECURITY = ("plain", "starttls", "ssl")
DEFAULT_SENDER = "etl-assets@localhost"


class Log(Protocol):
    """What we need from a logger: `logging.Logger` and Dagster's `context.log` both fit."""

    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


# --- resources ------------------------------------------------------------------------------


class SlackNotifier(SlackResource):
    """dagster-slack's resource plus `base_url`, so tests and proxies can stand in for Slack.

    Use `SlackNotifier(token=dg.EnvVar("SLACK_BOT_TOKEN"))`: the token is read at launch.
    """

    base_url: str = Field(default=SLACK_API_URL, description="Slack Web API root; empty: Slack's.")
    timeout_s: int = Field(default=30, gt=0, description="Per-request timeout in seconds.")

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False  # ours, not the dagster-slack resource it extends

    def get_client(self) -> slack_sdk.WebClient:
        return slack_sdk.WebClient(
            token=self.token, base_url=self.base_url or SLACK_API_URL, timeout=self.timeout_s
        )


class EmailNotifier(dg.ConfigurableResource):
    """SMTP delivery for run mail. Pass `password` as `dg.EnvVar` so it is read at launch.

    Every field may be a `dg.EnvVar`; an empty value means the default (no login for username).
    """

    host: str
    port: int | None = Field(
        default=None, description="Default by security: 25 plain, 587 starttls, 465 ssl."
    )
    # A str, not a Literal, so it can be a dg.EnvVar; checked once the value is known.
    security: str = Field(default="plain", description="plain, starttls or ssl.")
    username: str | None = None
    password: str | None = None
    sender: str = DEFAULT_SENDER
    ca_file: str | None = Field(
        default=None, description="PEM CA bundle to trust instead of the system store."
    )
    timeout_s: float = Field(default=30, gt=0)

    @field_validator("security", mode="before")
    @classmethod
    def _security(cls, v: Any) -> Any:
        if isinstance(v, dg.EnvVar):
            return v  # validated when the run resolves it
        if (str(v or "").strip().lower() or "plain") not in SMTP_SECURITY:
            raise ValueError(f"security must be plain, starttls or ssl, not {v!r}")
        return v

    @property
    def effective_security(self) -> str:
        return self.security.strip().lower() or "plain"

    @property
    def effective_port(self) -> int:
        return self.port or {"plain": 25, "starttls": 587, "ssl": 465}[self.effective_security]


# Deployment settings (e.g. /etc/etl-assets/env) for each EmailNotifier field but the host.
SMTP_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "port": ("ETL_SMTP_PORT", dg.EnvVar.int),
    "security": ("ETL_SMTP_SECURITY", dg.EnvVar),
    "username": ("ETL_SMTP_USER", dg.EnvVar),
    "password": ("ETL_SMTP_PASSWORD", dg.EnvVar),
    "sender": ("ETL_SMTP_FROM", dg.EnvVar),
}


def email_from_environment() -> EmailNotifier | None:
    """The SMTP resource the ETL_SMTP_* variables describe; None without ETL_SMTP_HOST.

    Values stay `dg.EnvVar`s, read when a run or sensor starts. Only the variables that are
    set become one: Dagster fails a resource (and the sensor recording the run) on an unset
    `dg.EnvVar`, while an unset optional setting just means its default.
    """
    if not os.environ.get("ETL_SMTP_HOST"):
        return None
    fields = {name: make(var) for name, (var, make) in SMTP_ENV.items() if os.environ.get(var)}
    return EmailNotifier(host=dg.EnvVar("ETL_SMTP_HOST"), **fields)


# --- sending --------------------------------------------------------------------------------

R = TypeVar("R", bound=dg.ConfigurableResource)


def resolved(resource: R) -> R:
    """Resolve `dg.EnvVar` fields now, so the in-process CLI path can pass resources as defined.

    Harmless for a resource a sensor already initialized: plain values pass through.
    """
    return resource.process_config_and_initialize()


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Mask secret values, also HTML-escaped. Under 4 characters is no secret worth mangling
    every word for.
    """
    text = redact(text)
    values = {form for s in secrets if s and len(s) >= 4 for form in (s, html.escape(s))}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def scrub_tree(value: Any, secrets: Sequence[str | None]) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, list):
        return [scrub_tree(x, secrets) for x in value]
    if isinstance(value, dict):
        return {k: scrub_tree(x, secrets) for k, x in value.items()}
    return value


_ENV_MISSING = re.compile(r'environment variable "([^"]+)" which is not set')


def _describe(exc: BaseException) -> str:
    """One line about what went wrong, without Dagster's multi-line config dumps."""
    missing = _ENV_MISSING.findall(str(exc))
    if missing:
        return "environment variable " + ", ".join(sorted(set(missing))) + " is not set"
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def secret_values(*resources: dg.ConfigurableResource | None) -> list[str]:
    """The token and password of every configured channel, to mask them in all channels."""
    found: list[str] = []
    for resource in resources:
        if resource is None:
            continue
        try:
            ready = resolved(resource)
        except Exception:
            continue  # the channel's own send reports this
        found += [v for v in (getattr(ready, "token", None), getattr(ready, "password", None)) if v]
    return found


def post_slack(
    notifier: SlackNotifier,
    channel: str,
    what: str,
    build: Callable[[], tuple[str, list[dict[str, Any]]]],
    log: Log,
    mask: Sequence[str],
) -> bool:
    """Post what `build` makes; every alert kind shares this masking and error reporting."""
    secrets: list[str | None] = list(mask)
    try:
        ready = resolved(notifier)
        secrets.append(ready.token)
        text, blocks = build()
        ready.get_client().chat_postMessage(
            channel=channel,
            text=scrub(text, secrets),
            blocks=scrub_tree(blocks, secrets),
            unfurl_links=False,
            unfurl_media=False,
        )
    except SlackApiError as e:
        resp = e.response
        data = resp.data if isinstance(resp.data, dict) else {}
        if resp.status_code >= 400:
            why = f"HTTP {resp.status_code}"
        else:
            why = f"Slack API error {data.get('error') or 'unknown'}"
        log.warning(scrub(f"Slack alert for {what} to {channel} failed: {why}", secrets))
        return False
    except Exception as e:  # never let an alert fail the run
        log.warning(scrub(f"Slack alert for {what} to {channel} failed: {_describe(e)}", secrets))
        return False
    log.info(scrub(f"Slack alert for {what} posted to {channel}", secrets))
    return True


def _tls_context(notifier: EmailNotifier) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=notifier.ca_file or None)


def post_email(
    notifier: EmailNotifier,
    to: Sequence[str],
    what: str,
    build: Callable[[str, list[str], list[str | None]], EmailMessage],
    log: Log,
    mask: Sequence[str],
) -> bool:
    """Mail what `build(sender, recipients, secrets)` makes; shared by every alert kind."""
    secrets: list[str | None] = list(mask)
    recipients = list(dict.fromkeys(to))
    try:
        if not recipients:
            raise ValueError("no recipients")
        ready = resolved(notifier)
        secrets.append(ready.password)
        sender = ready.sender or DEFAULT_SENDER
        msg = build(sender, recipients, secrets)
        host, port = ready.host, ready.effective_port
        if ready.effective_security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port, timeout=ready.timeout_s, context=_tls_context(ready)
            )
        else:
            smtp = smtplib.SMTP(host, port, timeout=ready.timeout_s)
        with smtp:
            if ready.effective_security == "starttls":
                smtp.starttls(context=_tls_context(ready))
            if ready.username:
                smtp.login(ready.username, ready.password or "")
            refused = smtp.send_message(
                msg, from_addr=parseaddr(sender)[1] or sender, to_addrs=recipients
            )
    except smtplib.SMTPRecipientsRefused as e:
        log.warning(
            scrub(
                f"Email alert for {what} failed: every recipient was refused "
                f"({', '.join(sorted(e.recipients))})",
                secrets,
            )
        )
        return False
    except Exception as e:  # never let an alert fail the run
        log.warning(scrub(f"Email alert for {what} failed: {_describe(e)}", secrets))
        return False
    if refused:
        log.warning(
            scrub(
                f"Email alert for {what}: refused for {', '.join(sorted(refused))}",
                secrets,
            )
        )
    accepted = [r for r in recipients if r not in refused]
    log.info(scrub(f"Email alert for {what} sent to {', '.join(accepted)}", secrets))
    return True




def notifier_resources(specs: Sequence[PipelineSpec]) -> dict[str, Any]:
    """Slack and SMTP resources, only when some pipeline asks for that channel.

    Their settings are `dg.EnvVar`s, read when a run or sensor launches, never at import.
    """
    resources: dict[str, Any] = {}
    slack = [s.notify.slack for s in specs if s.notify.slack]
    if slack:
        resources["slack"] = SlackNotifier(token=dg.EnvVar("SLACK_BOT_TOKEN"), base_url=slack[0].api_url)
    email = email_from_environment() if any(s.notify.email for s in specs) else None
    if email is not None:
        resources["email"] = email
    return resources
