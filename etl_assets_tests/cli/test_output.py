"""What `etl-assets` prints: a failed run in a few lines, progress, conventions, colours."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

from etl_assets_tests.helpers import create_orders, make_spec

NY = ZoneInfo("America/New_York")


def blocking_row_count_spec():
    """`shop` with a blocking check that an empty week fails."""
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["retries"] = {"max": 0}
    data["sources"][0]["checks"].append({"type": "row_count", "min": 1, "severity": "error"})
    return type(make_spec()).model_validate(data)


def seed_one_week(url: str) -> None:
    """Orders in the week of 2025-03-02 only; 2025-03-09 is empty."""
    start = dt.datetime(2025, 3, 2, 1, tzinfo=NY)
    create_orders(url, [(i, f"c{i}", "1.00", start + i * dt.timedelta(hours=8)) for i in range(1, 11)])


def test_a_failed_run_is_a_few_lines_naming_pipeline_source_partition_and_check(etl_env, etl_cli) -> None:
    seed_one_week(etl_env["TEST_SOURCE_URL"])
    etl_cli.write_spec(blocking_row_count_spec())
    out = etl_cli("run", "shop", "--from", "2025-03-02", "--to", "2025-03-09")
    assert out.returncode == 1, out.stdout + out.stderr
    text = out.stdout + out.stderr
    assert "Stack Trace" not in text and "dagster._core" not in text
    lines = text.strip().splitlines()
    summary_at = next(i for i, line in enumerate(lines) if line.startswith("run "))
    assert summary_at <= 10, text
    assert "shop orders 2025-03-09: blocking check row_count failed: 0 rows, expected at least 1" in lines, text
    log = next(line for line in lines if line.startswith("log: ")).removeprefix("log: ")
    assert Path(log).is_file()
    assert "Stack Trace" in Path(log).read_text()  # the full story stays in the run's log file


def test_progress_goes_to_stderr_with_json_and_stdout_stays_json(etl_env, etl_cli) -> None:
    seed_one_week(etl_env["TEST_SOURCE_URL"])
    etl_cli.write_spec(make_spec())
    out = etl_cli("run", "shop", "--partition", "2025-03-02", "--progress", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["status"] == "success"
    steps = [line for line in out.stderr.splitlines() if line.startswith("[")]
    assert steps[0] == "[1/5] orders raw 2025-03-02 …"
    assert any(line.startswith("[1/5] orders raw 2025-03-02 … OK 10 rows ") and line.endswith(" s") for line in steps)
    # Every step's start and end is shown, the report's (the run's last line) included.
    assert [line.removesuffix(" …") for line in steps if line.endswith(" …")] == [
        "[1/5] orders raw 2025-03-02", "[2/5] orders normalized 2025-03-02", "[3/5] orders validated 2025-03-02",
        "[4/5] orders loaded 2025-03-02", "[5/5] report 2025-03-02",
    ], out.stderr
    assert any(line.startswith("[5/5] report 2025-03-02 … OK") and line.endswith(" s") for line in steps), out.stderr
    assert len(steps) == 10, out.stderr

    piped = etl_cli("run", "shop", "--partition", "2025-03-02")
    assert piped.returncode == 0, piped.stderr
    assert not any(line.startswith("[") for line in piped.stdout.splitlines() + piped.stderr.splitlines())


def test_the_summary_counts_quarantined_rows_and_a_step_shows_its_own_work(etl_env, etl_cli) -> None:
    start = dt.datetime(2025, 3, 2, 1, tzinfo=NY)
    amounts = ["1.00", "-2.00", "3.00", "-4.00", "5.00"]
    create_orders(
        etl_env["TEST_SOURCE_URL"],
        [(i, f"c{i}", a, start + i * dt.timedelta(hours=8)) for i, a in enumerate(amounts, start=1)],
    )
    data = make_spec().model_dump(by_alias=True, exclude_none=True, mode="json")
    data["sources"][0]["checks"].append({"type": "between", "column": "amount", "min": 0, "severity": "quarantine"})
    etl_cli.write_spec(type(make_spec()).model_validate(data))

    out = etl_cli("run", "shop", "--partition", "2025-03-02")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "  orders           success  extracted 5  inserted 3  updated 0  unchanged 0  deleted 0  quarantined 2" in out.stdout

    js = etl_cli("run", "shop", "--partition", "2025-03-02", "--json")
    orders = json.loads(js.stdout)["sources"]["orders"]
    assert (orders["rows_extracted"], orders["rows_quarantined"], orders["unchanged"]) == (5, 2, 3)

    step = etl_cli("run", "shop", "--partition", "2025-03-02", "--step", "normalized")
    assert step.returncode == 0, step.stdout + step.stderr
    assert "  orders           success  normalized 5  duplicates dropped 0" in step.stdout.splitlines()


def _commands(group, path=()):
    import click

    for name, cmd in group.commands.items():
        yield (*path, name), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))


def test_version_short_help_and_help_for_every_option() -> None:
    import subprocess
    import sys

    from etl_assets.cli import main

    version = subprocess.run([sys.executable, "-m", "etl_assets.cli", "--version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0
    assert version.stdout.startswith("etl-assets, version ")
    short = subprocess.run([sys.executable, "-m", "etl_assets.cli", "-h"], capture_output=True, text=True, check=False)
    assert short.returncode == 0 and "Commands:" in short.stdout
    assert "..." not in short.stdout.split("Commands:", 1)[1]  # no summary cut short
    undocumented = [
        f"{' '.join(path)} {param.opts[0]}"
        for path, cmd in _commands(main)
        if path[0] != "api"  # the job API's own commands are documented with that module
        for param in cmd.params
        if param.param_type_name == "option" and not param.help
    ]
    assert undocumented == []


def test_exit_codes_and_error_style_are_the_same_everywhere(etl_env, etl_cli) -> None:
    etl_cli.write_spec(make_spec())
    for args in (["run", "nope", "--latest"], ["history", "nope"], ["schedule", "nope"], ["jobs", "run", "nope"]):
        out = etl_cli(*args)
        assert (out.returncode, out.stderr.strip()) == (2, "Error: unknown pipeline 'nope' (pipelines: shop)"), args
    bad = etl_cli("run", "shop", "--partition", "2031-01-05")
    assert bad.returncode == 2 and bad.stderr.startswith("Error: shop: '2031-01-05' is not a complete partition key")
    usage = etl_cli("run", "shop", "--bogus")
    assert usage.returncode == 2 and "Error: No such option '--bogus'" in usage.stderr


def test_jobs_logs_accepts_every_run_status() -> None:
    from etl_assets.cli import main

    status = next(p for p in main.commands["jobs"].commands["logs"].params if p.name == "status")
    assert set(status.type.choices) >= {"success", "failed", "partial", "canceled", "queued", "running"}


def test_jobs_without_a_webserver_says_which_url_and_how_to_start_one(etl_env, etl_cli) -> None:
    from etl_assets_tests.stubs import free_port

    etl_cli.write_spec(make_spec())
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["list"], ["run", "shop", "--partition", "2025-03-02"], ["logs", "shop"]):
        out = etl_cli("jobs", "--url", url, *args)
        assert out.returncode == 1, args
        assert out.stderr.strip() == (
            f"Error: no Dagster webserver answers at {url}: start one with `etl-assets dev`, "
            "or point --url (or ETL_WEBSERVER_URL) at the one that runs"
        ), args


def in_terminal(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run `etl-assets ARGS` with a pseudo-terminal as stdin, stdout and stderr."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "etl_assets.cli", *args], env=env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=600), out.decode(errors="replace")


def test_status_words_are_coloured_on_a_terminal_only_and_never_with_no_color(
    etl_env, etl_cli, tmp_path: Path
) -> None:
    import os

    seed_one_week(etl_env["TEST_SOURCE_URL"])
    etl_cli.write_spec(make_spec())
    env = {**os.environ, **etl_env, "ETL_PIPELINES_DIR": str(tmp_path / "pipelines")}
    env.pop("NO_COLOR", None)
    code, text = in_terminal(env, "run", "shop", "--partition", "2025-03-02")
    assert code == 0, text
    assert "\x1b[32mSUCCESS\x1b[0m" in text
    assert "[1/5] orders raw 2025-03-02 …" in text  # progress is on by default on a terminal

    code, text = in_terminal({**env, "NO_COLOR": "1"}, "history", "shop")
    assert code == 0, text
    assert " success " in text and "\x1b[" not in text
    piped = etl_cli("history", "shop")
    assert " success " in piped.stdout and "\x1b[" not in piped.stdout
