"""OpenLineage events: the run-status sensors send START, COMPLETE, FAIL and ABORT to a collector.

The collector and the JSON API source are real HTTP servers on 127.0.0.1; runs execute on a real
Dagster instance, and the sensors are evaluated on their run events as the daemon would.
Events are validated against the OpenLineage JSON schema (openlineage_spec/, copied from the
OpenLineage repository's spec/ folder at the versions the installed client writes, Apache-2.0).
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from etl_assets.definitions import build_defs
from etl_assets.ops import lineage
from etl_assets.spec import PipelineSpec, parse_pipeline
from etl_assets.warehouses.postgres import WarehouseResource
from etl_assets_tests.helpers import create_orders, make_spec

SPEC_DIR = Path(__file__).with_name("openlineage_spec")
PG_PASSWORD = "lineage-pw-5ecret"
API_TOKEN = "tok-lineage-5ecret"
WEEK = "2025-03-09"
NY = dt.timezone(dt.timedelta(hours=-4))  # 2025-03-10 is after the DST change


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 whose handler is a method of the subclass."""

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.get(self)

            def do_POST(self) -> None:
                owner.post(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def get(self, req: BaseHTTPRequestHandler) -> None:
        req.send_error(405)

    def post(self, req: BaseHTTPRequestHandler) -> None:
        req.send_error(405)

    @staticmethod
    def reply(req: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)


class Collector(_Server):
    """An OpenLineage HTTP collector: records each event POSTed to /api/v1/lineage."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.lock = threading.Lock()
        super().__init__()

    def post(self, req: BaseHTTPRequestHandler) -> None:
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0)).decode()
        if req.path != "/api/v1/lineage":
            self.reply(req, 404, {})
            return
        with self.lock:  # recorded before the reply, so the sensor returns after it is here
            self.raw.append(body)
            self.events.append(json.loads(body))
        self.reply(req, 201, {})

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["eventType"] == event_type]


class TicketsApi(_Server):
    """A JSON API source that demands its bearer token."""

    def get(self, req: BaseHTTPRequestHandler) -> None:
        if req.headers.get("Authorization") != f"Bearer {API_TOKEN}":
            self.reply(req, 401, {"error": "unauthorized"})
            return
        self.reply(req, 200, {"data": [{"id": 1, "subject": "late"}, {"id": 2, "subject": "broken"}]})


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Collector]:
    c = Collector()
    for name in ("OPENLINEAGE_CONFIG", "OPENLINEAGE_DISABLED", "OPENLINEAGE_NAMESPACE", "OPENLINEAGE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENLINEAGE_URL", c.url)
    yield c
    c.close()


@pytest.fixture
def tickets_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[TicketsApi]:
    api = TicketsApi()
    monkeypatch.setenv("LINEAGE_API_TOKEN", API_TOKEN)
    yield api
    api.close()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def password_url(url: str) -> str:
    """The same database with a password in the URL (trust auth accepts any)."""
    return url.replace("postgres@", f"postgres:{PG_PASSWORD}@")


def multi_source_spec(csv_dir: Path, api_url: str, amount_max: float = 100) -> PipelineSpec:
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["retries"] = {"max": 0}
    orders = data["sources"][0]
    orders["connection"] = {"url": "${LINEAGE_SOURCE_URL}"}
    orders["checks"] = [
        {"type": "unique", "severity": "error"},
        {"type": "not_null", "column": "customer", "severity": "warn"},
        {"type": "between", "column": "amount", "min": 0, "max": amount_max, "severity": "error"},
    ]
    data["sources"] += [
        {
            "name": "items", "kind": "csv", "path": str(csv_dir / "*.csv"), "mode": "full",
            "primary_key": ["sku"], "columns": [{"name": "sku"}, {"name": "qty", "type": "integer"}],
            "load": {"target": "mart.items"},
        },
        {
            "name": "tickets", "kind": "http", "url": f"{api_url}/v2/tickets?state=open",
            "auth": {"type": "bearer", "token": "${LINEAGE_API_TOKEN}"}, "record_path": "data",
            "mode": "full", "primary_key": ["id"], "load": {"target": "mart.tickets"},
        },
    ]
    return parse_pipeline(data, "shop.yaml")


@pytest.fixture
def shop(tmp_path: Path, etl_env: dict[str, str], tickets_api: TicketsApi, monkeypatch: pytest.MonkeyPatch):
    """Three sources (a PostgreSQL table, a CSV folder, a JSON API) and four orders in WEEK."""
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    (csv_dir / "items.csv").write_text("sku,qty\nA,1\nB,2\nC,3\n")
    monkeypatch.setenv("LINEAGE_SOURCE_URL", password_url(etl_env["TEST_SOURCE_URL"]))
    start = dt.datetime(2025, 3, 10, 9, tzinfo=NY)
    create_orders(etl_env["TEST_SOURCE_URL"], [(i, f"c{i}", f"{i}.50", start + dt.timedelta(hours=i)) for i in range(1, 5)])
    return csv_dir, tickets_api.url


def run_job(defs: dg.Definitions, instance: dg.DagsterInstance) -> str:
    result = defs.resolve_job_def("shop_job").execute_in_process(
        instance=instance, partition_key=WEEK, raise_on_error=False
    )
    return result.run_id


def run_event(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType) -> dg.DagsterEvent:
    [entry] = [e for e in instance.all_logs(run_id, of_type=event_type)]
    assert entry.dagster_event is not None
    return entry.dagster_event


SENSOR_EVENTS = {
    lineage.SENSORS[0]: dg.DagsterEventType.RUN_START,
    lineage.SENSORS[1]: dg.DagsterEventType.RUN_SUCCESS,
    lineage.SENSORS[2]: dg.DagsterEventType.RUN_FAILURE,
    lineage.SENSORS[3]: dg.DagsterEventType.RUN_CANCELED,
}


def evaluate(defs: dg.Definitions, name: str, instance: dg.DagsterInstance, run_id: str, wh: str) -> None:
    """One tick of a lineage sensor for one run event, as the daemon evaluates it."""
    sensor = defs.get_sensor_def(name)
    sensor(dg.build_run_status_sensor_context(
        sensor_name=name,
        dagster_event=run_event(instance, run_id, SENSOR_EVENTS[name]),
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        resources={"warehouse": WarehouseResource(url=wh)},
    ))


def schema_validator() -> tuple[Draft202012Validator, Registry]:
    schemas = [json.loads(p.read_text()) for p in sorted(SPEC_DIR.glob("*.json"))]
    registry: Registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)
    main = next(s for s in schemas if s["$id"].endswith("/OpenLineage.json"))
    return Draft202012Validator(main, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER), registry


def assert_valid(event: dict[str, Any]) -> None:
    """The event against OpenLineage.json, and every facet against the schema its _schemaURL names."""
    validator, registry = schema_validator()
    validator.validate(event)
    facets = [*event["run"]["facets"].values(), *event["job"]["facets"].values()]
    for ds in event["inputs"] + event["outputs"]:
        facets += [*ds.get("facets", {}).values(), *ds.get("inputFacets", {}).values(),
                   *ds.get("outputFacets", {}).values()]
    for facet in facets:
        Draft202012Validator({"$ref": facet["_schemaURL"]}, registry=registry).validate(facet)


def db_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def by_name(datasets: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["namespace"], d["name"]): d for d in datasets}


def fields(dataset: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["name"], f["type"]) for f in dataset["facets"]["schema"]["fields"]]


def test_a_multi_source_run_sends_start_and_complete_with_its_datasets(
    collector: Collector, shop, etl_env: dict[str, str], instance: dg.DagsterInstance
) -> None:
    csv_dir, api_url = shop
    defs = build_defs([multi_source_spec(csv_dir, api_url)])
    wh = etl_env["ETL_WAREHOUSE_URL"]
    run_id = run_job(defs, instance)
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
    evaluate(defs, "etl_lineage_start_sensor", instance, run_id, wh)
    evaluate(defs, "etl_lineage_success_sensor", instance, run_id, wh)

    start, complete = collector.events
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    for event in (start, complete):
        assert_valid(event)
        assert event["run"]["runId"] == run_id
        assert event["job"]["namespace"] == "etl-assets" and event["job"]["name"] == "shop"
        assert {f["_producer"] for f in event["run"]["facets"].values() if f["_schemaURL"].find("Tags") < 0} == {
            event["producer"]
        }
        assert event["run"]["facets"]["nominalTime"]["nominalStartTime"].startswith("2025-03-09T05:00:00")
        assert event["run"]["facets"]["nominalTime"]["nominalEndTime"].startswith("2025-03-16T04:00:00")
    src, api_port = db_name(etl_env["TEST_SOURCE_URL"]), api_url.rsplit(":", 1)[1]
    pg = "postgres://127.0.0.1:5432"
    orders_in, file_in, api_in = (pg, f"{src}.src.orders"), ("file", str(csv_dir / "items.csv")), (
        f"http://127.0.0.1:{api_port}", "/v2/tickets")
    warehouse = db_name(wh)
    targets = [(pg, f"{warehouse}.mart.{t}") for t in ("orders", "items", "tickets")]

    # START knows what the spec names; the files a glob matches are known once they are read.
    assert sorted(by_name(start["inputs"])) == sorted([orders_in, api_in])
    assert sorted(by_name(start["outputs"])) == sorted(targets)

    inputs, outputs = by_name(complete["inputs"]), by_name(complete["outputs"])
    assert sorted(inputs) == sorted([orders_in, file_in, api_in])
    assert fields(inputs[orders_in]) == [
        ("order_id", "integer"), ("customer", "string"), ("amount", "float"), ("updated_at", "timestamp")
    ]
    assert fields(inputs[file_in]) == [("sku", "string"), ("qty", "integer")]
    assert [n for n, _ in fields(inputs[api_in])] == ["id", "subject"]
    assert {k: inputs[k]["inputFacets"]["inputStatistics"]["rowCount"] for k in inputs} == {
        orders_in: 4, file_in: 3, api_in: 2
    }
    assert inputs[file_in]["inputFacets"]["inputStatistics"]["size"] == len("sku,qty\nA,1\nB,2\nC,3\n")

    assert sorted(outputs) == sorted(targets)
    orders_out = outputs[targets[0]]
    assert fields(orders_out) == [
        ("order_id", "bigint"), ("customer", "text"), ("amount", "double precision"),
        ("updated_at", "timestamp with time zone"),
    ]
    assert {k: outputs[k]["outputFacets"]["outputStatistics"]["rowCount"] for k in outputs} == dict(
        zip(targets, (4, 3, 2))
    )
    assertions = orders_out["facets"]["dataQualityAssertions"]["assertions"]
    assert [(a["name"], a["assertion"], a["success"], a.get("column"), a["severity"]) for a in assertions] == [
        ("unique_key", "unique", True, None, "error"),
        ("not_null_customer", "not_null", True, "customer", "warn"),
        ("between_amount", "between", True, "amount", "error"),
    ]
    text = "".join(collector.raw)
    for secret in (PG_PASSWORD, API_TOKEN):
        assert secret not in text, text[max(0, text.index(secret) - 300):text.index(secret) + 100]


def test_a_failed_run_sends_fail_with_the_failing_assertion(
    collector: Collector, shop, etl_env: dict[str, str], instance: dg.DagsterInstance
) -> None:
    csv_dir, api_url = shop
    defs = build_defs([multi_source_spec(csv_dir, api_url, amount_max=3)])  # orders 3.50 and 4.50 fail
    wh = etl_env["ETL_WAREHOUSE_URL"]
    run_id = run_job(defs, instance)
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    evaluate(defs, "etl_lineage_failure_sensor", instance, run_id, wh)

    [fail] = collector.events
    assert_valid(fail)
    assert (fail["eventType"], fail["run"]["runId"]) == ("FAIL", run_id)
    error = fail["run"]["facets"]["errorMessage"]
    assert error["programmingLanguage"] == "python"
    assert "between_amount" in error["message"]
    outputs = by_name(fail["outputs"])
    orders_out = outputs[("postgres://127.0.0.1:5432", f"{db_name(wh)}.mart.orders")]
    assert "outputStatistics" not in orders_out.get("outputFacets", {})  # nothing was loaded
    between = [a for a in orders_out["facets"]["dataQualityAssertions"]["assertions"] if a["name"] == "between_amount"]
    assert [(a["success"], a["severity"], a["column"]) for a in between] == [(False, "error", "amount")]
    # The other sources loaded: their outputs say how many rows.
    items_out = outputs[("postgres://127.0.0.1:5432", f"{db_name(wh)}.mart.items")]
    assert items_out["outputFacets"]["outputStatistics"]["rowCount"] == 3


def test_a_canceled_run_sends_abort(collector: Collector, etl_env: dict[str, str], instance: dg.DagsterInstance) -> None:
    defs = build_defs([make_spec()])
    job = defs.resolve_job_def("shop_job")
    run = instance.create_run_for_job(job, tags={"dagster/partition": WEEK})
    instance.report_run_canceled(run)
    evaluate(defs, "etl_lineage_canceled_sensor", instance, run.run_id, etl_env["ETL_WAREHOUSE_URL"])
    [abort] = collector.events
    assert_valid(abort)
    assert (abort["eventType"], abort["run"]["runId"], abort["job"]["name"]) == ("ABORT", run.run_id, "shop")


def test_nothing_is_sent_without_a_collector_configured(
    collector: Collector, etl_env: dict[str, str], instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    defs = build_defs([make_spec()])
    monkeypatch.delenv("OPENLINEAGE_URL")
    monkeypatch.setenv("HOME", str(Path(etl_env["ETL_HOME"])))  # no ~/.openlineage/openlineage.yml
    assert not lineage.configured()
    names = {s.name for s in build_defs([make_spec()]).sensors or []}
    assert not names & set(lineage.SENSORS)  # not configured: no lineage sensors at all
    # A sensor loaded while configured sends nothing once the setting is gone.
    run_id = run_job(defs, instance)
    evaluate(defs, "etl_lineage_start_sensor", instance, run_id, etl_env["ETL_WAREHOUSE_URL"])
    assert collector.events == []


def test_a_collector_that_is_down_does_not_fail_the_sensor(
    tmp_path: Path, collector: Collector, etl_env: dict[str, str], instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    config = tmp_path / "openlineage.yml"  # the client's own settings file, retries off
    config.write_text(
        f"transport:\n  type: http\n  url: http://127.0.0.1:{closed}\n  retry: {{total: 0}}\n"
    )
    monkeypatch.delenv("OPENLINEAGE_URL")
    monkeypatch.setenv("OPENLINEAGE_CONFIG", str(config))
    defs = build_defs([make_spec()])
    run_id = run_job(defs, instance)
    capfd.readouterr()
    evaluate(defs, "etl_lineage_start_sensor", instance, run_id, etl_env["ETL_WAREHOUSE_URL"])
    assert f"shop: could not send the OpenLineage START event of run {run_id}: ConnectionError" in capfd.readouterr().err
    assert collector.events == []


def test_dataset_names_carry_no_credentials() -> None:
    assert lineage.database_location("postgresql://etl:pw%40x@db.example:6543/shop?sslmode=require") == (
        "postgres://db.example:6543", "shop"
    )
    assert lineage.database_location("mysql+pymysql://etl:pw@crm/sales") == ("mysql://crm:3306", "sales")
    assert lineage.database_location("oracle+oracledb://etl:pw@ora:1521/?service_name=BILLING") == (
        "oracle://ora:1521", "BILLING"
    )
    assert lineage.table_name("postgres://db:5432", "shop", "orders") == "shop.public.orders"
    assert lineage.table_name("mysql://crm:3306", "sales", "customers") == "sales.customers"
    assert lineage.url_dataset("https://user:tok@api.example.com/v2/tickets?key=abc#x") == (
        "https://api.example.com:443", "/v2/tickets"
    )
    assert lineage.file_dataset("s3://drops/stock/*.csv.gz", "drops/stock/a.csv.gz") == ("s3://drops", "stock/a.csv.gz")
    assert lineage.file_dataset("/data/in/*.csv", "/data/in/a.csv") == ("file", "/data/in/a.csv")


def test_an_in_process_run_sends_its_events_too(
    collector: Collector, etl_env: dict[str, str], instance: dg.DagsterInstance
) -> None:
    """`etl-assets run` has no daemon sensor behind it: the runner sends START and COMPLETE itself."""
    from etl_assets.orchestration.runner import run_pipeline

    spec = make_spec()
    create_orders(etl_env["TEST_SOURCE_URL"], [(1, "c1", "9.50", dt.datetime(2025, 3, 10, 12, tzinfo=dt.UTC))])
    outcome = run_pipeline(build_defs([spec]), spec, [WEEK], instance=instance, record_history=False)
    assert outcome.status == "success"
    assert [(e["eventType"], e["run"]["runId"]) for e in collector.events] == [
        ("START", outcome.run_id), ("COMPLETE", outcome.run_id)
    ]
    for event in collector.events:
        assert_valid(event)
