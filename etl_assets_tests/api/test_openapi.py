"""Generated requests from the OpenAPI document (schemathesis), sent to the app in-process
with an admin token, in front of a real webserver and warehouse: none may be a server error."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from etl_assets.api.app import ApiConfig, create_app

from .conftest import Stack

pytestmark = pytest.mark.slow


def test_no_generated_request_is_a_server_error(stack: Stack) -> None:
    config = ApiConfig(webserver_url=stack.services.url, warehouse_url=stack.api.warehouse_url,
                       pipelines_dir=stack.api.pipelines, failed_login_limit=1_000_000)
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", create_app(config))
    headers = {"Authorization": f"Bearer {stack.api.tokens['admin']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 12

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        no_server_error()
