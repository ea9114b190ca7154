"""The job API's systemd unit (`systemd-analyze verify` runs over every unit in test_systemd.py)."""

from __future__ import annotations

import configparser

from etl_assets_tests.dagster_services import ROOT

UNIT = ROOT / "deploy" / "systemd" / "etl-assets-api.service"


def test_the_api_unit_serves_on_loopback_behind_the_environment_file() -> None:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(UNIT, encoding="utf-8")
    service = cp["Service"]
    assert service["ExecStart"] == (
        "/opt/etl-assets/.venv/bin/etl-assets api serve --host ${ETL_API_HOST} --port ${ETL_API_PORT} "
        "--url ${ETL_WEBSERVER_URL}"
    )
    assert (service["User"], service["Restart"], service["EnvironmentFile"]) == (
        "etl-assets", "on-failure", "/etc/etl-assets/env"
    )
    text = UNIT.read_text()
    assert "Environment=ETL_API_HOST=127.0.0.1" in text
    assert text.index("Environment=ETL_API_HOST") < text.index("EnvironmentFile=")  # the file overrides it
    assert cp["Install"]["WantedBy"] == "multi-user.target"
