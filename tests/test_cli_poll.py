"""`async-poller poll` end to end: a real process, real HTTP, the simulator in scaled time."""

from __future__ import annotations

import asyncio
import itertools
import os
import pty
import stat
import sys
from pathlib import Path

import orjson
import pytest

from async_poller.simulator import Simulator

from .conftest import Poll
from .helpers import (
    assert_true_results,
    clean_env,
    ids_arg,
    run_cli,
    simulator_env,
    start_cli,
    true_exit_code,
)

pytestmark = pytest.mark.e2e


def assert_no_token_anywhere(simulator: Simulator, *texts: str | bytes) -> None:
    secrets = {simulator.refresh_token, *simulator.issued_tokens}
    for text in texts:
        blob = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        leaked = [secret for secret in secrets if secret in blob]
        assert not leaked, "a token appeared in the output"


@pytest.mark.simulator(outcomes=(1.0, 0.0, 0.0))
async def test_all_completed_exits_0(simulator: Simulator, poll: Poll) -> None:
    """Every job COMPLETED: one result each, equal to the truth, summary last, exit 0."""
    ids = simulator.create_jobs(20)
    run = await poll(*ids_arg(ids))
    assert run.code == 0, run.stderr
    assert set(run.results) == set(ids)
    assert_true_results(simulator, run.results, ids)
    assert run.events[0]["event"] == "start"
    assert run.events[0]["jobs"] == 20
    assert run.summary["counts"]["COMPLETED"] == 20
    assert run.summary["exit_code"] == 0
    assert run.summary["requests"] == len(simulator.requests)
    assert_no_token_anywhere(simulator, run.stdout, run.stderr)


@pytest.mark.simulator(outcomes=(0.5, 0.3, 0.2))
async def test_some_failed_or_cancelled_exits_1(simulator: Simulator, poll: Poll) -> None:
    """FAILED and CANCELLED jobs give exit 1 and carry the API's reason and instance details."""
    ids = simulator.create_jobs(30)
    run = await poll(*ids_arg(ids))
    assert run.code == 1, run.stderr
    assert_true_results(simulator, run.results, ids)
    failed = [result for result in run.results.values() if result["status"] == "FAILED"]
    assert failed
    assert all(result.get("reason") for result in failed)
    assert all(isinstance(result.get("details"), list) for result in failed)


async def test_transitions_are_ordered_and_never_unknown(simulator: Simulator, poll: Poll) -> None:
    """Each job's transitions chain from null, never show UNKNOWN, and end at its result."""
    ids = simulator.create_jobs(10)
    run = await poll(*ids_arg(ids))
    for job_id in ids:
        steps = [e for e in run.of("transition") if e["job_id"] == job_id]
        assert steps[0]["from"] is None
        assert all(a["to"] == b["from"] for a, b in itertools.pairwise(steps))
        assert "UNKNOWN" not in {step["to"] for step in steps}
        assert steps[-1]["to"] == run.results[job_id]["status"]


async def test_rate_budget_is_never_exceeded(simulator: Simulator, poll: Poll) -> None:
    """With a budget of 20/min, the simulator never sees more than 20 requests in a minute."""
    ids = simulator.create_jobs(40)
    run = await poll("--rate", "20/min", *ids_arg(ids))
    assert run.code == true_exit_code(simulator, ids), run.stderr
    assert len(run.results) == 40
    assert simulator.max_in_window(60.0) <= 20
    assert not [r for r in simulator.requests if r.http_status == 429]


@pytest.mark.simulator(rate_limit=10)
async def test_429_retry_after_is_honoured(simulator: Simulator, poll: Poll) -> None:
    """An API stricter than our budget answers 429: everyone pauses, nothing is lost."""
    ids = simulator.create_jobs(15)
    run = await poll("--rate", "30/min", *ids_arg(ids))
    assert run.code == true_exit_code(simulator, ids), run.stderr
    assert_true_results(simulator, run.results, ids)
    throttles = [r for r in simulator.requests if r.http_status == 429]
    assert throttles
    assert run.summary["throttled"] == len(run.of("throttled")) == len(throttles)
    grace = 1.0  # requests already in flight when the 429 was sent may still arrive
    for throttle in throttles:
        assert throttle.retry_after is not None
        quiet_until = throttle.at + throttle.retry_after
        early = [r for r in simulator.requests if throttle.at + grace < r.at < quiet_until - 1e-6]
        assert not early, "a request arrived during an announced Retry-After pause"


@pytest.mark.simulator(token_ttl=60.0, processing_s=200.0)
async def test_token_expiry_mid_run_is_invisible(simulator: Simulator, poll: Poll) -> None:
    """Access tokens expiring every simulated minute are renewed; every job still completes."""
    ids = simulator.create_jobs(8)
    run = await poll(*ids_arg(ids))
    assert run.code == true_exit_code(simulator, ids), run.stderr
    assert_true_results(simulator, run.results, ids)
    refreshes = [r for r in simulator.requests if r.path.endswith("/user-token/refresh")]
    assert len(refreshes) >= 3
    assert not run.of("poll_error")
    assert_no_token_anywhere(simulator, run.stdout, run.stderr)


async def test_rejected_refresh_token_exits_4_without_leaking(
    simulator: Simulator, poll: Poll
) -> None:
    """A rejected refresh token ends the run at once: exit 4, summary with pending jobs."""
    ids = simulator.create_jobs(5)
    bogus = "rt-bogus-canary-0123456789"
    env = clean_env(LUCIDITY_BASE_URL=simulator.base_url, LUCIDITY_REFRESH_TOKEN=bogus)
    run = await poll(*ids_arg(ids), env=env)
    assert run.code == 4
    assert run.summary["exit_code"] == 4
    assert run.summary["counts"]["pending"] == 5
    assert not run.of("result")
    assert "refresh token was rejected" in run.stderr
    assert bogus not in run.stderr
    assert bogus.encode() not in run.stdout
    assert len(simulator.requests) == 1, "no retry storm after a rejected refresh"


async def test_deadline_gives_timed_out_and_exit_3(simulator: Simulator, poll: Poll) -> None:
    """Jobs not final by the deadline end TIMED_OUT with their last status; exit 3."""
    ids = simulator.create_jobs(5, processing_s=3600.0)
    run = await poll("--deadline", "2m", *ids_arg(ids))
    assert run.code == 3
    assert {r["status"] for r in run.results.values()} == {"TIMED_OUT"}
    assert {r["last_status"] for r in run.results.values()} <= {"QUEUED", "PREPARING", "PROCESSING"}
    assert run.summary["counts"]["TIMED_OUT"] == 5


async def test_unknown_ids_end_not_found(simulator: Simulator, poll: Poll) -> None:
    """Ids the API does not know end NOT_FOUND after repeated 404s; exit 3."""
    ids = simulator.create_jobs(2)
    run = await poll(*ids_arg([*ids, 424242]))
    assert run.code == 3
    assert run.results[424242]["status"] == "NOT_FOUND"
    assert run.results[ids[0]]["status"] in ("COMPLETED", "FAILED", "CANCELLED")


async def test_strict_input_refuses_bad_lines_before_any_request(
    simulator: Simulator, poll: Poll, tmp_path: Path
) -> None:
    """A bad line exits 2 listing it, with nothing on stdout and no request sent."""
    ids = simulator.create_jobs(2)
    source = tmp_path / "ids.txt"
    source.write_bytes(f"{ids[0]}\n12a\n{ids[1]}\n-5\n".encode())
    run = await poll(str(source))
    assert run.code == 2
    assert run.stdout == b""
    assert f"{source}:2:" in run.stderr
    assert f"{source}:4:" in run.stderr
    assert "--skip-invalid" in run.stderr
    assert simulator.requests == []


async def test_skip_invalid_polls_the_rest(
    simulator: Simulator, poll: Poll, tmp_path: Path
) -> None:
    """--skip-invalid emits invalid_input events and polls the valid ids."""
    ids = simulator.create_jobs(2)
    source = tmp_path / "ids.txt"
    source.write_bytes(f"# fleet A\n{ids[0]}\n0x1F\n{ids[1]}\n{ids[0]}\n".encode())
    run = await poll("--skip-invalid", str(source))
    assert set(run.results) == set(ids)
    [bad] = run.of("invalid_input")
    assert (bad["line"], bad["preview"], bad["source"]) == (3, "0x1F", str(source))
    assert (run.events[0]["invalid"], run.events[0]["duplicates"]) == (1, 1)
    assert run.code == true_exit_code(simulator, ids)


async def test_ids_from_stdin_json(simulator: Simulator, poll: Poll) -> None:
    """A saved Agent Install response piped to stdin is read as JSON."""
    ids = simulator.create_jobs(3)
    response = {"success": True, "data": [{"id": job_id} for job_id in ids], "requestId": "r"}
    run = await poll("-", stdin=orjson.dumps(response))
    assert set(run.results) == set(ids)


async def test_no_valid_id_is_a_usage_error(simulator: Simulator, poll: Poll) -> None:
    """Empty input exits 2 with a message and no events."""
    run = await poll("-", stdin=b"# nothing here\n\n")
    assert run.code == 2
    assert run.stdout == b""
    assert "no valid job id" in run.stderr


async def test_access_token_from_the_environment(simulator: Simulator, poll: Poll) -> None:
    """A ready access token (LUCIDITY_ACCESS_TOKEN) is used as is."""
    ids = simulator.create_jobs(2)
    token = simulator.issue_access_token()
    env = clean_env(LUCIDITY_BASE_URL=simulator.base_url, LUCIDITY_ACCESS_TOKEN=token)
    run = await poll(*ids_arg(ids), env=env)
    assert set(run.results) == set(ids)
    assert not [r for r in simulator.requests if r.path.endswith("/refresh")]


async def test_token_command(simulator: Simulator, poll: Poll, tmp_path: Path) -> None:
    """--token-command's output is used as the access token."""
    ids = simulator.create_jobs(2)
    token = simulator.issue_access_token()
    helper = tmp_path / "token.py"
    helper.write_text(f"print({token!r})\n")
    env = clean_env(LUCIDITY_BASE_URL=simulator.base_url)
    run = await poll("--token-command", f"{sys.executable} {helper}", *ids_arg(ids), env=env)
    assert set(run.results) == set(ids), run.stderr


async def test_refresh_token_file_must_be_private(
    simulator: Simulator, poll: Poll, tmp_path: Path
) -> None:
    """A group- or world-readable refresh token file is refused (like ssh); 0600 works."""
    ids = simulator.create_jobs(1)
    token_file = tmp_path / "refresh-token"
    token_file.write_text(simulator.refresh_token + "\n")
    os.chmod(token_file, 0o644)
    env = clean_env(LUCIDITY_BASE_URL=simulator.base_url)
    refused = await poll("--refresh-token-file", str(token_file), *ids_arg(ids), env=env)
    assert refused.code == 2
    assert "chmod 600" in refused.stderr
    os.chmod(token_file, stat.S_IRUSR | stat.S_IWUSR)
    accepted = await poll("--refresh-token-file", str(token_file), *ids_arg(ids), env=env)
    assert set(accepted.results) == set(ids)


async def test_a_systemd_credential_is_accepted(
    simulator: Simulator, poll: Poll, tmp_path: Path
) -> None:
    """`LoadCredential=` files show mode 0440 on tmpfs (an ACL's mask): under
    $CREDENTIALS_DIRECTORY they are accepted (they were refused with an unusable hint)."""
    ids = simulator.create_jobs(1)
    token_file = tmp_path / "lucidity-refresh-token"
    token_file.write_text(simulator.refresh_token + "\n")
    os.chmod(token_file, 0o440)
    env = clean_env(LUCIDITY_BASE_URL=simulator.base_url, CREDENTIALS_DIRECTORY=str(tmp_path))
    run = await poll("--refresh-token-file", str(token_file), *ids_arg(ids), env=env)
    assert set(run.results) == set(ids), run.stderr


async def test_plain_http_to_a_remote_host_is_refused() -> None:
    """http:// to a non-loopback host is refused before anything is sent."""
    env = clean_env(LUCIDITY_BASE_URL="http://api.example.com", LUCIDITY_ACCESS_TOKEN="x-token")
    run = await run_cli("poll", "--id", "5", env=env)
    assert run.code == 2
    assert "allow-insecure-http" in run.stderr


async def test_missing_credentials_is_a_usage_error(simulator: Simulator, poll: Poll) -> None:
    """No credential at all exits 2 with a hint."""
    run = await poll("--id", "5", env=clean_env(LUCIDITY_BASE_URL=simulator.base_url))
    assert run.code == 2
    assert "LUCIDITY_REFRESH_TOKEN" in run.stderr


async def test_output_file_receives_the_events(
    simulator: Simulator, poll: Poll, tmp_path: Path
) -> None:
    """--output appends the events to a file and leaves stdout empty."""
    ids = simulator.create_jobs(2)
    target = tmp_path / "events.jsonl"
    target.write_bytes(b"")
    run = await poll("--output", str(target), *ids_arg(ids))
    assert run.stdout == b""
    lines = [orjson.loads(line) for line in target.read_bytes().splitlines()]
    assert lines[-1]["event"] == "summary"
    assert lines[-1]["exit_code"] == run.code


async def test_version_and_module_entry_point() -> None:
    """`python -m async_poller --version` prints the version."""
    run = await run_cli("--version")
    assert run.code == 0
    assert run.stdout.decode().startswith("async-poller ")


async def test_terminal_stdin_without_sources_is_refused() -> None:
    """With no SOURCE and stdin a terminal, poll exits 2 with a hint instead of blocking."""
    controller, terminal = pty.openpty()
    try:
        env = clean_env(LUCIDITY_ACCESS_TOKEN="x-token")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "async_poller",
            "poll",
            stdin=terminal,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        os.close(controller)
        os.close(terminal)
    assert process.returncode == 2
    assert stdout == b""
    assert b"stdin is a terminal" in stderr


async def test_demo_runs_and_checks_itself() -> None:
    """`async-poller demo` polls its jobs to the end, checks them and exits 0."""
    run = await run_cli("demo", "--jobs", "12", "--time-scale", "120")
    assert run.code == 0, run.stderr
    assert run.summary["total"] == 12
    assert run.summary["counts"]["pending"] == 0
    assert len(run.results) == 12
    assert "matches the simulator's ground truth" in run.stderr


@pytest.mark.simulator(processing_s=3600.0)
async def test_each_event_reaches_a_pipe_while_the_run_goes_on(simulator: Simulator) -> None:
    """stdout is flushed line by line, also when it is a pipe and PYTHONUNBUFFERED is unset
    (cron, systemd, CI): a reader sees the first event while the run is still going."""
    ids = simulator.create_jobs(2)
    env = simulator_env(simulator)
    assert "PYTHONUNBUFFERED" not in env
    scale = str(simulator.config.time_scale)
    process = await start_cli(
        "poll", "--time-scale", scale, "--deadline", "2h", *ids_arg(ids), env=env
    )
    assert process.stdout is not None
    try:
        first = await asyncio.wait_for(process.stdout.readline(), 20)
    except TimeoutError:
        first = b""
    finally:
        still_running = process.returncode is None
        process.kill()
        await process.wait()
    assert first.endswith(b"\n"), "no event reached the pipe while the run went on"
    assert orjson.loads(first)["event"] == "start"
    assert still_running
