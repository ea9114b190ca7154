"""The adapter over Dagster internals: these fail first when an upgrade moves them."""

from __future__ import annotations

import datetime as dt
from itertools import islice
from pathlib import Path

import dagster as dg
import pytest

from etl_assets.core.cron import is_valid_cron as spec_cron_is_valid
from etl_assets.dagster_internal import (
    cron_ticks,
    is_valid_cron,
    run_scheduler_iteration,
    stop_schedule,
)

UTC = dt.UTC

HOURLY_DEFS = """
import dagster as dg


@dg.op
def noop():
    return None


@dg.job
def hello():
    noop()


@dg.schedule(cron_schedule="0 * * * *", job=hello, default_status=dg.DefaultScheduleStatus.RUNNING)
def hourly(context):
    {body}


defs = dg.Definitions(jobs=[hello], schedules=[hourly])
"""


@pytest.mark.parametrize(
    ("cron", "valid"),
    [
        ("0 6 * * 1", True),
        ("*/15 * * * *", True),
        ("0 9 * * 1-5", True),
        ("61 * * * *", False),
        ("0 0 30 2 *", False),
        ("x", False),
    ],
)
def test_is_valid_cron(cron: str, valid: bool) -> None:
    assert is_valid_cron(cron) is valid


@pytest.mark.parametrize(
    "cron",
    ["0 6 * * 1", "*/15 * * * *", "0 9 * * 1-5", "61 * * * *", "0 0 30 2 *", "0 0 31 2 *", "0 0 29 2 *",
     "0 0 30 1,2 *", "x", "0 0 * * * *", "0 6 * *", "@daily", "@hourly", "0 0 L * *", "0 0 * * MON",
     "0 0 1 JAN *", "5-65 * * * *", "0 0 ? * *", "*/0 * * * *", "0 24 * * *", "0 0 * * 7", "0 0 1W * *"],
)
def test_the_spec_accepts_exactly_the_crons_dagster_accepts(cron: str) -> None:
    """Specs validate crons without loading Dagster (core.cron); the scheduler must agree."""
    assert spec_cron_is_valid(cron) is is_valid_cron(cron)


def test_cron_ticks_are_strictly_after_and_local() -> None:
    at_a_tick = dt.datetime(2025, 6, 2, 9, 0, tzinfo=UTC)  # Monday 06:00 in São Paulo
    ticks = list(islice(cron_ticks("0 6 * * 1", "America/Sao_Paulo", at_a_tick), 2))
    assert [t.isoformat() for t in ticks] == [
        "2025-06-09T06:00:00-03:00",
        "2025-06-16T06:00:00-03:00",
    ]


def test_cron_ticks_skip_the_spring_forward_gap_to_its_end() -> None:
    start = dt.datetime(2025, 3, 8, 12, tzinfo=UTC)
    ticks = list(islice(cron_ticks("30 2 * * *", "America/New_York", start), 2))
    assert [t.astimezone(UTC).isoformat() for t in ticks] == [
        "2025-03-09T07:00:00+00:00",
        "2025-03-10T06:30:00+00:00",
    ]


def test_scheduler_iteration_launches_a_due_tick(tmp_path: Path) -> None:
    defs_file = tmp_path / "hourly_defs.py"
    defs_file.write_text(HOURLY_DEFS.format(body="return dg.RunRequest(run_key='k')"))
    with dg.instance_for_test() as instance:
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 6, 2, 9, 30, tzinfo=UTC))
        assert instance.get_runs_count() == 0  # the schedule starts now; 09:00 is in the past
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 6, 2, 10, 1, tzinfo=UTC))
        (run,) = instance.get_runs()
        assert run.job_name == "hello"
        assert run.status == dg.DagsterRunStatus.QUEUED
        assert run.tags["dagster/schedule_name"] == "hourly"
        assert run.tags[".dagster/scheduled_execution_time"] == "2025-06-02T10:00:00+00:00"


def test_scheduler_iteration_raises_what_the_daemon_would_only_log(tmp_path: Path) -> None:
    defs_file = tmp_path / "failing_defs.py"
    defs_file.write_text(HOURLY_DEFS.format(body="raise ValueError('no source today')"))
    with dg.instance_for_test() as instance:
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 6, 2, 9, 30, tzinfo=UTC))
        with pytest.raises(RuntimeError, match="no source today"):
            run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 6, 2, 10, 1, tzinfo=UTC))
        assert instance.get_runs_count() == 0


def test_scheduler_iteration_raises_when_the_code_location_does_not_load(tmp_path: Path) -> None:
    defs_file = tmp_path / "broken_defs.py"
    defs_file.write_text("import dagster as dg\n\nnot_defs = None\n")
    with (
        dg.instance_for_test() as instance, pytest.raises(RuntimeError, match="defs not found"),
        pytest.warns(UserWarning, match="Error loading"),
    ):
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 6, 2, 9, 30, tzinfo=UTC))


def test_stop_schedule_pauses_a_running_schedule(tmp_path: Path) -> None:
    defs_file = tmp_path / "hourly_defs.py"
    defs_file.write_text(HOURLY_DEFS.format(body="return dg.RunRequest(run_key='k')"))
    with dg.instance_for_test() as instance:
        assert stop_schedule(instance, "hourly") is False  # never ticked: no state row yet
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 6, 2, 9, 30, tzinfo=UTC))
        assert stop_schedule(instance, "hourly") is True
        assert stop_schedule(instance, "hourly") is False  # already stopped
        assert stop_schedule(instance, "other") is False
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 6, 2, 10, 1, tzinfo=UTC))
        assert instance.get_runs_count() == 0
        (state,) = instance.all_instigator_state()
        assert state.status.value == "STOPPED"


def test_tick_failures_reads_failed_ticks_once_from_the_tick_history(tmp_path: Path) -> None:
    from etl_assets.dagster_internal import tick_failures

    defs_file = tmp_path / "failing_defs.py"
    defs_file.write_text(HOURLY_DEFS.format(body="raise ValueError('no source today\\nsecond line')"))
    with dg.instance_for_test() as instance:
        run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 6, 2, 9, 30, tzinfo=UTC))
        with pytest.raises(RuntimeError):
            run_scheduler_iteration(instance, defs_file, dt.datetime(2025, 6, 2, 10, 1, tzinfo=UTC))
        (failed,), seen = tick_failures(instance, {})
        assert (failed.kind, failed.name, failed.error) == ("schedule", "hourly", "ValueError: no source today")
        assert failed.timestamp == dt.datetime(2025, 6, 2, 10, tzinfo=UTC).timestamp()
        assert tick_failures(instance, seen) == ([], seen)
