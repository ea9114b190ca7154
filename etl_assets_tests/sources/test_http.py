"""JSON APIs against a real local HTTP server: four pagination styles, auth, errors."""

from __future__ import annotations

import time

import dagster as dg
import pandas as pd
import pytest
import requests

from etl_assets.io.storage import ParquetIOManagerResource
from etl_assets.orchestration.assets import asset_key, build_pipeline_assets
from etl_assets.sources import http
from etl_assets.sources.base import SourceDataError, TransientSourceError
from etl_assets.warehouses.postgres import WarehouseResource
from etl_assets_tests.helpers import make_spec, query
from etl_assets_tests.sources.conftest import Api, Seen, request, source

TOKEN = "tok-7f3a9c1e55"
ITEMS = [
    {
        "id": i,
        "name": f"item {i}",
        "price": i * 1.5,
        "tags": ["a", "b"] if i == 1 else [],
        "owner": {"id": 100 + i, "team": "red"},
        "updated_at": f"2025-01-0{5 + i % 5}T12:00:00Z",
    }
    for i in range(1, 8)
]
WINDOW = {"since": "{window_start}", "until": "{window_end}"}


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", TOKEN)
    monkeypatch.setenv("API_KEY", "key-0d9e8f7a6b")


def api_source(api: Api, **kw):
    fields = {
        "kind": "http",
        "url": api.url + "/v1/items",
        "params": WINDOW,
        "auth": {"type": "bearer", "token": "${API_TOKEN}"},
        "record_path": "data.items",
        "timestamp_column": "updated_at",
    }
    return source(**{**fields, **kw})


def page_of(items: list[dict], **extra) -> dict:
    return {"data": {"items": items}, **extra}


def assert_items(frame: pd.DataFrame) -> None:
    assert frame["id"].tolist() == list(range(1, 8))
    assert frame["name"].tolist() == [f"item {i}" for i in range(1, 8)]
    assert frame["price"].tolist() == [i * 1.5 for i in range(1, 8)]
    assert frame["owner.id"].tolist() == [101 + i for i in range(7)]
    assert frame["tags"].tolist()[:2] == ['["a", "b"]', "[]"]


def test_page_pagination_with_a_page_size(api: Api) -> None:
    def handler(seen: Seen):
        page = int(seen.query["page"])
        return 200, page_of(ITEMS[(page - 1) * 3 : page * 3]), {}

    api.handler = handler
    src = api_source(
        api, pagination={"type": "page", "param": "page", "size_param": "per_page", "size": 3}
    )
    ex = http.extract(src, request())
    assert_items(ex.frame)
    assert [(r.query["page"], r.query["per_page"]) for r in api.requests] == [
        ("1", "3"),
        ("2", "3"),
        ("3", "3"),
    ]
    first = api.requests[0]
    assert first.path == "/v1/items"
    assert first.query["since"] == "2025-01-05T00:00:00-05:00"
    assert first.query["until"] == "2025-01-12T00:00:00-05:00"
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert [p["records"] for p in ex.inputs["pages"]] == [3, 3, 1]
    assert ex.inputs["pages"][0]["url"] == (
        f"{api.url}/v1/items?since=2025-01-05T00%3A00%3A00-05%3A00"
        "&until=2025-01-12T00%3A00%3A00-05%3A00&page=1&per_page=3"
    )
    assert ex.inputs["rows"] == 7 and ex.inputs["pagination"] == "page"


def test_page_pagination_until_an_empty_page(api: Api) -> None:
    api.handler = lambda seen: (
        200,
        page_of(ITEMS[(int(seen.query["p"])) * 3 : (int(seen.query["p"]) + 1) * 3]),
        {},
    )
    ex = http.extract(
        api_source(api, pagination={"type": "page", "param": "p", "start": 0}), request()
    )
    assert_items(ex.frame)
    assert [r.query["p"] for r in api.requests] == ["0", "1", "2", "3"]


def test_offset_pagination(api: Api) -> None:
    def handler(seen: Seen):
        offset, limit = int(seen.query["offset"]), int(seen.query["limit"])
        return 200, page_of(ITEMS[offset : offset + limit]), {}

    api.handler = handler
    ex = http.extract(api_source(api, pagination={"type": "offset", "limit": 3}), request())
    assert_items(ex.frame)
    assert [r.query["offset"] for r in api.requests] == ["0", "3", "6"]
    assert {r.query["limit"] for r in api.requests} == {"3"}


def test_cursor_pagination(api: Api) -> None:
    cursors = {None: (0, "c-3"), "c-3": (3, "c-6"), "c-6": (6, None)}

    def handler(seen: Seen):
        start, nxt = cursors[seen.query.get("after")]
        return 200, page_of(ITEMS[start : start + 3], meta={"next": nxt}), {}

    api.handler = handler
    src = api_source(
        api, pagination={"type": "cursor", "cursor_path": "meta.next", "param": "after"}
    )
    ex = http.extract(src, request())
    assert_items(ex.frame)
    assert [r.query.get("after") for r in api.requests] == [None, "c-3", "c-6"]
    assert all(r.query["since"] == "2025-01-05T00:00:00-05:00" for r in api.requests)


def test_link_header_pagination(api: Api) -> None:
    def handler(seen: Seen):
        page = int(seen.query.get("page", "1"))
        headers = (
            {
                "Link": f'</v1/items?page={page + 1}&since=x>; rel="next", '
                '</v1/items?page=1>; rel="first"'
            }
            if page < 3
            else {}
        )
        return 200, ITEMS[(page - 1) * 3 : page * 3], headers

    api.handler = handler
    src = api_source(api, record_path=None, pagination={"type": "link"})
    ex = http.extract(src, request())
    assert_items(ex.frame)
    assert [r.query.get("page") for r in api.requests] == [None, "2", "3"]
    # The server's next link carries its own parameters; ours are not added again.
    assert api.requests[1].query == {"page": "2", "since": "x"}


def test_api_key_header_and_batches(api: Api) -> None:
    api.handler = lambda seen: (200, page_of(ITEMS), {})
    src = api_source(
        api, auth={"type": "api_key", "header": "X-API-Key", "value": "${API_KEY}"}, batch_size=2
    )
    ex = http.extract(src, request())
    frames = list(ex.frame)
    assert [len(f) for f in frames] == [2, 2, 2, 1]
    assert len({tuple(map(str, f.dtypes)) for f in frames}) == 1
    assert_items(pd.concat(frames, ignore_index=True))
    assert api.requests[0].headers["X-API-Key"] == "key-0d9e8f7a6b"
    assert "Authorization" not in api.requests[0].headers
    assert ex.inputs["rows"] == 7


def test_records_outside_the_window_are_dropped(api: Api) -> None:
    late = {"id": 99, "name": "late", "updated_at": "2025-01-12T05:00:00Z"}
    early = {"id": 98, "name": "early", "updated_at": "2025-01-04T23:59:59"}
    api.handler = lambda seen: (200, page_of([early, ITEMS[0], late]), {})
    ex = http.extract(api_source(api), request())
    assert ex.frame["id"].tolist() == [1]
    assert ex.inputs["pages"][0]["records"] == 3 and ex.inputs["rows"] == 1


def test_rate_limits_and_server_errors_are_transient(api: Api) -> None:
    api.handler = lambda seen: (429, {"error": "slow down"}, {"Retry-After": "7"})
    with pytest.raises(TransientSourceError) as e:
        http.extract(api_source(api), request())
    assert e.value.retry_after == 7.0
    assert "HTTP 429 Too Many Requests" in str(e.value) and "retry after 7s" in str(e.value)
    api.handler = lambda seen: (503, {"error": "down"}, {})
    with pytest.raises(TransientSourceError) as e:
        http.extract(api_source(api), request())
    assert e.value.retry_after is None and "HTTP 503 Service Unavailable" in str(e.value)
    api.handler = lambda seen: (408, {}, {"Retry-After": "Wed, 01 Jan 2020 00:00:00 GMT"})
    with pytest.raises(TransientSourceError) as e:
        http.extract(api_source(api), request())
    assert e.value.retry_after == 0.0  # a date in the past: retry now


def test_client_errors_and_failed_auth_are_permanent(api: Api) -> None:
    api.handler = lambda seen: (404, {"error": "no such endpoint"}, {})
    with pytest.raises(SourceDataError) as e:
        http.extract(api_source(api), request())
    assert str(e.value).startswith("shop.sources.orders: HTTP 404 Not Found from http://127.0.0.1:")
    assert str(e.value).endswith('(page 1): {"error": "no such endpoint"}')
    api.handler = lambda seen: (401, {"error": "bad token"}, {})
    with pytest.raises(SourceDataError, match="HTTP 401 Unauthorized .*authentication failed"):
        http.extract(api_source(api), request())


@pytest.mark.parametrize(
    ("body", "fields", "message"),
    [
        (
            b'{"data": {"items": [1, }',
            {},
            "(page 1): response is not valid JSON: line 1 column 24: Expecting value",
        ),
        (
            {"data": {"rows": []}},
            {},
            "(page 1): record_path 'data.items' not found: no key 'items'",
        ),
        (
            {"data": {"items": {"id": 1}}},
            {},
            "(page 1): record_path 'data.items' is a dict, not a list of records",
        ),
        ({"data": {"items": [{"id": 1}, 2]}}, {}, "(page 1): record 2 is a int, not an object"),
    ],
)
def test_malformed_bodies_are_permanent(api: Api, body, fields, message) -> None:
    api.handler = lambda seen: (200, body, {})
    with pytest.raises(SourceDataError) as e:
        http.extract(api_source(api, **fields), request())
    assert str(e.value).endswith(message)
    assert str(e.value).startswith(f"{api.url}/v1/items?since=")


def test_max_pages_is_a_safety_net(api: Api) -> None:
    api.handler = lambda seen: (200, page_of(ITEMS[:2]), {})  # never a short page
    src = api_source(api, pagination={"type": "offset", "limit": 2}, max_pages=5)
    with pytest.raises(SourceDataError) as e:
        http.extract(src, request())
    assert str(e.value) == (
        "shop.sources.orders: the API has more than max_pages (5) pages for this window; "
        "raise max_pages or use a shorter partition cadence"
    )
    assert len(api.requests) == 5


def test_a_cursor_that_repeats_is_an_error(api: Api) -> None:
    api.handler = lambda seen: (200, page_of(ITEMS[:1], next="same"), {})
    src = api_source(api, pagination={"type": "cursor", "cursor_path": "next"})
    with pytest.raises(SourceDataError, match="cursor 'same' came back a second time"):
        http.extract(src, request())
    assert len(api.requests) == 2


def test_a_slow_server_times_out(api: Api) -> None:
    def slow(seen: Seen):
        time.sleep(1.0)
        return 200, page_of([]), {}

    api.handler = slow
    with pytest.raises(requests.Timeout):
        http.extract(api_source(api, timeout_seconds=0.2), request())


def test_an_empty_window_and_declared_columns(api: Api) -> None:
    api.handler = lambda seen: (200, page_of([]), {})
    ex = http.extract(api_source(api), request())
    assert len(ex.frame) == 0 and ex.inputs["rows"] == 0
    cols = [
        {"name": "id", "type": "integer"},
        {"name": "team", "from": "owner.team"},
        {"name": "updated_at", "type": "timestamp"},
    ]
    api.handler = lambda seen: (200, page_of(ITEMS), {})
    ex = http.extract(api_source(api, columns=cols, batch_size=3), request())
    frames = list(ex.frame)
    assert [list(f.columns) for f in frames] == [["id", "owner.team", "updated_at"]] * 3
    assert pd.concat(frames)["owner.team"].tolist() == ["red"] * 7
    missing = [*cols, {"name": "sku"}]
    with pytest.raises(SourceDataError) as e:
        http.extract(api_source(api, columns=missing), request())
    assert str(e.value) == (
        "shop.sources.orders: records have no field 'sku' "
        "(fields: id, name, price, tags, owner.id, owner.team, updated_at)"
    )


def test_a_field_that_appears_late_in_a_stream_needs_declared_columns(api: Api) -> None:
    late = [{**item, "coupon": "X"} if item["id"] == 5 else item for item in ITEMS]
    api.handler = lambda seen: (200, page_of(late), {})
    whole = http.extract(api_source(api), request()).frame
    assert whole["coupon"].isna().tolist() == [True] * 4 + [False] + [True] * 2
    assert whole["coupon"][4] == "X"
    with pytest.raises(SourceDataError) as e:
        list(http.extract(api_source(api, batch_size=2), request()).frame)
    assert str(e.value) == (
        "shop.sources.orders: field 'coupon' first appears after the first batch; "
        "declare the source's columns so every batch has the same ones"
    )


def test_an_empty_window_without_declared_columns_loads_zero_rows(api: Api, etl_env) -> None:
    """No records, no declared columns: nothing is known of the schema, and nothing changes."""
    items = {
        "name": "items",
        "kind": "http",
        "url": api.url + "/v1/items",
        "record_path": "data.items",
        "timestamp_column": "updated_at",
        "primary_key": ["id"],
        "load": {"target": "mart.items"},
    }
    spec = make_spec(sources=[items], report={})
    loaded = asset_key("shop", "loaded", "items")

    def run(instance: dg.DagsterInstance, partition: str, records: list[dict]) -> dict:
        api.handler = lambda seen: (200, page_of(records), {})
        result = dg.materialize(
            build_pipeline_assets(spec),
            instance=instance,
            resources={
                "parquet_io": ParquetIOManagerResource(base_path=etl_env["ETL_STORAGE_DIR"]),
                "warehouse": WarehouseResource(url=etl_env["ETL_WAREHOUSE_URL"]),
            },
            partition_key=partition,
            raise_on_error=False,
        )
        assert result.success, [e.message for e in result.all_events if e.is_step_failure]
        [meta] = [
            e.step_materialization_data.materialization.metadata
            for e in result.get_asset_materialization_events()
            if e.asset_key == loaded
        ]
        return {k: getattr(v, "value", v) for k, v in meta.items()}

    with dg.instance_for_test() as instance:
        first = run(instance, "2025-01-12", [])  # before the target table exists
        assert (first["inserted"], first["updated"]) == (0, 0)
        run(instance, "2025-01-05", [ITEMS[0]])
        again = run(instance, "2025-01-12", [])  # after it holds typed rows
        assert (again["inserted"], again["updated"], again["deleted"]) == (0, 0, 0)
    rows = query(etl_env["ETL_WAREHOUSE_URL"], "SELECT id, name, _partition FROM mart.items")
    assert rows == [(1, "item 1", "2025-01-05")]
