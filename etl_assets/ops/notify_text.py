"""A run alert's content: one view of the run's outcome, as Slack blocks and as an email.

Every channel formats the same `run_view`, so Slack and email never disagree about a run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any

import jinja2

from etl_assets.core.outcome import RunOutcome, as_outcome
from etl_assets.core.secrets import redact
from etl_assets.ops.notify_channels import scrub

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

# Slack limits: 150 characters in a header, 3000 in a section's text.
HEADER_MAX = 150
SECTION_MAX = 2900
_ERROR_MAX = 1500

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("etl_assets", "templates"),
    autoescape=jinja2.select_autoescape(["html.j2"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


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


def short_partitions(partitions: Sequence[str]) -> str:
    if not partitions:
        return "no partition"
    if len(partitions) == 1:
        return partitions[0]
    return f"{partitions[0]} (+{len(partitions) - 1} more)"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clean(value: Any) -> str | None:
    """Record text as shown: URL passwords and resolved secrets masked, in case a run leaked one."""
    return None if value is None or value == "" else redact(str(value))


def run_view(run: RunOutcome | Mapping[str, Any]) -> dict[str, Any]:
    """The run's outcome reduced to what every channel shows, formatted once.

    `run` may be the outcome's record (a dict): missing facts show as unknown.
    """
    o = as_outcome(run)
    status = str(o.status or "unknown")
    emoji, word = STATUS_LOOK.get(status, ("ℹ️", status.upper()))
    partitions = [str(p) for p in o.partitions or []]
    sources = []
    warnings: list[tuple[str, str]] = []
    failed_checks: list[tuple[str, str]] = []
    for name, s in o.sources.items():
        counts = [(label, getattr(s, key)) for key, label in COUNT_FIELDS if getattr(s, key) is not None]
        warned = [str(c) for c in s.checks_warned or []]
        failed = [str(c) for c in s.checks_failed or []]
        warnings += [(name, c + _check_counts(s.checks or [], c)) for c in warned]
        failed_checks += [(name, c) for c in failed]
        sources.append(
            {
                "name": name,
                "status": str(s.status or ""),
                "counts": counts,
                "counts_text": ", ".join(f"{v:,} {label}" for label, v in counts) or "no counts",
                "error": _clean(s.error),
                "checks_warned": warned,
                "checks_failed": failed,
                **{key: getattr(s, key) for key, _ in COUNT_FIELDS},
            }
        )
    error_summary = _clean(o.error_summary)
    error_type = _clean(o.error_type)
    run_url = o.run_url or None
    return {
        "status": status,
        "event": event_for(status),
        "emoji": emoji,
        "word": word,
        "pipeline": str(o.pipeline or "?"),
        "run_id": str(o.run_id or ""),
        "partitions": partitions,
        "partitions_label": partitions_label(partitions),
        "partitions_short": short_partitions(partitions),
        "trigger": str(o.trigger or "unknown") + (f" by {o.started_by}" if o.started_by else ""),
        "started_at": o.started_at or "",
        "finished_at": o.finished_at or "",
        "duration": format_duration(o.duration_s),
        "sources": sources,
        "warnings": warnings,
        "failed_checks": failed_checks,
        "error_type": error_type,
        "error_summary": clip(error_summary, _ERROR_MAX) if error_summary else None,
        "error_line": ": ".join(x for x in (error_type, error_summary) if x) or None,
        "failing_source": o.failing_source or None,
        "run_url": str(run_url) if run_url else None,
        "report_path": o.report_path or None,
        "notes": [_clean(n) for n in o.notes or [] if n],
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


def mrkdwn(text: Any) -> str:
    """Slack's three control characters; everything else in mrkdwn is literal enough."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str, label: str) -> str:
    return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{label}>"


def slack_message(run: RunOutcome | Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Block Kit blocks plus the plain-text fallback Slack shows in notifications."""
    v = run_view(run)
    esc = mrkdwn
    lines = [
        f"{v['emoji']} *{v['word']}* {esc(v['pipeline'])} {esc(v['partitions_label'])} "
        f"({v['duration']}, trigger: {esc(v['trigger'])})"
    ]
    blocks = _slack_head(v)
    if v["error_line"] or v["failing_source"]:
        where = f" in source *{esc(v['failing_source'])}*" if v["failing_source"] else ""
        body = [f"```{esc(v['error_line'])}```"] if v["error_line"] else []
        text = clip(f"*Error*{where}\n" + "\n".join(body), SECTION_MAX)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        if v["failing_source"]:
            lines.append(f"Failing source: {esc(v['failing_source'])}")
        if v["error_line"]:
            lines.append(f"Error: {esc(v['error_line'])}")
    _section(blocks, lines, "Sources", _source_lines(v))
    _section(blocks, lines, "Check warnings", [f"• {esc(src)}: {esc(check)}" for src, check in v["warnings"]])
    _section(blocks, lines, "Failed checks", [f"• {esc(src)}: {esc(check)}" for src, check in v["failed_checks"]])
    _section(blocks, lines, "Notes", [f"• {esc(n)}" for n in v["notes"]])

    links = []
    if v["run_url"]:
        links.append(_link(v["run_url"], "View run"))
    if v["report_path"]:
        links.append(f"Report: `{esc(v['report_path'])}`")
    links.append(f"Run `{esc(v['run_id'])}`")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]})
    lines.append(" · ".join(links))
    return "\n".join(lines), blocks


def _slack_head(v: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The header and the pipeline / partition / duration / trigger fields."""
    esc = mrkdwn
    title = f"{v['emoji']} {v['word']}: {v['pipeline']} {v['partitions_short']}"
    return [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": clip(title, HEADER_MAX), "emoji": True},
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


def _source_lines(v: Mapping[str, Any]) -> list[str]:
    lines = []
    for s in v["sources"]:
        line = f"• *{mrkdwn(s['name'])}* {mrkdwn(s['status'])}: {mrkdwn(s['counts_text'])}"
        if s["error"] and s["error"] != v["error_summary"]:
            line += f" — {mrkdwn(clip(s['error'], 300))}"
        lines.append(line)
    return lines


def _section(blocks: list[dict[str, Any]], lines: list[str], heading: str, body: list[str]) -> None:
    """A titled section in the blocks and the same lines in the plain-text fallback; none if empty."""
    if body:
        text = clip(f"*{heading}*\n" + "\n".join(body), SECTION_MAX)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        lines.append(f"{heading}:")
        lines.extend(body)


def render_email(
    run: RunOutcome | Mapping[str, Any], subject_prefix: str | None = None
) -> tuple[str, str, str]:
    """(subject, plain text, HTML) from the email templates; the HTML is autoescaped."""
    v = run_view(run)
    prefix = "[etl]" if subject_prefix is None else subject_prefix
    subject = f"{prefix} {v['pipeline']} {v['partitions_short']}: {v['word']}".strip()
    subject = " ".join(subject.split())  # one header line, whatever the run's names hold
    context = {**v, "subject": subject}
    text = _env.get_template("email.txt.j2").render(**context)
    page = _env.get_template("email.html.j2").render(**context)
    return subject, text, page


def build_email(
    sender: str,
    to: Sequence[str],
    run: RunOutcome | Mapping[str, Any],
    subject_prefix: str | None = None,
    *,
    mask: Sequence[str | None] = (),
) -> EmailMessage:
    subject, text, page = (scrub(x, mask) for x in render_email(run, subject_prefix))
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


