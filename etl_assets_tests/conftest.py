"""Shared fixtures: throwaway databases on the real PostgreSQL server, storage, specs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from etl_assets.spec import PipelineSpec
from etl_assets_tests.helpers import ADMIN_URL, Databases, run_cli, spec_yaml  # noqa: F401
from etl_assets_tests.stubs import json_api, slack_stub, smtp_stub  # noqa: F401  (shared fixtures)

# The session's one browser, for e2e/ and api/ alike.
pytest_plugins = ["etl_assets_tests.browser"]



# Scratch space in memory where the machine has room for it: Dagster's test instances commit
# every event to SQLite, and on a disk each commit waits for a sync, about a third of a
# typical test's time. tmp_path, tempfile and the child processes' TMPDIR all follow it.
MEMORY_DIR, MEMORY_DIR_MIN_FREE = Path("/dev/shm"), 4 << 30


def pytest_configure(config: pytest.Config) -> None:
    if "PYTEST_DEBUG_TEMPROOT" in os.environ or not MEMORY_DIR.is_dir() or not os.access(MEMORY_DIR, os.W_OK):
        return
    if shutil.disk_usage(MEMORY_DIR).free < MEMORY_DIR_MIN_FREE:
        return
    root = MEMORY_DIR / "etl-assets-tests"
    root.mkdir(exist_ok=True)
    tempfile.tempdir = str(root)
    os.environ["TMPDIR"] = str(root)


# What makes a test need long-running services (a Dagster webserver or daemon, a browser,
# Celery workers): `make test-fast` leaves these out with `-m "not services"`.
SERVICE_FIXTURES = {"browser", "page", "stack", "webserver", "start_daemon", "services", "celery_workers"}
SERVICE_NAMES = {"DagsterServices", "Stack", "stop_process_groups"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        names = set(vars(module)) if module is not None else set()
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())) or SERVICE_NAMES & names:
            item.add_marker(pytest.mark.services)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skipped test is a failed test here: every service and extra the suite needs is installed by CI."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, which this suite does not allow: {reason}"


@pytest.fixture
def databases() -> Iterator[Databases]:
    dbs = Databases()
    yield dbs
    dbs.drop_all()


@pytest.fixture
def warehouse_url(databases: Databases) -> str:
    return databases.new("etl_wh")


@pytest.fixture
def source_url(databases: Databases) -> str:
    return databases.new("etl_src")


@pytest.fixture
def etl_env(tmp_path: Path, warehouse_url: str, source_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment a run sees: storage in tmp, a fresh warehouse and source database."""
    env = {
        "ETL_HOME": str(tmp_path / "home"),
        "ETL_STORAGE_DIR": str(tmp_path / "storage"),
        "ETL_WAREHOUSE_URL": warehouse_url,
        "TEST_SOURCE_URL": source_url,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def etl_cli(etl_env: dict[str, str], tmp_path: Path):
    """Run `etl-assets ARGS` with the test's environment, in this process (`run_cli`).

    Specs written with `write_spec` are the pipelines it knows (ETL_PIPELINES_DIR).
    """
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir(exist_ok=True)
    env = {**os.environ, **etl_env, "ETL_PIPELINES_DIR": str(pipelines)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return run_cli(env, *args)

    def write_spec(spec: PipelineSpec) -> None:
        data = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
        (pipelines / f"{spec.name}.yaml").write_text(spec_yaml(data))

    run.write_spec = write_spec  # type: ignore[attr-defined]
    return run
