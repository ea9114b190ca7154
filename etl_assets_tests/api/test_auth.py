"""Tokens and roles at the door: 401 without a valid token, 403 for the wrong role, 429 after
repeated failed logins, and anonymous reads only where the server allows them."""

from __future__ import annotations

import subprocess
import sys

import requests
import yaml

from etl_assets.api.app import ApiConfig, create_app
from etl_assets_tests.dagster_services import ROOT, free_port

from .conftest import SHOP, Api, serve


def test_a_request_without_a_token_is_401_and_says_how_to_send_one(offline_api: Api) -> None:
    for method, path in [("GET", "/pipelines"), ("GET", "/audit"), ("POST", "/pipelines/shop/runs")]:
        r = offline_api.call(method, path, json={"partition": "2025-03-09"})
        assert r.status_code == 401, (path, r.text)
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert r.json() == {"detail": "this request needs a token: send the header 'Authorization: Bearer <token>'"}


def test_an_unknown_token_is_401(offline_api: Api) -> None:
    r = offline_api.call("GET", "/audit", headers={"Authorization": "Bearer not-a-token"})
    assert (r.status_code, r.json()) == (401, {"detail": "the token is unknown or revoked"})


def test_the_wrong_role_is_403_and_the_refusal_is_audited(offline_api: Api) -> None:
    r = offline_api.call("POST", "/pipelines/shop/runs", "viewer", json={"partition": "2025-03-09"})
    assert (r.status_code, r.json()) == (403, {"detail": "token 'viewer' has the role viewer; this needs operator"})
    r = offline_api.call("GET", "/audit", "operator")
    assert (r.status_code, r.json()) == (403, {"detail": "token 'operator' has the role operator; this needs admin"})
    r = offline_api.call("DELETE", "/pipelines/shop", "operator")
    assert r.status_code == 403
    r = offline_api.call("POST", "/pipelines/shop/runs", json={"partition": "2025-03-09"})
    assert r.status_code == 401
    assert offline_api.audit() == [
        ("viewer", "viewer", "run.start", "shop", "refused", 403, "127.0.0.1"),
        ("operator", "operator", "pipeline.delete", "shop", "refused", 403, "127.0.0.1"),
        (None, None, "run.start", "shop", "refused", 401, "127.0.0.1"),
    ]
    assert (offline_api.pipelines / "shop.yaml").exists()  # the refused delete changed nothing


def test_each_role_may_do_what_the_roles_below_it_may(offline_api: Api) -> None:
    for role in ("viewer", "operator", "admin"):
        r = offline_api.call("GET", "/pipelines/nope", role)
        assert (r.status_code, r.json()) == (404, {"detail": "no pipeline named 'nope'"}), role
    for role in ("operator", "admin"):
        r = offline_api.call("POST", "/pipelines/nope/runs", role, json={"partition": "2025-03-09"})
        assert r.status_code == 404, role
    r = offline_api.call("GET", "/audit", "admin")
    assert r.status_code == 200
    assert [(e["token_name"], e["action"], e["status"]) for e in r.json()["entries"]] == [
        ("admin", "run.start", 404), ("operator", "run.start", 404)
    ]


def test_repeated_failed_logins_from_one_address_are_429_for_that_address_only(offline_api: Api) -> None:
    bad = {"Authorization": "Bearer guessed"}
    assert [offline_api.call("GET", "/pipelines/shop/runs", headers=dict(bad)).status_code for _ in range(3)] == [
        401, 401, 401
    ]
    # Blocked now, even with a valid token: guessing cannot go on between good requests.
    r = offline_api.call("GET", "/pipelines/nope", "admin")
    assert r.status_code == 429
    assert r.json()["detail"].startswith("too many failed logins from 127.0.0.1; try again in ")
    assert int(r.headers["Retry-After"]) > 0
    # Another client (as the TLS proxy on this host reports it) is not affected.
    r = offline_api.call("GET", "/pipelines/nope", "admin", headers={"X-Forwarded-For": "203.0.113.7"})
    assert r.status_code == 404


def test_anonymous_reads_only_when_allowed(tmp_path, warehouse_url: str) -> None:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "shop.yaml").write_text(yaml.safe_dump(SHOP))
    config = ApiConfig(webserver_url=f"http://127.0.0.1:{free_port()}", warehouse_url=warehouse_url,
                       pipelines_dir=pipelines, allow_anonymous_read=True)
    with serve(create_app(config)) as url:
        assert requests.get(f"{url}/api/v1/pipelines/nope", timeout=30).status_code == 404
        assert requests.get(f"{url}/api/v1/audit", timeout=30).status_code == 401
        r = requests.post(f"{url}/api/v1/pipelines/shop/disable", timeout=30)
        assert r.status_code == 401


def test_anonymous_reads_are_refused_on_a_public_address() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "etl_assets.cli", "api", "serve", "--host", "0.0.0.0", "--allow-anonymous-read"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.strip() == "error: --allow-anonymous-read is only allowed on a loopback host, not 0.0.0.0"
