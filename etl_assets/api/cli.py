"""`etl-assets api`: serve the job API; create, list and revoke its tokens."""

from __future__ import annotations

import contextlib
import getpass
import ipaddress
import json
import re
import socket
import sys
from typing import NoReturn

import click
import psycopg

from etl_assets.api import audit, proxy, tokens
from etl_assets.api.app import ApiConfig, create_app
from etl_assets.api.models import Role
from etl_assets.core import settings
from etl_assets.dev import embedded
from etl_assets.dev import instance as dagster_instance

TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group("api")
def api_group() -> None:
    """The job API: pipelines, runs and the audit trail over HTTP, behind tokens."""


@api_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=3100, show_default=True, type=click.IntRange(1, 65535))
@click.option("--url", default="http://127.0.0.1:3000", show_default=True, envvar="ETL_WEBSERVER_URL",
              help="The Dagster webserver the API drives (as `etl-assets jobs --url`).")
@click.option("--allow-anonymous-read", is_flag=True,
              help="Let requests without a token read (viewer); only on a loopback host.")
@click.option("--ui", is_flag=True, help="Also serve the Dagster UI under /ui/ behind the same tokens: "
              "viewers on a read-only webserver, operators and admins on a full one (loopback ports).")
def serve(host: str, port: int, url: str, allow_anonymous_read: bool, ui: bool) -> None:
    """Serve the API; its OpenAPI document is /api/v1/openapi.json."""
    import uvicorn  # the server alone, only when serving: the other commands start faster

    if allow_anonymous_read and not is_loopback(host):
        _fail(f"--allow-anonymous-read is only allowed on a loopback host, not {host}")
    # The app reads specs (and their ${VAR} connections) in this process; the setup keeps an
    # embedded warehouse up while serving.
    setup = embedded.configure_process()
    with contextlib.ExitStack() as stack:
        backends = None
        if ui:
            dagster_instance.migrate_instance()  # once, before two webservers share the instance
            backends = stack.enter_context(proxy.webservers(
                setup.child_env(), settings.PROJECT_ROOT / "workspace.yaml", setup.settings.etl_home / "logs"
            ))
            url = backends.full + proxy.PREFIX  # the API drives the UI's own full webserver
        config = ApiConfig(webserver_url=url, warehouse_url=setup.warehouse_url,
                           pipelines_dir=settings.pipelines_dir(), allow_anonymous_read=allow_anonymous_read,
                           ui=backends)
        # Client addresses (audit, failed-login limits) come from X-Forwarded-For only when the
        # request arrives from the TLS proxy on this host.
        uvicorn.run(create_app(config), host=host, port=port, proxy_headers=True, forwarded_allow_ips="127.0.0.1")


@api_group.group("token")
def token() -> None:
    """API tokens: each has a name and a role (viewer < operator < admin)."""


def _conn() -> tuple[embedded.Setup, psycopg.Connection]:
    """The tokens' database; keep the setup referenced while in use (it holds the embedded
    server, if that is the warehouse)."""
    setup = embedded.configure()
    conn = psycopg.connect(setup.warehouse_url, autocommit=True)
    tokens.migrate(conn)
    return setup, conn


def _audit(conn: psycopg.Connection, action: str, name: str, status: int, detail: str | None) -> None:
    audit.record(conn, action=action, target=name, status=status, token_name=None, role=None,
                 client=f"cli:{getpass.getuser()}@{socket.gethostname()}", detail=detail)


@token.command("create")
@click.option("--name", required=True, help="Who or what uses it, e.g. ci or alice@example.com.")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
def token_create(name: str, role: str) -> None:
    """Print a new token once; only its hash is stored."""
    if not TOKEN_NAME.match(name):
        _fail(f"token name {name!r}: use letters, digits and _ . @ - (at most 64)")
    _server, conn = _conn()  # the embedded server, if any, stays up meanwhile
    with conn:
        try:
            value = tokens.create(conn, name, Role(role))
        except tokens.TokenError as e:
            _audit(conn, "token.create", name, 409, str(e))
            _fail(str(e), 1)
        _audit(conn, "token.create", name, 201, f"role {role}")
    click.echo(value)
    click.echo(f"token {name!r} ({role}) created; it is shown only now, so store it safely", err=True)


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
def token_list(as_json: bool) -> None:
    """Names, roles, when created and last used, and revoked ones."""
    _server, conn = _conn()  # the embedded server, if any, stays up meanwhile
    with conn:
        rows = tokens.list_tokens(conn)
    if as_json:
        click.echo(json.dumps([{**r.__dict__, "role": r.role.value} for r in rows], default=str))
        return
    for r in rows:
        used = f"{r.last_used_at:%Y-%m-%d %H:%M}" if r.last_used_at else "never"
        state = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "active"
        click.echo(f"{r.name:<24} {r.role.value:<9} created {r.created_at:%Y-%m-%d %H:%M}  used {used:<16} {state}")
    if not rows:
        click.echo("no tokens; create one with `etl-assets api token create --name NAME --role admin`")


@token.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Refuse the token from now on (401)."""
    _server, conn = _conn()  # the embedded server, if any, stays up meanwhile
    with conn:
        try:
            tokens.revoke(conn, name)
        except tokens.TokenError as e:
            _audit(conn, "token.revoke", name, 404, str(e))
            _fail(str(e), 1)
        _audit(conn, "token.revoke", name, 200, None)
    click.echo(f"token {name!r} revoked")
