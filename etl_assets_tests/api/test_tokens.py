"""`etl-assets api token create|list|revoke`: a token is shown once, only its hash is kept, and a
revoked one opens nothing."""

from __future__ import annotations

import hashlib
import json

import psycopg
import requests
import yaml

from etl_assets.api import tokens
from etl_assets.api.app import ApiConfig, create_app
from etl_assets_tests.dagster_services import free_port
from etl_assets_tests.helpers import query

from .conftest import SHOP, serve


def _everything_stored(url: str) -> str:
    """Every row of the API's tables, as text."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT t::text FROM etl_meta.api_tokens t").fetchall()
        rows += conn.execute("SELECT a::text FROM etl_meta.audit a").fetchall()
    return "\n".join(r[0] for r in rows)


def test_a_token_is_shown_once_and_stored_only_as_its_hash(etl_cli, etl_env, tmp_path) -> None:
    made = etl_cli("api", "token", "create", "--name", "ci", "--role", "operator")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert len(token) == 43  # 32 random bytes, URL-safe base64
    assert "shown only now" in made.stderr
    wh = etl_env["ETL_WAREHOUSE_URL"]
    assert query(wh, "SELECT name, role, token_hash, last_used_at, revoked_at FROM etl_meta.api_tokens") == [
        ("ci", "operator", hashlib.sha256(token.encode()).digest(), None, None)
    ]
    assert token not in _everything_stored(wh)

    listed = etl_cli("api", "token", "list", "--json")
    assert [(t["name"], t["role"], t["revoked_at"]) for t in json.loads(listed.stdout)] == [("ci", "operator", None)]
    assert token not in listed.stdout

    again = etl_cli("api", "token", "create", "--name", "ci", "--role", "admin")
    assert (again.returncode, again.stderr.strip()) == (1, "error: a token named 'ci' already exists; revoke it first")

    pipelines = tmp_path / "pipelines"
    (pipelines / "shop.yaml").write_text(yaml.safe_dump(SHOP))
    config = ApiConfig(webserver_url=f"http://127.0.0.1:{free_port()}", warehouse_url=wh, pipelines_dir=pipelines)
    with serve(create_app(config)) as url:
        auth = {"Authorization": f"Bearer {token}"}
        assert requests.get(f"{url}/api/v1/pipelines/nope", headers=auth, timeout=30).status_code == 404
        assert query(wh, "SELECT last_used_at IS NOT NULL FROM etl_meta.api_tokens") == [(True,)]
        revoked = etl_cli("api", "token", "revoke", "ci")
        assert (revoked.returncode, revoked.stdout.strip()) == (0, "token 'ci' revoked")
        r = requests.get(f"{url}/api/v1/pipelines/nope", headers=auth, timeout=30)
        assert (r.status_code, r.json()) == (401, {"detail": "the token is unknown or revoked"})

    assert etl_cli("api", "token", "revoke", "ci").stderr.strip() == "error: no active token named 'ci'"
    # Token changes are audited too, refused ones included, and no token value is in the trail.
    assert [r[:4] for r in query(wh, "SELECT action, target, outcome, status FROM etl_meta.audit ORDER BY id")] == [
        ("token.create", "ci", "allowed", 201),
        ("token.create", "ci", "failed", 409),
        ("token.revoke", "ci", "allowed", 200),
        ("token.revoke", "ci", "failed", 404),
    ]
    assert query(wh, "SELECT DISTINCT client LIKE 'cli:%%' FROM etl_meta.audit") == [(True,)]
    assert token not in _everything_stored(wh)


def test_a_revoked_name_can_be_issued_again_and_its_old_token_stays_refused(warehouse_url: str) -> None:
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        tokens.migrate(conn)
        tokens.migrate(conn)  # idempotent
        old = tokens.create(conn, "alice", tokens.Role.viewer)
        tokens.revoke(conn, "alice")
        new = tokens.create(conn, "alice", tokens.Role.admin)
        assert tokens.verify(conn, old) is None
        assert tokens.verify(conn, new) == ("alice", tokens.Role.admin)


def test_an_invalid_token_name_is_one_sentence(etl_cli) -> None:
    r = etl_cli("api", "token", "create", "--name", "bad name;", "--role", "viewer")
    assert (r.returncode, r.stderr.strip()) == (
        2, "error: token name 'bad name;': use letters, digits and _ . @ - (at most 64)"
    )
