"""The systemd units pass `systemd-analyze verify` and say what the deployment relies on.

Verify checks that every ExecStart binary exists, so the units are rendered with this
checkout's paths in place of /opt/etl-assets; it needs no running systemd.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
INSTALL_ROOT = "/opt/etl-assets"
VENV_BIN = Path(sys.executable).parent


def render(tmp_path: Path) -> Path:
    out = tmp_path / "units"
    out.mkdir()
    for unit in UNITS.glob("etl-assets-*"):
        text = unit.read_text(encoding="utf-8")
        text = text.replace(f"{INSTALL_ROOT}/.venv/bin", str(VENV_BIN)).replace(
            INSTALL_ROOT, str(ROOT)
        )
        (out / unit.name).write_text(text, encoding="utf-8")
    return out


def instance_name(unit: Path) -> str:
    """Templates are verified as an instance, the way they run."""
    return unit.name.replace("@.", "@demo_sales.")


def parse(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(UNITS / name, encoding="utf-8")
    return cp


def test_every_unit_file_is_here() -> None:
    assert sorted(p.name for p in UNITS.glob("etl-assets-*")) == [
        "etl-assets-api.service",
        "etl-assets-daemon.service",
        "etl-assets-run@.service",
        "etl-assets-run@.timer",
        "etl-assets-webserver.service",
    ]


@pytest.mark.parametrize("unit", sorted(p.name for p in UNITS.glob("etl-assets-*")))
def test_systemd_analyze_verify(unit: str, tmp_path: Path) -> None:
    assert Path(SYSTEMD_ANALYZE).exists(), "install systemd to verify the units"
    rendered = render(tmp_path)
    target = rendered / instance_name(rendered / unit)
    out = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # Unknown keys and bad values are only warnings to verify; here they are failures.
    assert out.stdout + out.stderr == ""


def test_verify_catches_a_missing_binary(tmp_path: Path) -> None:
    """Guards the test above: unrendered paths do not exist here, and verify says so."""
    broken = tmp_path / "etl-assets-run@.service"
    broken.write_text(
        (UNITS / "etl-assets-run@.service").read_text().replace(INSTALL_ROOT, "/nonexistent")
    )
    out = subprocess.run(
        [
            SYSTEMD_ANALYZE,
            "verify",
            "--man=no",
            str(tmp_path / "etl-assets-run@demo_sales.service"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "/nonexistent/.venv/bin/etl-assets is not executable" in out.stderr


def test_long_running_services() -> None:
    for name, binary in [
        ("etl-assets-daemon.service", "dagster-daemon run"),
        ("etl-assets-webserver.service", "dagster-webserver"),
    ]:
        service = parse(name)["Service"]
        assert service["Restart"] == "on-failure"
        assert service["EnvironmentFile"] == "/etc/etl-assets/env"
        assert service["ExecStart"].startswith(f"{INSTALL_ROOT}/.venv/bin/{binary}")
        assert service["User"] == "etl-assets"
        assert parse(name)["Install"]["WantedBy"] == "multi-user.target"


def test_services_migrate_the_instance_before_they_start() -> None:
    """Started together on an empty instance database, the daemon and the webserver would
    race to create its tables; each unit migrates it first (`verify` above checks the binary)."""
    for name in ("etl-assets-daemon.service", "etl-assets-webserver.service"):
        service = parse(name)["Service"]
        assert service["ExecStartPre"] == f"{INSTALL_ROOT}/.venv/bin/etl-assets instance migrate", name
        text = (UNITS / name).read_text()
        # It needs the instance settings: after EnvironmentFile=, before the service itself.
        assert text.index("EnvironmentFile=") < text.index("ExecStartPre=") < text.index("ExecStart="), name


def test_webserver_binds_to_localhost_by_default() -> None:
    service = parse("etl-assets-webserver.service")["Service"]
    assert "-h ${ETL_WEBSERVER_HOST}" in service["ExecStart"]
    text = (UNITS / "etl-assets-webserver.service").read_text()
    assert "Environment=ETL_WEBSERVER_HOST=127.0.0.1" in text
    # Environment= comes first so the environment file can override it.
    assert text.index("Environment=ETL_WEBSERVER_HOST") < text.index("EnvironmentFile=")


def test_run_service_and_timer() -> None:
    service = parse("etl-assets-run@.service")["Service"]
    assert service["Type"] == "oneshot"
    assert service["ExecStart"] == f"{INSTALL_ROOT}/.venv/bin/etl-assets run %i --latest"
    assert service["EnvironmentFile"] == "/etc/etl-assets/env"
    timer = parse("etl-assets-run@.timer")
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_timer_fires_weekly_at_the_demo_schedule() -> None:
    on_calendar = parse("etl-assets-run@.timer")["Timer"]["OnCalendar"]
    out = subprocess.run(
        [
            SYSTEMD_ANALYZE,
            "calendar",
            "--iterations=3",
            "--base-time=2025-06-01 00:00:00 UTC",
            on_calendar,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"TZ": "UTC", "LC_ALL": "C"},
    )
    assert out.returncode == 0, out.stderr
    elapses = [
        line.split(":", 1)[1].strip()
        for line in out.stdout.splitlines()
        if "Next elapse" in line or "Iter. #" in line
    ]
    # The same instants `etl-assets schedule demo_sales` shows.
    assert elapses == [
        "Mon 2025-06-02 09:00:00 UTC",
        "Mon 2025-06-09 09:00:00 UTC",
        "Mon 2025-06-16 09:00:00 UTC",
    ]
