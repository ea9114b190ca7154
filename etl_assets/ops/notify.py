"""Run alerts: Slack and email when a pipeline run finishes.

Everything here takes the plain "run record" dict the run-finished handler builds, so the daemon
sensors and the in-process CLI path send identical messages. Sending never raises: a broken
Slack or SMTP server must not turn a finished run into a failed one; it is logged instead.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import re
import smtplib
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

import dagster as dg
import jinja2
import slack_sdk
from dagster_slack import SlackResource
from pydantic import Field, ValidationError, field_validator
from slack_sdk.errors import SlackApiError

from etl_assets.core.secrets import redact
from etl_assets.spec import NotifySpec

# Run status (as the run record spells it) -> the event name `notify.*.on` uses.
EVENT_BY_STATUS = {
    "success": "success",
    "failed": "failure",
    "partial": "partial",
    "paused": "paused",
    "canceled": "canceled",
}

STATUS_LOOK = {
    "success": ("✅", "SUCCESS"),
    "failed": ("❌", "FAILED"),
    "partial": ("⚠️", "PARTIAL"),
    "paused": ("⏸️", "PAUSED"),
    "canceled": ("🚫", "CANCELED"),
}

COUNT_FIELDS = (
    ("rows_extracted", "extracted"),
    ("inserted", "inserted"),
    ("updated", "updated"),
    ("unchanged", "unchanged"),
    ("deleted", "deleted"),
)

SLACK_API_URL = "https://slack.com/api/"
SMTP_SECURITY = ("plain", "starttls", "ssl")
DEFAULT_SENDER = "etl-assets@localhost"

# Slack limits: 150 characters in a header, 3000 in a section's text.
_HEADER_MAX = 150
_SECTION_MAX = 2900
_ERROR_MAX = 1500

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("etl_assets", "templates"),
    autoescape=jinja2.select_autoescape(["html.j2"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


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
SMTP_ENV = {
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


# --- the message content --------------------------------------------------------------------


def event_for(status: str | None) -> str | None:
    return EVENT_BY_STATUS.get(status or "")


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def partitions_label(partitions: Sequence[str]) -> str:
    if not partitions:
        return "no partition"
    if len(partitions) <= 3:
        return ", ".join(partitions)
    return f"{partitions[0]} … {partitions[-1]} ({len(partitions)} partitions)"


def _short_partitions(partitions: Sequence[str]) -> str:
    if not partitions:
        return "no partition"
    if len(partitions) == 1:
        return partitions[0]
    return f"{partitions[0]} (+{len(partitions) - 1} more)"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clean(value: Any) -> str | None:
    """Record text as shown: URL passwords and resolved secrets masked, in case a run leaked one."""
    return None if value is None or value == "" else redact(str(value))


def run_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """The run record reduced to what every channel shows, formatted once."""
    status = str(record.get("status") or "unknown")
    emoji, word = STATUS_LOOK.get(status, ("ℹ️", status.upper()))
    partitions = [str(p) for p in record.get("partitions") or []]
    sources = []
    warnings: list[tuple[str, str]] = []
    failed_checks: list[tuple[str, str]] = []
    for name, s in (record.get("sources") or {}).items():
        s = s or {}
        counts = [(label, s[key]) for key, label in COUNT_FIELDS if s.get(key) is not None]
        warned = [str(c) for c in s.get("checks_warned") or []]
        failed = [str(c) for c in s.get("checks_failed") or []]
        warnings += [(name, c + _check_counts(s.get("checks") or [], c)) for c in warned]
        failed_checks += [(name, c) for c in failed]
        sources.append(
            {
                "name": name,
                "status": str(s.get("status") or ""),
                "counts": counts,
                "counts_text": ", ".join(f"{v:,} {label}" for label, v in counts) or "no counts",
                "error": _clean(s.get("error")),
                "checks_warned": warned,
                "checks_failed": failed,
                **{key: s.get(key) for key, _ in COUNT_FIELDS},
            }
        )
    error_summary = _clean(record.get("error_summary"))
    error_type = _clean(record.get("error_type"))
    run_url = record.get("run_url") or None
    return {
        "status": status,
        "event": event_for(status),
        "emoji": emoji,
        "word": word,
        "pipeline": str(record.get("pipeline") or "?"),
        "run_id": str(record.get("run_id") or ""),
        "partitions": partitions,
        "partitions_label": partitions_label(partitions),
        "partitions_short": _short_partitions(partitions),
        "trigger": str(record.get("trigger") or "unknown")
        + (f" by {record['started_by']}" if record.get("started_by") else ""),
        "started_at": record.get("started_at") or "",
        "finished_at": record.get("finished_at") or "",
        "duration": format_duration(record.get("duration_s")),
        "sources": sources,
        "warnings": warnings,
        "failed_checks": failed_checks,
        "error_type": error_type,
        "error_summary": _clip(error_summary, _ERROR_MAX) if error_summary else None,
        "error_line": ": ".join(x for x in (error_type, error_summary) if x) or None,
        "failing_source": record.get("failing_source") or None,
        "run_url": str(run_url) if run_url else None,
        "report_path": record.get("report_path") or None,
        "notes": [_clean(n) for n in record.get("notes") or [] if n],
    }


def _check_counts(checks: Sequence[Mapping[str, Any]], name: str) -> str:
    """How many rows a failing check flagged, over its partitions: " (3 of 120 rows)"."""
    failing = [c for c in checks if c.get("name") == name and not c.get("passed")]
    bad = sum(int(c.get("unexpected_count") or 0) for c in failing)
    if not bad:
        return ""
    total = sum(int(c.get("element_count") or 0) for c in failing)
    parts = sorted({str(c["partition"]) for c in failing if c.get("partition")})
    where = f" in {partitions_label(parts)}" if len(parts) > 1 else ""
    return f" ({bad:,} of {total:,} rows{where})" if total else f" ({bad:,} unexpected{where})"


def _mrkdwn(text: Any) -> str:
    """Slack's three control characters; everything else in mrkdwn is literal enough."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str, label: str) -> str:
    return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{label}>"


def slack_message(record: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Block Kit blocks plus the plain-text fallback Slack shows in notifications."""
    v = run_view(record)
    esc = _mrkdwn
    title = f"{v['emoji']} {v['word']}: {v['pipeline']} {v['partitions_short']}"
    lines = [
        f"{v['emoji']} *{v['word']}* {esc(v['pipeline'])} {esc(v['partitions_label'])} "
        f"({v['duration']}, trigger: {esc(v['trigger'])})"
    ]
    source_lines = []
    for s in v["sources"]:
        line = f"• *{esc(s['name'])}* {esc(s['status'])}: {esc(s['counts_text'])}"
        if s["error"] and s["error"] != v["error_summary"]:
            line += f" — {esc(_clip(s['error'], 300))}"
        source_lines.append(line)
    warning_lines = [f"• {esc(src)}: {esc(check)}" for src, check in v["warnings"]]
    failed_lines = [f"• {esc(src)}: {esc(check)}" for src, check in v["failed_checks"]]
    note_lines = [f"• {esc(n)}" for n in v["notes"]]

    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(title, _HEADER_MAX), "emoji": True},
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Pipeline*\n{esc(v['pipeline'])}"},
                {
                    "type": "mrkdwn",
                    "text": f"*Partition{'s' if len(v['partitions']) > 1 else ''}*\n"
                    f"{esc(v['partitions_label'])}",
                },
                {"type": "mrkdwn", "text": f"*Duration*\n{v['duration']}"},
                {"type": "mrkdwn", "text": f"*Trigger*\n{esc(v['trigger'])}"},
            ],
        },
    ]

    def section(heading: str, body: list[str]) -> None:
        if body:
            text = _clip(f"*{heading}*\n" + "\n".join(body), _SECTION_MAX)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
            lines.append(f"{heading}:")
            lines.extend(body)

    if v["error_line"] or v["failing_source"]:
        where = f" in source *{esc(v['failing_source'])}*" if v["failing_source"] else ""
        body = [f"```{esc(v['error_line'])}```"] if v["error_line"] else []
        text = _clip(f"*Error*{where}\n" + "\n".join(body), _SECTION_MAX)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        if v["failing_source"]:
            lines.append(f"Failing source: {esc(v['failing_source'])}")
        if v["error_line"]:
            lines.append(f"Error: {esc(v['error_line'])}")
    section("Sources", source_lines)
    section("Check warnings", warning_lines)
    section("Failed checks", failed_lines)
    section("Notes", note_lines)

    links = []
    if v["run_url"]:
        links.append(_link(v["run_url"], "View run"))
    if v["report_path"]:
        links.append(f"Report: `{esc(v['report_path'])}`")
    links.append(f"Run `{esc(v['run_id'])}`")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]})
    lines.append(" · ".join(links))
    return "\n".join(lines), blocks


def render_email(
    record: Mapping[str, Any], subject_prefix: str | None = None
) -> tuple[str, str, str]:
    """(subject, plain text, HTML) from the email templates; the HTML is autoescaped."""
    v = run_view(record)
    prefix = "[etl]" if subject_prefix is None else subject_prefix
    subject = f"{prefix} {v['pipeline']} {v['partitions_short']}: {v['word']}".strip()
    subject = " ".join(subject.split())  # one header line, whatever the record held
    context = {**v, "subject": subject}
    text = _env.get_template("email.txt.j2").render(**context)
    page = _env.get_template("email.html.j2").render(**context)
    return subject, text, page


# --- sending --------------------------------------------------------------------------------

R = TypeVar("R", bound=dg.ConfigurableResource)


def _resolved(resource: R) -> R:
    """Resolve `dg.EnvVar` fields now, so the in-process CLI path can pass resources as defined.

    Harmless for a resource a sensor already initialized: plain values pass through.
    """
    return resource.process_config_and_initialize()


def _scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Mask secret values, also HTML-escaped. Under 4 characters is no secret worth mangling
    every word for.
    """
    text = redact(text)
    values = {form for s in secrets if s and len(s) >= 4 for form in (s, html.escape(s))}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def _scrub_tree(value: Any, secrets: Sequence[str | None]) -> Any:
    if isinstance(value, str):
        return _scrub(value, secrets)
    if isinstance(value, list):
        return [_scrub_tree(x, secrets) for x in value]
    if isinstance(value, dict):
        return {k: _scrub_tree(x, secrets) for k, x in value.items()}
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


def _what(record: Mapping[str, Any]) -> str:
    parts = record.get("partitions") or []
    return f"{record.get('pipeline')} {_short_partitions(parts)} ({record.get('status')})"


def _secret_values(*resources: dg.ConfigurableResource | None) -> list[str]:
    """The token and password of every configured channel, to mask them in all channels."""
    found: list[str] = []
    for resource in resources:
        if resource is None:
            continue
        try:
            ready = _resolved(resource)
        except Exception:
            continue  # the channel's own send reports this
        found += [v for v in (getattr(ready, "token", None), getattr(ready, "password", None)) if v]
    return found


def send_slack(
    notifier: SlackNotifier,
    channel: str,
    record: Mapping[str, Any],
    log: Log,
    *,
    mask: Sequence[str] = (),
) -> bool:
    """Post the run alert to `channel`. False, and a warning logged, if Slack refused it.

    `mask`: more secret values to keep out of the message and the logs (the token always is).
    """
    return _post_slack(notifier, channel, _what(record), lambda: slack_message(record), log, mask)


def _post_slack(
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
        ready = _resolved(notifier)
        secrets.append(ready.token)
        text, blocks = build()
        ready.get_client().chat_postMessage(
            channel=channel,
            text=_scrub(text, secrets),
            blocks=_scrub_tree(blocks, secrets),
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
        log.warning(_scrub(f"Slack alert for {what} to {channel} failed: {why}", secrets))
        return False
    except Exception as e:  # never let an alert fail the run
        log.warning(_scrub(f"Slack alert for {what} to {channel} failed: {_describe(e)}", secrets))
        return False
    log.info(_scrub(f"Slack alert for {what} posted to {channel}", secrets))
    return True


def build_email(
    sender: str,
    to: Sequence[str],
    record: Mapping[str, Any],
    subject_prefix: str | None = None,
    *,
    mask: Sequence[str | None] = (),
) -> EmailMessage:
    subject, text, page = (_scrub(x, mask) for x in render_email(record, subject_prefix))
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    msg["Message-ID"] = make_msgid(domain=domain)
    msg.set_content(text)
    msg.add_alternative(page, subtype="html")
    return msg


def _tls_context(notifier: EmailNotifier) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=notifier.ca_file or None)


def send_email(
    notifier: EmailNotifier,
    to: Sequence[str],
    record: Mapping[str, Any],
    log: Log,
    *,
    subject_prefix: str | None = None,
    mask: Sequence[str] = (),
) -> bool:
    """Mail the run summary (text and HTML alternatives) to every address in `to`.

    True when the server accepted at least one recipient; refusals are logged, never raised.
    `mask`: more secret values to keep out of the mail and the logs (the password always is).
    """

    def build(sender: str, recipients: list[str], secrets: list[str | None]) -> EmailMessage:
        return build_email(sender, recipients, record, subject_prefix, mask=secrets)

    return _post_email(notifier, to, _what(record), build, log, mask)


def _post_email(
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
        ready = _resolved(notifier)
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
            _scrub(
                f"Email alert for {what} failed: every recipient was refused "
                f"({', '.join(sorted(e.recipients))})",
                secrets,
            )
        )
        return False
    except Exception as e:  # never let an alert fail the run
        log.warning(_scrub(f"Email alert for {what} failed: {_describe(e)}", secrets))
        return False
    if refused:
        log.warning(
            _scrub(
                f"Email alert for {what}: refused for {', '.join(sorted(refused))}",
                secrets,
            )
        )
    accepted = [r for r in recipients if r not in refused]
    log.info(_scrub(f"Email alert for {what} sent to {', '.join(accepted)}", secrets))
    return True


def notify_run(
    record: Mapping[str, Any],
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
    sent: dict[str, bool] = {}
    events = {e for e in (event_for(record.get("status")), "warning" if warned else None) if e}
    if spec_notify is None or not events:
        return sent
    mask = _secret_values(slack, email)
    if spec_notify.slack is not None and events & set(spec_notify.slack.on):
        if slack is None:
            log.warning(f"Slack alert for {_what(record)} skipped: no Slack resource configured")
            sent["slack"] = False
        else:
            sent["slack"] = send_slack(slack, spec_notify.slack.channel, record, log, mask=mask)
    if spec_notify.email is not None and events & set(spec_notify.email.on):
        if email is None:
            log.warning(f"Email alert for {_what(record)} skipped: no email resource configured")
            sent["email"] = False
        else:
            sent["email"] = send_email(
                email,
                spec_notify.email.to,
                record,
                log,
                subject_prefix=spec_notify.email.subject_prefix,
                mask=mask,
            )
    return sent


# --- alerts that are not about one run ------------------------------------------------------


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
    body = "\n".join(_mrkdwn(line) for line in alert.lines)
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(alert.title, _HEADER_MAX), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(body, _SECTION_MAX)}},
    ]
    return "\n".join([alert.title, *alert.lines]), blocks


def _alert_email(
    alert: Alert, prefix: str | None
) -> Callable[[str, list[str], list[str | None]], EmailMessage]:
    def build(sender: str, recipients: list[str], secrets: list[str | None]) -> EmailMessage:
        msg = EmailMessage()
        subject = f"{'[etl]' if prefix is None else prefix} {alert.title}"
        msg["Subject"] = _scrub(" ".join(subject.split()), secrets)
        msg["From"], msg["To"] = sender, ", ".join(recipients)
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or "localhost")
        msg.set_content(_scrub("\n\n".join([alert.title, *alert.lines]) + "\n", secrets))
        return msg

    return build


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
    mask = _secret_values(slack, email)
    sent: dict[str, bool] = {}
    for spec in specs:
        if spec.slack is not None and f"slack:{spec.slack.channel}" not in sent:
            key = f"slack:{spec.slack.channel}"
            if slack is None:
                log.warning(f"Slack alert for {alert.about} skipped: no Slack resource configured")
                sent[key] = False
            else:
                sent[key] = _post_slack(slack, spec.slack.channel, alert.about, lambda: _alert_slack(alert), log, mask)
        if spec.email is not None and f"email:{','.join(spec.email.to)}" not in sent:
            key = f"email:{','.join(spec.email.to)}"
            if email is None:
                log.warning(f"Email alert for {alert.about} skipped: no email resource configured")
                sent[key] = False
            else:
                build = _alert_email(alert, spec.email.subject_prefix)
                sent[key] = _post_email(email, spec.email.to, alert.about, build, log, mask)
    return sent
