"""`async-poller report`: the table, JSON lines, filters, one job's history, and errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from async_poller._state.store import StateError, StateStore
from async_poller.cli.app import build_parser, subcommands
from async_poller.cli.report_run import run_report
from async_poller.events import event_id

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def report(*argv: str) -> int:
    """Parse `argv` as `async-poller report` does, and run it."""
    return run_report(build_parser().parse_args(["report", *argv]))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state file with one job of each kind, as a few runs would leave it."""
    path = tmp_path / "state.db"
    with StateStore.open(path) as store:
        for at, status in [(T0, "QUEUED"), (T0 + 60, "PROCESSING"), (T0 + 120, "COMPLETED")]:
            store.record_poll(11, at, status)
        store.record_result(11, "COMPLETED", T0 + 120, event_id=event_id(11, "COMPLETED"))
        store.record_poll(22, T0, "PROCESSING")
        store.record_poll(22, T0 + 60, "FAILED")
        store.record_result(
            22,
            "FAILED",
            T0 + 60,
            event_id=event_id(22, "FAILED"),
            reason="disk full\non /dev/sda1\x1b[31m, and a much longer explanation after that",
            details=[{"instance": "i-1", "error": "ENOSPC"}],
        )
        store.mark_emitted([11, 22])
        store.record_poll(33, T0, "PROCESSING")
        store.record_result(33, "TIMED_OUT", T0 + 540, event_id=event_id(33, "TIMED_OUT"))
        store.record_poll(4444, T0 + 5, "QUEUED")
    return path


def test_table_lists_jobs_by_status_with_counts(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table has aligned columns, one row per job by status, and counts at the bottom."""
    assert 0 == report("--state", str(state))
    lines = capsys.readouterr().out.splitlines()
    assert [
        "JOB_ID  STATUS     LAST_STATUS  POLLS  FIRST_SEEN            LAST_SEEN             REASON",
        "    11  COMPLETED  COMPLETED        3  2027-01-15T08:00:00Z  2027-01-15T08:02:00Z",
        "    22  FAILED     FAILED           2  2027-01-15T08:00:00Z  2027-01-15T08:01:00Z  "
        "disk full on /dev/sda1 [31m, and a mu...",
        "    33  TIMED_OUT  PROCESSING       1  2027-01-15T08:00:00Z  2027-01-15T08:09:00Z",
        "  4444  pending    QUEUED           1  2027-01-15T08:00:05Z  2027-01-15T08:00:05Z",
        "",
        "4 jobs: COMPLETED 1, FAILED 1, TIMED_OUT 1, pending 1",
    ] == lines


def test_jsonl_has_one_object_per_job(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--format jsonl` writes one JSON object per job, with full timestamps and details."""
    assert 0 == report("--state", str(state), "--format", "jsonl")
    records = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [11, 22, 33, 4444] == [record["job_id"] for record in records]
    assert {
        "job_id": 22,
        "status": "FAILED",
        "last_status": "FAILED",
        "polls": 2,
        "first_seen": "2027-01-15T08:00:00.000Z",
        "last_seen": "2027-01-15T08:01:00.000Z",
        "result_at": "2027-01-15T08:01:00.000Z",
        "reason": "disk full\non /dev/sda1\x1b[31m, and a much longer explanation after that",
        "details": [{"instance": "i-1", "error": "ENOSPC"}],
        "event_id": event_id(22, "FAILED"),
        "emitted": True,
    } == records[1]
    assert ("pending", None) == (records[3]["status"], records[3]["result_at"])


def test_status_filter_gives_the_audit_trail(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--status` keeps only jobs with those results, in any letter case."""
    assert 0 == report(
        "--state", str(state), "--status", "failed,TIMED_OUT,Unknown", "--format", "jsonl"
    )
    assert [22, 33] == [
        orjson.loads(line)["job_id"] for line in capsys.readouterr().out.splitlines()
    ]
    assert 0 == report("--state", str(state), "--status", "pending")
    assert "1 jobs: pending 1" == capsys.readouterr().out.splitlines()[-1]


def test_an_unknown_status_is_a_usage_error(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt status exits 2 and lists the valid ones."""
    with pytest.raises(SystemExit) as caught:
        report("--state", str(state), "--status", "FAILED,DONE")
    assert 2 == caught.value.code
    assert "unknown status 'DONE'; choose from COMPLETED, FAILED" in capsys.readouterr().err


def test_job_shows_its_history(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--job` prints one job's fields and every transition with its time."""
    assert 0 == report("--state", str(state), "--job", "11")
    out = capsys.readouterr().out
    assert "status      COMPLETED\n" in out
    assert out.endswith(
        "history:\n"
        "  2027-01-15T08:00:00.000Z  -           ->  QUEUED\n"
        "  2027-01-15T08:01:00.000Z  QUEUED      ->  PROCESSING\n"
        "  2027-01-15T08:02:00.000Z  PROCESSING  ->  COMPLETED\n"
    )


def test_job_as_jsonl_carries_its_history(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--job --format jsonl` is one object with the history as a list."""
    assert 0 == report("--state", str(state), "--job", "22", "--format", "jsonl")
    (line,) = capsys.readouterr().out.splitlines()
    assert [
        {"at": "2027-01-15T08:00:00.000Z", "from": None, "to": "PROCESSING"},
        {"at": "2027-01-15T08:01:00.000Z", "from": "PROCESSING", "to": "FAILED"},
    ] == orjson.loads(line)["history"]


def test_an_unknown_job_exits_1(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A job the state file does not know is said on stderr, with exit 1 and no output."""
    assert 1 == report("--state", str(state), "--job", "99")
    captured = capsys.readouterr()
    assert ("", f"async-poller: job 99 is not in {state}\n") == (captured.out, captured.err)


def test_a_missing_state_file_is_an_error_and_not_created(tmp_path: Path) -> None:
    """Reporting on a file that does not exist fails (exit 2 via StateError) and creates nothing."""
    with pytest.raises(StateError, match="does not exist"):
        report("--state", str(tmp_path / "state.db"))
    assert [] == list(tmp_path.iterdir())


def test_report_works_while_a_run_holds_the_lock(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report takes no lock, so it reads the state file during a run."""
    with StateStore.open(state):
        assert 0 == report("--state", str(state), "--status", "COMPLETED")
    assert "1 jobs: COMPLETED 1" == capsys.readouterr().out.splitlines()[-1]


def test_an_empty_state_file_reports_no_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state file without jobs gives just the count line."""
    StateStore.open(tmp_path / "state.db").close()
    assert 0 == report("--state", str(tmp_path / "state.db"))
    assert "0 jobs\n" == capsys.readouterr().out


def test_every_flag_has_help() -> None:
    """Each flag of the report command is documented in `--help`."""
    parser = subcommands(build_parser())["report"]
    for action in parser._actions:
        assert action.help, action.option_strings


def test_report_does_not_import_aiohttp() -> None:
    """The report command stays light: no HTTP stack is loaded."""
    code = "import sys, async_poller.cli.report; sys.exit('aiohttp' in sys.modules)"
    assert 0 == subprocess.run([sys.executable, "-c", code], check=False).returncode


@pytest.mark.parametrize("output", ["table", "jsonl"])
def test_a_closed_pipe_ends_the_report_quietly(state: Path, output: str) -> None:
    """`report ... | head` with the reader gone: exit 0 and nothing on stderr (it printed an
    internal-error traceback)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "async_poller", "report", "--state", str(state)),
                "--format",
                output,
            ],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (0, "") == (done.returncode, done.stderr)


def test_a_state_file_on_a_read_only_mount_can_be_reported(state: Path) -> None:
    """A state file on a read-only mount (a backup, a snapshot) is read as immutable: SQLite
    cannot create its WAL index there, which made the report fail."""
    directory = str(state.parent)
    script = (
        f"mount --bind {directory} {directory} && mount -o remount,bind,ro {directory} "
        f"|| exit 99; exec {sys.executable} -m async_poller report --state {state} --format jsonl"
    )
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode == 99 or "unshare:" in done.stderr:
        pytest.skip(f"no private read-only mount here: {done.stderr.strip()}")
    assert 0 == done.returncode, done.stderr
    assert [11, 22, 33, 4444] == sorted(
        orjson.loads(line)["job_id"] for line in done.stdout.splitlines()
    )
