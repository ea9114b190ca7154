"""Run alerts over the real protocols: slack_sdk to a local Web API, smtplib to aiosmtpd."""

from __future__ import annotations

import copy
import datetime as dt
import html
import logging
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from pydantic import ValidationError

from etl_assets.definitions import build_defs
from etl_assets.ops.notify import (
    EmailNotifier,
    SlackNotifier,
    format_duration,
    notify_run,
    render_email,
    send_email,
    send_slack,
    slack_message,
)
from etl_assets.spec import NotifySpec, SpecError, parse_pipeline
from etl_assets_tests.helpers import create_orders, make_spec
from etl_assets_tests.stubs import SlackStub, SmtpServer, free_port, make_tls_files, smtp_server

TOKEN = "xoxb-test-7f3a9c1e5b2d"
PASSWORD = "smtp-pw<Q9v&x27Lk"  # HTML-special on purpose
RUN_URL = "http://127.0.0.1:3000/runs/6f1c2d3e-run"
LOGGER = "etl_assets.test_notify"

RESUME_NOTE = (
    "Schedule demo_sales_schedule was paused after 3 consecutive failures. Resume it with "
    "the UI toggle, `dagster schedule start demo_sales_schedule` or "
    "`etl-assets jobs enable demo_sales`."
)

BASE_RECORD: dict[str, Any] = {
    "run_id": "6f1c2d3e-run",
    "pipeline": "demo_sales",
    "partitions": ["2026-11-15"],
    "status": "success",
    "trigger": "schedule",
    "started_at": "2026-11-16T00:00:02+00:00",
    "finished_at": "2026-11-16T00:01:25+00:00",
    "duration_s": 83.4,
    "sources": {
        "orders": {
            "status": "success",
            "rows_extracted": 1250,
            "inserted": 1200,
            "updated": 40,
            "unchanged": 10,
            "deleted": 0,
            "error": None,
            "checks_warned": ["not_null_customer"],
            "checks_failed": [],
        },
        "products": {
            "status": "success",
            "rows_extracted": 80,
            "inserted": 2,
            "updated": 1,
            "unchanged": 77,
            "deleted": 0,
            "error": None,
            "checks_warned": [],
            "checks_failed": [],
        },
    },
    "error_type": None,
    "error_summary": None,
    "failing_source": None,
    "run_url": RUN_URL,
    "report_path": "/srv/etl/demo_sales/reports/2026-11-15.html",
    "notes": [],
}


def record(status: str, **changes: Any) -> dict[str, Any]:
    rec = copy.deepcopy(BASE_RECORD)
    rec["status"] = status
    if status in ("failed", "partial", "paused"):
        rec["sources"]["orders"].update(
            status="failed",
            inserted=None,
            updated=None,
            unchanged=None,
            deleted=None,
            error="OperationalError: connection to source server timed out",
            checks_warned=[],
        )
        rec.update(
            error_type="OperationalError",
            error_summary="connection to source server timed out",
            failing_source="orders",
        )
    if status == "failed":
        rec["sources"]["products"].update(status="skipped", rows_extracted=None, inserted=None,
                                          updated=None, unchanged=None, deleted=None)
    if status == "paused":
        rec["notes"] = [RESUME_NOTE]
    rec.update(changes)
    return rec


def notify_spec(**notify: Any) -> NotifySpec:
    return parse_pipeline(
        {
            "name": "demo_sales",
            "partitions": {"start": "2026-01-04"},
            "sources": [
                {"name": "orders", "kind": "csv", "path": "/d/*.csv", "mode": "full",
                 "primary_key": ["id"]}
            ],
            "notify": notify,
        },
        "demo_sales.yaml",
    ).notify


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.DEBUG)  # slack_sdk logs whole requests at DEBUG: check those too
    return logging.getLogger(LOGGER)


def our_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def all_log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


@pytest.fixture
def slack(slack_stub: SlackStub, monkeypatch: pytest.MonkeyPatch) -> SlackNotifier:
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    return SlackNotifier(token=dg.EnvVar("SLACK_BOT_TOKEN"), base_url=slack_stub.base_url)


def block_text(blocks: list[dict[str, Any]]) -> str:
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                out.append(node["text"])
            for v in node.values():
                if isinstance(v, (dict, list)):
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(blocks)
    return "\n".join(out)


def bodies(mail: Any) -> tuple[str, str]:
    msg = mail.message
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(preferencelist=("plain",)).get_content()
    page = msg.get_body(preferencelist=("html",)).get_content()
    return text.replace("\r\n", "\n"), page.replace("\r\n", "\n")  # SMTP sends CRLF


# --- spec -----------------------------------------------------------------------------------


def test_notify_spec_defaults_and_events() -> None:
    spec = notify_spec(slack={"channel": "#data", "on": ["success", "failure"]},
                       email={"to": ["a@x.io", "ops.team+etl@mail.example.co.uk"]})
    assert spec.slack is not None and spec.slack.channel == "#data"
    assert spec.slack.on == ["success", "failure"]
    assert spec.email is not None and spec.email.on == ["failure", "partial", "paused"]
    assert spec.email.to == ["a@x.io", "ops.team+etl@mail.example.co.uk"]
    assert notify_spec() == NotifySpec(slack=None, email=None)


@pytest.mark.parametrize(
    ("notify", "message"),
    [
        ({"email": {"to": ["a@x.io", "bob@"]}},
         "notify.email.to[1]: 'bob@' is not a valid email address"),
        ({"email": {"to": ["a@x.io", "carol@example"]}},
         "notify.email.to[1]: 'carol@example' is not a valid email address"),
        ({"email": {"to": ["dave smith@x.io"]}},
         "notify.email.to[0]: 'dave smith@x.io' is not a valid email address"),
        ({"email": {"to": []}}, "notify.email.to: List should have at least 1 item"),
        ({"slack": {"channel": "#data", "on": ["success", "failed"]}},
         "notify.slack.on[1]: must be one of success, failure, partial, paused, canceled"),
        ({"slack": {"channel": "data team"}},
         "notify.slack.channel: 'data team' is not a Slack channel"),
        ({"slack": {"channel": "#data", "webhook": "x"}}, "notify.slack.webhook: unknown field"),
    ],
)
def test_notify_spec_errors_name_the_field(notify: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as e:
        notify_spec(**notify)
    assert str(e.value).startswith("demo_sales.yaml (pipeline demo_sales): ")
    assert message in str(e.value)


# --- message content ------------------------------------------------------------------------


def test_slack_message_for_a_failure() -> None:
    text, blocks = slack_message(record("failed", error_summary="bad value <NULL> & more"))
    assert text.startswith("❌ *FAILED* demo_sales 2026-11-15 (1m 23s, trigger: schedule)")
    assert "Failing source: orders" in text
    assert "OperationalError: bad value &lt;NULL&gt; &amp; more" in text  # mrkdwn-escaped
    assert f"<{RUN_URL}|View run>" in text
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "❌ FAILED: demo_sales 2026-11-15", "emoji": True},
    }
    shown = block_text(blocks)
    assert "*Error* in source *orders*" in shown
    assert "• *orders* failed: 1,250 extracted" in shown
    assert "• *products* skipped: no counts" in shown
    assert "*Duration*\n1m 23s" in shown
    assert f"<{RUN_URL}|View run>" in shown


def test_slack_message_for_success_has_counts_and_warnings() -> None:
    text, blocks = slack_message(record("success", partitions=["2026-11-01", "2026-11-08",
                                                               "2026-11-15", "2026-11-22"]))
    assert text.startswith("✅ *SUCCESS* demo_sales 2026-11-01 … 2026-11-22 (4 partitions)")
    shown = block_text(blocks)
    assert "*Partitions*\n2026-11-01 … 2026-11-22 (4 partitions)" in shown
    assert ("• *orders* success: 1,250 extracted, 1,200 inserted, 40 updated, 10 unchanged, "
            "0 deleted") in shown
    assert "*Check warnings*\n• orders: not_null_customer" in shown
    assert "*Error*" not in shown
    assert "Report: `/srv/etl/demo_sales/reports/2026-11-15.html`" in shown


def test_alerts_say_who_started_a_run_through_the_api() -> None:
    text, blocks = slack_message(record("success", trigger="manual", started_by="ops-bot"))
    assert "trigger: manual by ops-bot)" in text
    assert "*Trigger*\nmanual by ops-bot" in block_text(blocks)


def test_durations() -> None:
    assert [format_duration(s) for s in (4.25, 83.4, 3725, None)] == [
        "4.2s", "1m 23s", "1h 02m 05s", "unknown"
    ]


def test_email_html_is_escaped_and_text_is_not() -> None:
    subject, text, page = render_email(
        record("failed", error_summary="value <script>alert(1)</script> rejected")
    )
    assert subject == "[etl] demo_sales 2026-11-15: FAILED"
    assert "OperationalError: value <script>alert(1)</script> rejected" in text
    assert "<script>" not in page
    assert "value &lt;script&gt;alert(1)&lt;/script&gt; rejected" in page


def test_messages_mask_leaked_url_passwords() -> None:
    rec = record("failed",
                 error_summary="could not connect to postgresql://etl:hunter2222@db:5432/src")
    text, blocks = slack_message(rec)
    _, mail_text, page = render_email(rec)
    for shown in (text, block_text(blocks), mail_text, page):
        assert "hunter2222" not in shown
        assert "postgresql://etl:***@db:5432/src" in shown


# --- Slack over HTTP ------------------------------------------------------------------------


def test_slack_success_is_posted_with_blocks_and_no_secret(
    slack: SlackNotifier, slack_stub: SlackStub, log: logging.Logger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert send_slack(slack, "#data", record("success"), log) is True
    [call] = slack_stub.calls
    assert call.method == "chat.postMessage"
    assert call.headers["authorization"] == f"Bearer {TOKEN}"  # the EnvVar was resolved
    post = call.payload
    assert post["channel"] == "#data"
    assert post["text"].startswith("✅ *SUCCESS* demo_sales 2026-11-15")
    assert post["blocks"][0]["text"]["text"] == "✅ SUCCESS: demo_sales 2026-11-15"
    assert f"<{RUN_URL}|View run>" in block_text(post["blocks"])
    assert TOKEN not in repr(post)
    assert any(r.name.startswith("slack_sdk") for r in caplog.records)  # wire log checked too
    assert TOKEN not in all_log_text(caplog)
    assert our_messages(caplog) == [
        "Slack alert for demo_sales 2026-11-15 (success) posted to #data"
    ]


@pytest.mark.parametrize("status", ["failed", "partial", "paused"])
def test_slack_problem_runs(
    status: str, slack: SlackNotifier, slack_stub: SlackStub, log: logging.Logger
) -> None:
    assert send_slack(slack, "#data", record(status), log) is True
    [post] = slack_stub.posts
    shown = post["text"] + "\n" + block_text(post["blocks"])
    word = {"failed": "❌ FAILED", "partial": "⚠️ PARTIAL", "paused": "⏸️ PAUSED"}[status]
    assert post["blocks"][0]["text"]["text"] == f"{word}: demo_sales 2026-11-15"
    assert "*Error* in source *orders*" in shown
    assert "OperationalError: connection to source server timed out" in shown
    if status == "paused":
        assert "`dagster schedule start demo_sales_schedule`" in shown
        assert "`etl-assets jobs enable demo_sales`" in shown
    if status == "partial":
        assert "• *products* success: 80 extracted, 2 inserted" in shown


def test_slack_api_error_is_logged_not_raised(
    slack: SlackNotifier, slack_stub: SlackStub, log: logging.Logger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack_stub.reply_error("channel_not_found")
    assert send_slack(slack, "#nowhere", record("failed"), log) is False
    assert len(slack_stub.posts) == 1
    [warning] = [r for r in caplog.records if r.name == LOGGER]
    assert warning.levelno == logging.WARNING
    assert warning.getMessage() == (
        "Slack alert for demo_sales 2026-11-15 (failed) to #nowhere failed: "
        "Slack API error channel_not_found"
    )
    assert TOKEN not in all_log_text(caplog)


@pytest.mark.timeout(30)
def test_slack_http_500_fails_fast_without_retry(
    slack: SlackNotifier, slack_stub: SlackStub, log: logging.Logger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack_stub.reply_http(500)
    assert send_slack(slack, "#data", record("failed"), log) is False
    assert len(slack_stub.posts) == 1  # slack_sdk's default handlers do not retry a 500
    assert our_messages(caplog) == [
        "Slack alert for demo_sales 2026-11-15 (failed) to #data failed: HTTP 500"
    ]
    assert TOKEN not in all_log_text(caplog)


def test_slack_unreachable_and_missing_token_are_logged(
    monkeypatch: pytest.MonkeyPatch, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    down = SlackNotifier(token=dg.EnvVar("SLACK_BOT_TOKEN"),
                         base_url=f"http://127.0.0.1:{free_port()}/api/")
    assert send_slack(down, "#data", record("failed"), log) is False
    monkeypatch.delenv("SLACK_BOT_TOKEN")
    assert send_slack(down, "#data", record("failed"), log) is False
    first, second = our_messages(caplog)
    assert first.startswith(
        "Slack alert for demo_sales 2026-11-15 (failed) to #data failed: URLError"
    )
    assert second == (
        "Slack alert for demo_sales 2026-11-15 (failed) to #data failed: "
        "environment variable SLACK_BOT_TOKEN is not set"
    )


def test_secrets_leaked_into_a_record_are_masked_everywhere(
    slack: SlackNotifier, slack_stub: SlackStub, monkeypatch: pytest.MonkeyPatch,
    log: logging.Logger, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("ETL_SMTP_PASSWORD", PASSWORD)
    rec = record(
        "failed",
        error_summary=f"auth failed with token {TOKEN} and password {PASSWORD}",
        notes=[f"retry with {TOKEN}"],
    )
    with smtp_server(username="etl-bot", password=PASSWORD) as box:
        mailer = EmailNotifier(host=box.host, port=box.port, username="etl-bot",
                               password=dg.EnvVar("ETL_SMTP_PASSWORD"))
        spec = notify_spec(slack={"channel": "#data"}, email={"to": ["a@x.io"]})
        assert notify_run(rec, spec, slack, mailer, log) == {"slack": True, "email": True}
    [post] = slack_stub.posts
    [mail] = box.messages
    text, page = bodies(mail)
    for shown in (repr(post), text, page, mail.data.decode(), all_log_text(caplog)):
        assert TOKEN not in shown and PASSWORD not in shown
    assert html.escape(PASSWORD) not in page
    assert "auth failed with token *** and password ***" in post["text"]
    assert "auth failed with token *** and password ***" in text


# --- email over SMTP ------------------------------------------------------------------------


def test_email_success_to_several_recipients(
    smtp_stub: SmtpServer, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    mailer = EmailNotifier(host=smtp_stub.host, port=smtp_stub.port, sender="ETL <etl@x.io>")
    to = ["a@x.io", "b@y.io"]
    assert send_email(mailer, to, record("success"), log) is True
    [mail] = smtp_stub.messages
    assert mail.mail_from == "etl@x.io"
    assert mail.rcpt_tos == to
    msg = mail.message
    assert msg["Subject"] == "[etl] demo_sales 2026-11-15: SUCCESS"
    assert msg["To"] == "a@x.io, b@y.io"
    assert msg["From"] == "ETL <etl@x.io>"
    text, page = bodies(mail)
    assert text.startswith("✅ SUCCESS: demo_sales 2026-11-15\n")
    assert ("  - orders (success): 1,250 extracted, 1,200 inserted, 40 updated, 10 unchanged, "
            "0 deleted") in text
    assert "Check warnings:\n  - orders: not_null_customer" in text
    assert f"View run: {RUN_URL}" in text
    assert "Error" not in text
    assert f'<a href="{RUN_URL}">View run</a>' in page
    assert 'padding:4px 8px;text-align:right">1,200</td>' in page
    assert our_messages(caplog) == [
        "Email alert for demo_sales 2026-11-15 (success) sent to a@x.io, b@y.io"
    ]


@pytest.mark.parametrize("status", ["failed", "partial", "paused"])
def test_email_problem_runs_with_login(
    status: str, monkeypatch: pytest.MonkeyPatch, log: logging.Logger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("ETL_SMTP_PASSWORD", PASSWORD)
    with smtp_server(username="etl-bot", password=PASSWORD) as box:
        mailer = EmailNotifier(host=box.host, port=box.port, username="etl-bot",
                               password=dg.EnvVar("ETL_SMTP_PASSWORD"), sender="etl@x.io")
        assert send_email(mailer, ["oncall@x.io"], record(status), log,
                          subject_prefix="[data-platform]") is True
    [mail] = box.messages
    assert mail.login == "etl-bot"
    word = {"failed": "FAILED", "partial": "PARTIAL", "paused": "PAUSED"}[status]
    assert mail.message["Subject"] == f"[data-platform] demo_sales 2026-11-15: {word}"
    text, page = bodies(mail)
    assert ("Error in source orders:\n"
            "  OperationalError: connection to source server timed out") in text
    assert "Error in source <code>orders</code>" in page
    assert f"View run: {RUN_URL}" in text and f'href="{RUN_URL}"' in page
    if status == "paused":
        assert "`dagster schedule start demo_sales_schedule`" in text
        assert "`etl-assets jobs enable demo_sales`" in page
    assert PASSWORD not in mail.data.decode()
    assert PASSWORD not in all_log_text(caplog)


def test_email_wrong_password_is_logged_without_it(
    monkeypatch: pytest.MonkeyPatch, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ETL_SMTP_PASSWORD", PASSWORD)
    with smtp_server(username="etl-bot", password="the-right-one") as box:
        mailer = EmailNotifier(host=box.host, port=box.port, username="etl-bot",
                               password=dg.EnvVar("ETL_SMTP_PASSWORD"))
        assert send_email(mailer, ["oncall@x.io"], record("failed"), log) is False
    assert box.messages == []
    [message] = our_messages(caplog)
    assert message.startswith(
        "Email alert for demo_sales 2026-11-15 (failed) failed: SMTPAuthenticationError"
    )
    assert PASSWORD not in all_log_text(caplog)


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "ssl"])
def test_email_over_tls_verifies_the_server(
    implicit: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: logging.Logger
) -> None:
    tls = make_tls_files(tmp_path)
    monkeypatch.setenv("ETL_SMTP_PASSWORD", PASSWORD)
    with smtp_server(username="etl-bot", password=PASSWORD, tls=tls, implicit_tls=implicit) as box:
        common = dict(host=box.host, port=box.port, username="etl-bot",
                      password=dg.EnvVar("ETL_SMTP_PASSWORD"),
                      security="ssl" if implicit else "starttls")
        untrusted = EmailNotifier(**common)
        assert send_email(untrusted, ["a@x.io"], record("failed"), log) is False
        trusted = EmailNotifier(**common, ca_file=str(tls.ca_cert))
        assert send_email(trusted, ["a@x.io"], record("failed"), log) is True
    [mail] = box.messages
    assert mail.tls and mail.login == "etl-bot"
    assert mail.message["Subject"] == "[etl] demo_sales 2026-11-15: FAILED"


def test_email_settings_can_all_come_from_the_environment(
    smtp_stub: SmtpServer, monkeypatch: pytest.MonkeyPatch, log: logging.Logger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"ETL_SMTP_HOST": smtp_stub.host, "ETL_SMTP_PORT": str(smtp_stub.port),
           "ETL_SMTP_SECURITY": "", "ETL_SMTP_USER": "", "ETL_SMTP_PASSWORD": "",
           "ETL_SMTP_FROM": "etl@x.io"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    mailer = EmailNotifier(  # as the code location builds it: nothing is read before a run
        host=dg.EnvVar("ETL_SMTP_HOST"), port=dg.EnvVar.int("ETL_SMTP_PORT"),
        security=dg.EnvVar("ETL_SMTP_SECURITY"), username=dg.EnvVar("ETL_SMTP_USER"),
        password=dg.EnvVar("ETL_SMTP_PASSWORD"), sender=dg.EnvVar("ETL_SMTP_FROM"),
    )
    assert send_email(mailer, ["a@x.io"], record("failed"), log) is True
    [mail] = smtp_stub.messages
    assert (mail.mail_from, mail.login) == ("etl@x.io", None)  # empty user: no login
    monkeypatch.setenv("ETL_SMTP_SECURITY", "tls")
    assert send_email(mailer, ["a@x.io"], record("failed"), log) is False
    assert our_messages(caplog)[-1] == (
        "Email alert for demo_sales 2026-11-15 (failed) failed: "
        "security: security must be plain, starttls or ssl, not 'tls'"
    )
    with pytest.raises(ValidationError, match="security must be plain, starttls or ssl"):
        EmailNotifier(host="smtp.x.io", security="tls")


def test_empty_slack_base_url_means_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("ETL_SLACK_API_URL", "")
    notifier = SlackNotifier(token=dg.EnvVar("SLACK_BOT_TOKEN"),
                             base_url=dg.EnvVar("ETL_SLACK_API_URL"))
    client = notifier.process_config_and_initialize().get_client()
    assert (client.base_url, client.token) == ("https://slack.com/api/", TOKEN)


def test_email_refusals_and_dead_server(
    smtp_stub: SmtpServer, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    mailer = EmailNotifier(host=smtp_stub.host, port=smtp_stub.port)
    smtp_stub.refuse("gone@x.io")
    assert send_email(mailer, ["a@x.io", "gone@x.io"], record("failed"), log) is True
    assert [m.rcpt_tos for m in smtp_stub.messages] == [["a@x.io"]]
    assert send_email(mailer, ["gone@x.io"], record("failed"), log) is False
    dead = EmailNotifier(host="127.0.0.1", port=free_port(), timeout_s=5)
    assert send_email(dead, ["a@x.io"], record("failed"), log) is False
    assert our_messages(caplog) == [
        "Email alert for demo_sales 2026-11-15 (failed): refused for gone@x.io",
        "Email alert for demo_sales 2026-11-15 (failed) sent to a@x.io",
        "Email alert for demo_sales 2026-11-15 (failed) failed: "
        "every recipient was refused (gone@x.io)",
        "Email alert for demo_sales 2026-11-15 (failed) failed: ConnectionRefusedError: "
        "[Errno 111] Connection refused",
    ]


# --- deciding what to send ------------------------------------------------------------------


def test_notify_run_follows_on(
    slack: SlackNotifier, slack_stub: SlackStub, smtp_stub: SmtpServer, log: logging.Logger
) -> None:
    mailer = EmailNotifier(host=smtp_stub.host, port=smtp_stub.port)
    spec = notify_spec(
        slack={"channel": "#data", "on": ["success", "failure", "partial", "paused"]},
        email={"to": ["a@x.io", "b@x.io"]},  # default: failure, partial, paused
    )
    assert notify_run(record("success"), spec, slack, mailer, log) == {"slack": True}
    assert notify_run(record("failed"), spec, slack, mailer, log) == {"slack": True, "email": True}
    assert notify_run(record("paused"), spec, slack, mailer, log) == {"slack": True, "email": True}
    assert notify_run(record("canceled"), spec, slack, mailer, log) == {}
    assert [p["blocks"][0]["text"]["text"].split(":")[0] for p in slack_stub.posts] == [
        "✅ SUCCESS", "❌ FAILED", "⏸️ PAUSED"
    ]
    assert [m.message["Subject"] for m in smtp_stub.messages] == [
        "[etl] demo_sales 2026-11-15: FAILED",
        "[etl] demo_sales 2026-11-15: PAUSED",
    ]


def test_notify_run_reports_each_channel(
    slack: SlackNotifier, slack_stub: SlackStub, smtp_stub: SmtpServer, log: logging.Logger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = notify_spec(slack={"channel": "#data", "on": ["canceled"]},
                       email={"to": ["a@x.io"], "on": ["canceled"]})
    slack_stub.reply_error("not_in_channel")
    mailer = EmailNotifier(host=smtp_stub.host, port=smtp_stub.port)
    sent = notify_run(record("canceled"), spec, slack, mailer, log)
    assert sent == {"slack": False, "email": True}
    assert smtp_stub.messages[0].message["Subject"] == "[etl] demo_sales 2026-11-15: CANCELED"
    assert notify_run(record("canceled"), spec, None, None, log) == {"slack": False, "email": False}
    assert our_messages(caplog)[-2:] == [
        "Slack alert for demo_sales 2026-11-15 (canceled) skipped: no Slack resource configured",
        "Email alert for demo_sales 2026-11-15 (canceled) skipped: no email resource configured",
    ]
    assert notify_run(record("success"), NotifySpec(), slack, mailer, log) == {}


SMTP_SETTINGS = ("ETL_SMTP_HOST", "ETL_SMTP_PORT", "ETL_SMTP_SECURITY", "ETL_SMTP_USER",
                 "ETL_SMTP_PASSWORD", "ETL_SMTP_FROM")


def test_email_goes_out_with_only_host_port_and_sender_set(
    etl_env: dict[str, str], smtp_stub: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the README documents: security, user and password are optional settings. Through the
    daemon's path: the code location's definitions, a finished run, the real success sensor."""
    for name in SMTP_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ETL_SMTP_HOST", smtp_stub.host)
    monkeypatch.setenv("ETL_SMTP_PORT", str(smtp_stub.port))
    monkeypatch.setenv("ETL_SMTP_FROM", "ETL <etl@x.io>")
    create_orders(etl_env["TEST_SOURCE_URL"], [(1, "ana", 9.5, dt.datetime(2025, 3, 10, 12, tzinfo=dt.UTC))])
    spec = make_spec(notify={"email": {"to": ["data@x.io"], "on": ["success"]}})
    defs = build_defs([spec])
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("shop_job").execute_in_process(
            instance=instance, partition_key="2025-03-09", raise_on_error=False
        )
        assert result.success
        [finished] = [
            e.dagster_event for e in instance.all_logs(result.run_id)
            if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.RUN_SUCCESS
        ]
        sensor = defs.get_sensor_def("etl_run_success_sensor")
        sensor(dg.build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_event=finished, dagster_instance=instance,
            dagster_run=instance.get_run_by_id(result.run_id), resources=defs.resources,
        ))
    [mail] = smtp_stub.messages
    assert (mail.mail_from, mail.rcpt_tos, mail.login) == ("etl@x.io", ["data@x.io"], None)
    assert mail.message["Subject"] == "[etl] shop 2025-03-09: SUCCESS"


def test_email_settings_left_unset_take_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from etl_assets.ops.notify import DEFAULT_SENDER
    from etl_assets.orchestration.sensors import notifier_resources

    for name in SMTP_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    spec = make_spec(notify={"email": {"to": ["data@x.io"], "on": ["failure"]}})
    # No relay configured: no resource, so the handler records the run and says the mail was skipped.
    assert "email" not in notifier_resources([spec])
    monkeypatch.setenv("ETL_SMTP_HOST", "smtp.x.io")
    mailer = notifier_resources([spec])["email"].process_config_and_initialize()
    assert (mailer.host, mailer.effective_port, mailer.effective_security, mailer.username, mailer.password,
            mailer.sender) == ("smtp.x.io", 25, "plain", None, None, DEFAULT_SENDER)
