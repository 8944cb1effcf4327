"""`poll --state` across runs: resume, report only what changed, locking, kill -9, metrics."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from async_poller import poll_jobs
from async_poller._state.store import StateStore
from async_poller.clock import SystemClock
from async_poller.config import Config, Credentials
from async_poller.errors import StateError
from async_poller.events import Result
from async_poller.outcome import TERMINAL
from async_poller.redact import Secret
from async_poller.simulator import Simulator, SimulatorConfig

from .conftest import TIME_SCALE, Poll
from .helpers import clean_env, ids_arg, run_cli, simulator_env, start_cli, true_exit_code

pytestmark = pytest.mark.e2e

STATUS_PATH = "/external/client/api/v1/agent/install/status"


def status_polls(simulator: Simulator, since: float = -1.0) -> list[int]:
    return [
        r.job_id
        for r in simulator.requests
        if r.path == STATUS_PATH and r.at > since and r.job_id is not None
    ]


async def test_resume_skips_final_jobs_and_reports_only_changes(
    simulator: Simulator, poll: Poll, tmp_path: Path
) -> None:
    """Run 2 polls only what run 1 left unfinished; results are emitted once across runs."""
    state = tmp_path / "state.db"
    quick = simulator.create_jobs(4, processing_s=10.0)
    slow = simulator.create_jobs(3, processing_s=400.0)
    first = await poll("--state", str(state), "--deadline", "3m", *ids_arg(quick + slow))
    assert first.code == 3
    assert {first.results[j]["status"] for j in slow} == {"TIMED_OUT"}
    finished_first = {j for j, r in first.results.items() if r["status"] != "TIMED_OUT"}
    assert finished_first == set(quick)

    boundary = simulator.clock.now()
    second = await poll("--state", str(state), *ids_arg(quick + slow))
    assert second.code == true_exit_code(simulator, quick + slow), second.stderr
    assert set(second.results) == set(slow), "final results are emitted once across runs"
    assert not set(status_polls(simulator, since=boundary)) & set(quick)
    assert second.events[0]["jobs"] == 7
    assert sum(v for k, v in second.summary["counts"].items() if k != "pending") == 7
    first_seen = [e for e in second.of("transition") if e["job_id"] in slow][:3]
    assert first_seen, "the slow jobs moved on in the second run"
    assert all(e["from"] is not None for e in first_seen), "transitions are relative to the store"


@pytest.mark.simulator(time_scale=600.0)
async def test_event_id_is_the_same_in_two_runs_on_one_state_file(
    simulator: Simulator, poll: Poll, tmp_path: Path
) -> None:
    """Two separate processes on the same state file that each end a job the same way emit
    the same `event_id` for it, so a consumer can tell the second result is no news."""
    state = tmp_path / "state.db"
    ids = simulator.create_jobs(2, processing_s=36_000.0)
    runs = [await poll("--state", str(state), "--deadline", "2m", *ids_arg(ids)) for _ in "ab"]
    assert [run.code for run in runs] == [3, 3], runs[-1].stderr
    first, second = (
        {j: (r["status"], r["event_id"]) for j, r in run.results.items()} for run in runs
    )
    assert set(first) == set(ids)
    assert {status for status, _ in first.values()} == {"TIMED_OUT"}
    assert second == first


@pytest.mark.simulator(time_scale=600.0)
async def test_a_result_stored_but_not_written_is_written_next_run_with_its_event_id(
    simulator: Simulator, poll: Poll, tmp_path: Path
) -> None:
    """A run that stops right after a result was handed over, before the consumer asked for
    the next event (a crash while writing it), leaves it stored but not marked written: the
    next run writes it, with the same `event_id`, without polling the job again; the run
    after that does not write it again."""
    state = tmp_path / "state.db"
    [quick] = simulator.create_jobs(1, outcome="COMPLETED", queued_s=0.0, processing_s=0.0)
    slow = simulator.create_jobs(1, processing_s=36_000.0)
    settings = Config(
        credentials=Credentials(refresh_token=Secret(simulator.refresh_token)),
        base_url=simulator.base_url,
        state_file=state,
        deadline=600.0,
        seed=1,
    )
    clock = SystemClock(scale=simulator.config.time_scale)
    crashed: Result | None = None
    async for event in poll_jobs([quick, *slow], settings, clock=clock):
        if isinstance(event, Result):
            crashed = event
            break  # the consumer never asks for the next event
    assert crashed is not None
    assert (crashed.job_id, crashed.status) == (quick, "COMPLETED")
    with StateStore.open(state, readonly=True) as store:
        stored = store.load([quick])[quick]
    assert (stored.result, stored.emitted) == ("COMPLETED", False)

    boundary = simulator.clock.now()
    after = await poll("--state", str(state), "--deadline", "2m", *ids_arg([quick, *slow]))
    assert after.code == 3, after.stderr
    rewritten = after.results[quick]
    assert (rewritten["status"], rewritten["event_id"]) == ("COMPLETED", crashed.event_id)
    assert quick not in status_polls(simulator, since=boundary)
    again = await poll("--state", str(state), "--deadline", "2m", *ids_arg([quick, *slow]))
    assert again.code == 3, again.stderr
    assert set(again.results) == set(slow), "a written result is not written again"


@pytest.mark.simulator(processing_s=120.0)
async def test_once_with_state_converges(simulator: Simulator, poll: Poll, tmp_path: Path) -> None:
    """--once runs exit 3 while a job they polled is under way (as the simulator answered
    it), then the exit code of the whole input; a job final in the store is not polled."""
    state = tmp_path / "state.db"
    ids = simulator.create_jobs(5)
    truth = {job.id: job for job in simulator.truth()}
    codes: list[int] = []
    for _ in range(60):
        boundary = simulator.clock.now()
        run = await poll("--once", "--state", str(state), *ids_arg(ids))
        polled = [(r.job_id, r.at) for r in simulator.requests if r.at > boundary and r.job_id]
        under_way = [job for job, at in polled if truth[job].status_at(at) not in TERMINAL]
        assert polled, "a --once run polls every job not final yet"
        expected = 3 if under_way else true_exit_code(simulator, ids)
        assert run.code == expected, (under_way, run.stderr)
        codes.append(run.code)
        if run.code != 3:
            break
        await asyncio.sleep(0.3)
    assert 3 in codes, "the first run found the jobs under way (they take two minutes)"
    assert codes[-1] == true_exit_code(simulator, ids)
    assert run.summary["counts"]["pending"] == 0


async def test_second_run_on_a_locked_state_file_exits_5(
    simulator: Simulator, poll: Poll, tmp_path: Path
) -> None:
    """While one run holds the state file, another exits 5 at once and sends nothing."""
    state = tmp_path / "state.db"
    ids = simulator.create_jobs(3, processing_s=36_000.0)
    holder = asyncio.create_task(poll("--state", str(state), "--deadline", "10h", *ids_arg(ids)))
    for _ in range(600):  # the holder has the state file once it polls; 30 s at most
        if status_polls(simulator) or holder.done():
            break
        await asyncio.sleep(0.05)
    assert status_polls(simulator), "the first run never started polling"
    async with Simulator(SimulatorConfig(time_scale=TIME_SCALE)) as other:
        env = clean_env(
            LUCIDITY_BASE_URL=other.base_url, LUCIDITY_REFRESH_TOKEN=other.refresh_token
        )
        locked = await run_cli("poll", "--state", str(state), *ids_arg(ids), env=env)
        assert locked.code == 5
        assert locked.stdout == b""
        assert "in use by another async-poller run" in locked.stderr
        assert other.requests == []
    assert not holder.done(), "the first run held the state file all along"
    holder.cancel()
    await asyncio.gather(holder, return_exceptions=True)


async def test_damaged_state_file_exits_2_and_is_kept(
    simulator: Simulator, poll: Poll, tmp_path: Path
) -> None:
    """A corrupt state file is refused with exit 2 and left exactly as it was."""
    state = tmp_path / "state.db"
    garbage = b"this is not a database\n" * 100
    state.write_bytes(garbage)
    run = await poll("--state", str(state), "--id", "5")
    assert run.code == 2
    assert run.stdout == b""
    assert "HINT" in run.stderr
    assert state.read_bytes() == garbage
    assert simulator.requests == []


async def test_report_shows_the_audit_trail(
    simulator: Simulator, poll: Poll, tmp_path: Path
) -> None:
    """`report --status FAILED` lists the failed jobs with their reasons."""
    state = tmp_path / "state.db"
    failed = simulator.create_jobs(2, outcome="FAILED")
    completed = simulator.create_jobs(2, outcome="COMPLETED")
    run = await poll("--state", str(state), *ids_arg(failed + completed))
    assert run.code == 1
    report = await run_cli(
        "report", "--state", str(state), "--status", "FAILED", "--format", "jsonl"
    )
    assert report.code == 0, report.stderr
    rows = [orjson.loads(line) for line in report.stdout.splitlines()]
    assert {row["job_id"] for row in rows} == set(failed)
    assert all(row["reason"] for row in rows)
    table = await run_cli("report", "--state", str(state))
    assert table.code == 0
    assert str(failed[0]) in table.stdout.decode()


async def test_metrics_file_is_written_and_parses(
    simulator: Simulator, poll: Poll, tmp_path: Path
) -> None:
    """--metrics-file writes Prometheus text that prometheus_client parses back."""
    metrics = tmp_path / "async_poller.prom"
    ids = simulator.create_jobs(3, outcome="COMPLETED")
    run = await poll("--metrics-file", str(metrics), *ids_arg(ids))
    assert run.code == 0
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    jobs = {s.labels["status"]: s.value for s in families["async_poller_jobs"].samples}
    assert jobs["COMPLETED"] == 3
    requests = sum(s.value for s in families["async_poller_requests"].samples)
    assert requests == run.summary["requests"]
    assert "async_poller_last_success_timestamp_seconds" in families


async def _run_and_kill(
    args: list[str], env: dict[str, str], kill_after: float, *, from_start: bool
) -> tuple[bytes, int]:
    """Run the CLI and SIGKILL it `kill_after` seconds after it started, or, `from_start`,
    after its `start` line: on a loaded machine a slow start-up would otherwise use up
    every round before the first poll."""
    process = await start_cli(*args, env=env)
    assert process.stdout is not None
    first = await asyncio.wait_for(process.stdout.readline(), 30) if from_start else b""
    reading = asyncio.create_task(process.stdout.read())
    done, _ = await asyncio.wait({reading}, timeout=kill_after)
    if not done:
        process.send_signal(signal.SIGKILL)
    stdout = first + await reading  # EOF comes once the process is gone
    return stdout, await process.wait()


@pytest.mark.simulator(processing_s=120.0, spread=0.8)
async def test_kill_9_at_random_moments_loses_nothing(simulator: Simulator, tmp_path: Path) -> None:
    """Across many runs killed with SIGKILL at random moments (one in five while starting up,
    the rest while polling), every job ends with its true status, never two different ones,
    and a job final in the store is never polled again."""
    state = tmp_path / "state.db"
    ids = simulator.create_jobs(40)
    truth = {job.id: job.final_status for job in simulator.truth()}
    env = simulator_env(simulator)
    args = ["poll", "--time-scale", str(TIME_SCALE), "--state", str(state), *ids_arg(ids)]
    rng = random.Random(4)
    results: dict[int, set[tuple[str, str]]] = {}
    rounds = kills = 0
    while rounds < 60:
        rounds += 1
        final_before = _final_jobs(state)
        boundary = simulator.clock.now()
        during_start_up = rng.random() < 0.2
        stdout, code = await _run_and_kill(
            args,
            env,
            kill_after=rng.uniform(0.0, 0.5) if during_start_up else rng.uniform(0.05, 1.2),
            from_start=not during_start_up,
        )
        complete = stdout[: stdout.rfind(b"\n") + 1]  # a kill may cut the last line short
        lines: list[dict[str, Any]] = [orjson.loads(line) for line in complete.splitlines()]
        for event in lines:
            if event["event"] == "result":
                results.setdefault(event["job_id"], set()).add((event["status"], event["event_id"]))
        assert not set(status_polls(simulator, since=boundary)) & final_before, (
            "a job already final in the state file was polled again"
        )
        if code == -signal.SIGKILL:
            kills += 1
        elif lines and lines[-1]["event"] == "summary" and lines[-1]["counts"]["pending"] == 0:
            break
    assert kills >= 5, "too few runs were killed to mean anything"
    assert all(len(seen) == 1 for seen in results.values()), "a job got two different results"
    assert {job_id: next(iter(seen))[0] for job_id, seen in results.items()} == truth


def _final_jobs(state: Path) -> set[int]:
    """The jobs final in `state`. A run killed while it created the file leaves one with no
    schema yet: nothing is final there, and the next run fills it."""
    if not state.exists():
        return set()
    try:
        with StateStore.open(state, readonly=True) as store:
            return {job.job_id for job in store.jobs() if job.final}
    except StateError as error:
        if "holds no async-poller data" not in str(error):
            raise
        return set()


def _odd_state(path: Path, damage: str) -> None:
    """A state file with one stored job, then `damage` done to it by hand."""
    with StateStore.open(path) as store:
        store.record_poll(1, 1_800_000_000.0, "QUEUED")
        store.record_result(1, "TIMED_OUT", 1_800_000_010.0, event_id="e", details=[1])
    db = sqlite3.connect(path)
    db.execute(damage)
    db.commit()
    db.close()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("PRAGMA user_version = -3", "unknown schema version (-3)"),
        ("UPDATE jobs SET details = '{not json'", "details of job 1 are not JSON"),
        ("UPDATE jobs SET first_seen = 'yesterday'", "value of the wrong type"),
        ("UPDATE jobs SET result = 'EXPLODED'", "value of the wrong type"),
    ],
    ids=["negative-version", "bad-json", "text-time", "unknown-result"],
)
@pytest.mark.parametrize("command", ["poll", "report"])
async def test_odd_state_files_are_a_clear_error_and_left_untouched(
    tmp_path: Path, damage: str, message: str, command: str
) -> None:
    """Valid SQLite with an odd user_version or a row nobody wrote: exit 2 with a message
    that names the problem, no traceback, and the file byte for byte as it was."""
    path = tmp_path / "state.db"
    _odd_state(path, damage)
    before = path.read_bytes()
    if command == "poll":
        env = clean_env(LUCIDITY_BASE_URL="http://127.0.0.1:9", LUCIDITY_REFRESH_TOKEN="r" * 20)
        run = await run_cli("poll", "--state", str(path), "--id", "1", env=env)
    else:
        run = await run_cli("report", "--state", str(path), "--format", "jsonl")
    assert 2 == run.code, run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert b"" == run.stdout
    assert before == path.read_bytes()
