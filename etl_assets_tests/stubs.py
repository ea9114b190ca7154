"""Local stand-ins for Slack, an SMTP relay and a JSON API that speak the real protocols.

Clients under test use their ordinary code paths (slack_sdk over HTTP, smtplib over SMTP), so a
test checks what would really go over the wire. Use the context managers directly, or the
`slack_stub` / `smtp_stub` / `json_api` fixtures (conftest.py makes them available everywhere).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.message
import email.policy
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")

# --- Slack Web API ------------------------------------------------------------------------


@dataclass
class SlackCall:
    method: str  # e.g. "chat.postMessage"
    headers: dict[str, str]  # lower-cased names
    payload: dict[str, Any]  # the JSON body, or the form fields with JSON values decoded


class SlackStub:
    """A Slack Web API on 127.0.0.1 that records every call and answers as told.

    By default every call succeeds. `reply_error("channel_not_found")` answers HTTP 200 with
    `{"ok": false, ...}`; `reply_http(500)` answers that status with a non-JSON body.
    """

    def __init__(self) -> None:
        self.calls: list[SlackCall] = []
        self._lock = threading.Lock()
        self._error: str | None = None
        self._http_status: int | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the stub is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/api/"

    @property
    def posts(self) -> list[dict[str, Any]]:
        """Payloads of every chat.postMessage received, including refused ones."""
        with self._lock:
            return [c.payload for c in self.calls if c.method == "chat.postMessage"]

    def reply_ok(self) -> None:
        self._error, self._http_status = None, None

    def reply_error(self, error: str = "channel_not_found") -> None:
        self._error, self._http_status = error, None

    def reply_http(self, status: int = 500) -> None:
        self._error, self._http_status = None, status

    def start(self) -> SlackStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                stub._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> SlackStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        if not req.path.startswith("/api/"):
            self._send(req, 404, {"ok": False, "error": "unknown_method"})
            return
        method = req.path[len("/api/") :].split("?", 1)[0]
        raw = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        call = SlackCall(
            method=method,
            headers={k.lower(): v for k, v in req.headers.items()},
            payload=_decode_body(req.headers.get("Content-Type") or "", raw),
        )
        with self._lock:
            self.calls.append(call)
        if self._http_status is not None:
            body = b"<html><body>Internal Server Error</body></html>"
            req.send_response(self._http_status)
            req.send_header("Content-Type", "text/html")
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            req.wfile.write(body)
        elif self._error is not None:
            self._send(req, 200, {"ok": False, "error": self._error})
        else:
            reply: dict[str, Any] = {"ok": True}
            if method == "chat.postMessage":
                reply |= {
                    "channel": "C0STUB0001",
                    "ts": f"{dt.datetime.now().timestamp():.6f}",
                    "message": {"text": call.payload.get("text", "")},
                }
            self._send(req, 200, reply)

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json; charset=utf-8")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)


def _decode_body(content_type: str, raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    if content_type.startswith("application/json"):
        return json.loads(raw.decode("utf-8"))
    fields = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8")).items()}
    for key in ("blocks", "attachments", "metadata"):  # JSON-encoded in form bodies
        if key in fields:
            fields[key] = json.loads(fields[key])
    return fields


@contextmanager
def slack_api_stub() -> Iterator[SlackStub]:
    with SlackStub() as stub:
        yield stub


@pytest.fixture
def slack_stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackStub]:
    """A running Slack stub; proxy variables are cleared so slack_sdk talks to it directly."""
    for var in _PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    with slack_api_stub() as stub:
        yield stub


# --- a JSON API -----------------------------------------------------------------------------


@dataclass
class JsonApi:
    """A GET endpoint answering every path with the same JSON body; `requested` lists the paths."""

    url: str
    requested: list[str] = field(default_factory=list)


@contextmanager
def json_api_server(body: Any) -> Iterator[JsonApi]:
    encoded = json.dumps(body).encode()
    requested: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield JsonApi(f"http://127.0.0.1:{server.server_address[1]}", requested)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def json_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Any], JsonApi]]:
    """Start JSON APIs on 127.0.0.1 (`json_api(body)`); all stop when the test ends."""
    for var in (*_PROXY_VARS, "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with contextlib.ExitStack() as stack:
        yield lambda body: stack.enter_context(json_api_server(body))


# --- SMTP ---------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str | None  # the AUTH user, if the client logged in
    tls: bool  # whether the session was encrypted (STARTTLS or implicit TLS)

    @property
    def message(self) -> email.message.EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        return msg


@dataclass
class TlsFiles:
    """A throwaway CA and a server certificate it signed, valid for 127.0.0.1 and localhost."""

    ca_cert: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


@dataclass
class SmtpServer:
    host: str
    port: int
    messages: list[ReceivedMail] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)  # RCPT TO these gets 550

    def refuse(self, address: str) -> None:
        self.refused.add(address)


class _Recorder:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.server.refused:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content
        self.server.messages.append(
            ReceivedMail(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                data=data if isinstance(data, bytes) else data.encode(),
                login=session.auth_data.decode() if isinstance(session.auth_data, bytes) else None,
                tls=session.ssl is not None
                or server.transport.get_extra_info("ssl_object") is not None,
            )
        )
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def smtp_server(
    *,
    username: str | None = None,
    password: str | None = None,
    tls: TlsFiles | None = None,
    implicit_tls: bool = False,
) -> Iterator[SmtpServer]:
    """An aiosmtpd relay on 127.0.0.1 that keeps what it receives.

    With `username`/`password` it accepts AUTH with exactly those, and requires it when STARTTLS
    is on. With `tls` it offers STARTTLS and requires it before AUTH, or speaks TLS from the
    start if `implicit_tls`.
    """
    box = SmtpServer("127.0.0.1", free_port())
    kwargs: dict[str, Any] = {"server_hostname": "smtp.test", "ready_timeout": 10}
    if username is not None:

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == username
                and auth_data.password.decode() == (password or "")
            )
            # handled=False: aiosmtpd itself answers 235 or 535.
            return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)

        # aiosmtpd only enforces AUTH together with STARTTLS (it warns about anything else), so
        # without STARTTLS AUTH is offered but optional: tests check `ReceivedMail.login`.
        starttls = tls is not None and not implicit_tls
        kwargs |= {
            "authenticator": authenticator,
            "auth_required": starttls,
            "auth_require_tls": starttls,
        }
    if tls is not None and implicit_tls:
        kwargs["ssl_context"] = tls.server_context()
    elif tls is not None:
        kwargs |= {"tls_context": tls.server_context(), "require_starttls": True}
    controller = Controller(_Recorder(box), hostname=box.host, port=box.port, **kwargs)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def smtp_stub() -> Iterator[SmtpServer]:
    """A plain SMTP relay with no auth; use `smtp_server(...)` for auth or TLS."""
    with smtp_server() as box:
        yield box


def make_tls_files(directory: Path) -> TlsFiles:
    """Write a CA and a server certificate for 127.0.0.1/localhost into `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etl-assets test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files
