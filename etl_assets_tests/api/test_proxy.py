"""The Dagster UI under /ui/ behind the API's tokens: a login page, viewers on a read-only
webserver, operators on the full one, websockets relayed, and launches from the UI audited.

One set of services for the module: a daemon, the two UI webservers and the API in front.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
import websockets
import yaml

from etl_assets.api import proxy
from etl_assets.api.app import ApiConfig, create_app
from etl_assets.core.partitions import partitions_def
from etl_assets.spec import parse_pipeline
from etl_assets_tests.dagster_services import ROOT, DagsterServices
from etl_assets_tests.helpers import Databases, create_orders, query

from .conftest import SHOP, role_tokens, serve, shop_orders

pytestmark = pytest.mark.slow

LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId tags { key value } } }
  }
}
"""


@dataclass
class Ui:
    url: str
    tokens: dict[str, str]
    warehouse_url: str
    services: DagsterServices

    def login(self, role: str) -> requests.Session:
        s = requests.Session()
        r = s.post(f"{self.url}/ui/login", data={"token": self.tokens[role]}, allow_redirects=False, timeout=60)
        assert r.status_code == 303, r.text
        # A Secure cookie: requests keeps it for https only, as browsers do but for loopback.
        s.headers["Cookie"] = f"{proxy.COOKIE}={r.cookies[proxy.COOKIE]}"
        return s

    def audit(self) -> list[tuple]:
        return query(self.warehouse_url, "SELECT token_name, role, action, target, outcome, status FROM "
                     "etl_meta.audit WHERE action LIKE 'ui.%%' ORDER BY id")


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    tmp = tmp_path_factory.mktemp("ui")
    dbs = Databases()
    try:
        pipelines = tmp / "pipelines"
        pipelines.mkdir()
        (pipelines / "shop.yaml").write_text(yaml.safe_dump(SHOP))
        source = dbs.new("etl_ui_src")
        create_orders(source, shop_orders())
        env = {
            "ETL_HOME": str(tmp / "home"), "ETL_STORAGE_DIR": str(tmp / "storage"),
            "ETL_WAREHOUSE_URL": dbs.new("etl_ui_wh"), "TEST_SOURCE_URL": source,
            "ETL_PIPELINES_DIR": str(pipelines),
            "ETL_INSTANCE_URL": dbs.new("etl_ui_instance").replace("postgresql://", "postgresql+psycopg2://"),
        }
        with DagsterServices(tmp, env) as services, proxy.webservers(
            services.env, ROOT / "workspace.yaml", tmp / "logs"
        ) as backends:
            config = ApiConfig(webserver_url=backends.full + proxy.PREFIX, warehouse_url=env["ETL_WAREHOUSE_URL"],
                               pipelines_dir=pipelines, ui=backends)
            issued = role_tokens(env["ETL_WAREHOUSE_URL"])
            with serve(create_app(config)) as url:
                yield Ui(url, issued, env["ETL_WAREHOUSE_URL"], services)
    finally:
        dbs.drop_all()


def launch_variables(partition: str) -> dict:
    return {"executionParams": {
        "selector": {"repositoryLocationName": "etl_assets", "repositoryName": "__repository__", "jobName": "shop_job"},
        "mode": "default",
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition},
                                       {"key": "etl/pipeline", "value": "shop"}]},
    }}


def test_the_ui_needs_a_login_and_the_cookie_is_http_only_and_secure(ui: Ui) -> None:
    r = requests.get(f"{ui.url}/ui/", headers={"Accept": "text/html"}, allow_redirects=False, timeout=60)
    assert (r.status_code, r.headers["location"]) == (303, "/ui/login")
    r = requests.post(f"{ui.url}/ui/graphql", json={"query": "{ version }"}, timeout=60)
    assert (r.status_code, r.json()) == (401, {"detail": "sign in at /ui/login first"})
    r = requests.post(f"{ui.url}/ui/login", data={"token": "wrong"}, allow_redirects=False, timeout=60)
    assert r.status_code == 401 and "the token is unknown or revoked" in r.text

    r = requests.post(f"{ui.url}/ui/login", data={"token": ui.tokens["viewer"]}, allow_redirects=False, timeout=60)
    assert (r.status_code, r.headers["location"]) == (303, "/ui/")
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "Path=/ui" in cookie and "SameSite=strict" in cookie
    assert ui.tokens["viewer"] not in cookie  # a session id, not the token
    s = ui.login("viewer")
    page = s.get(f"{ui.url}/ui/", timeout=60)
    assert page.status_code == 200 and '"assetPrefix":"/ui"' in page.text  # Dagster's UI, under /ui


def test_viewers_cannot_launch_and_operators_can_and_both_are_audited(ui: Ui) -> None:
    refused = ui.login("viewer").post(f"{ui.url}/ui/graphql", timeout=120,
                                      json={"query": LAUNCH, "variables": launch_variables("2025-03-02")})
    assert refused.json()["data"]["launchPipelineExecution"]["__typename"] == "UnauthorizedError", refused.text
    launched = ui.login("operator").post(f"{ui.url}/ui/graphql", timeout=120,
                                         json={"query": LAUNCH, "variables": launch_variables("2025-03-09")})
    result = launched.json()["data"]["launchPipelineExecution"]
    assert result["__typename"] == "LaunchRunSuccess", launched.text
    tags = {t["key"]: t["value"] for t in result["run"]["tags"]}
    assert tags["etl/started_by"] == "operator"
    assert ui.services.wait_run(result["run"]["runId"], timeout=900) == "SUCCESS", ui.services.log_tail()
    assert ui.audit() == [
        ("viewer", "viewer", "ui.launchPipelineExecution", "shop_job 2025-03-02", "refused", 403),
        ("operator", "operator", "ui.launchPipelineExecution", "shop_job 2025-03-09", "allowed", 200),
    ]


def test_websockets_are_relayed_for_a_signed_in_user_only(ui: Ui) -> None:
    session = ui.login("viewer")
    cookie = session.headers["Cookie"]
    ws_url = ui.url.replace("http://", "ws://") + "/ui/graphql"

    async def handshake(headers: dict[str, str]) -> str:
        async with websockets.connect(ws_url, subprotocols=["graphql-ws"], additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            return json.loads(await asyncio.wait_for(ws.recv(), 60))["type"]

    assert asyncio.run(handshake({"Cookie": cookie})) == "connection_ack"
    with pytest.raises(websockets.exceptions.WebSocketException):
        asyncio.run(handshake({}))


def test_a_browser_signs_in_as_viewer_then_operator_and_launches_a_partition(ui: Ui, page) -> None:
    from .conftest import expect

    group = f"{ui.url}/ui/locations/etl_assets/asset-groups/shop"
    page.goto(group, wait_until="domcontentloaded")
    expect(page).to_have_url(re.compile(r"/ui/login$"))
    page.get_by_label("Token").fill(ui.tokens["viewer"])
    page.get_by_role("button", name="Sign in").click()
    page.goto(group, wait_until="domcontentloaded")
    button = page.get_by_role("button", name=re.compile(r"Materialize all"))
    expect(button).to_be_visible()
    expect(button).to_be_disabled()  # the read-only webserver offers no launch

    page.context.clear_cookies()
    page.goto(f"{ui.url}/ui/login", wait_until="domcontentloaded")
    page.get_by_label("Token").fill(ui.tokens["operator"])
    page.get_by_role("button", name="Sign in").click()
    page.goto(group, wait_until="domcontentloaded")
    page.get_by_role("button", name=re.compile(r"Materialize all")).click()
    dialog = page.get_by_role("dialog")
    partitions = dialog.get_by_role("textbox")
    latest = partitions_def(parse_pipeline(SHOP, "shop.yaml")).get_partition_keys()[-1]  # inside the UI's range
    one = dialog.get_by_text("1 partition", exact=True)
    # The dialog re-renders once it has loaded its partition list, which can drop what was typed
    # before: type again until the selection shows, up to a generous deadline.
    for _ in range(6):
        partitions.fill(latest)
        partitions.press("Enter")
        try:
            expect(one).to_be_visible(timeout=20_000)
            break
        except AssertionError:
            continue
    expect(one).to_be_visible()
    dialog.get_by_role("button", name="Launch 1 run").click()
    expect(page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}"))).to_be_visible()
    deadline = time.monotonic() + 300
    rows: list = []
    while time.monotonic() < deadline and not rows:
        rows = [r for r in ui.audit() if r[0] == "operator" and latest in (r[3] or "")]
        time.sleep(0.5)
    assert [(r[2] in ("ui.launchPipelineExecution", "ui.launchPartitionBackfill"), r[4], r[5]) for r in rows] == [
        (True, "allowed", 200)
    ], ui.audit()
