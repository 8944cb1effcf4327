"""The fault suite: a few hundred jobs per fault family, through the CLI, in scaled time.

Each scenario starts the simulator with a `FaultPlan`, runs `async-poller poll` as a real
process against it, and checks the same invariants with `assert_invariants`: one result per
valid id, equal to the simulator's ground truth unless the deadline makes TIMED_OUT
legitimate; in the simulator's own request record, no rate window over the client's budget
and no request inside an announced Retry-After pause; early retries within the retry budget;
only valid events on stdout; the exit code of the contract; no traceback; and no token
anywhere the run wrote.

Select it with `pytest -m faults`. With `FAULT_REPORT=PATH` in the environment, the figures
of every scenario run are written to PATH as a markdown table.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import math
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from async_poller.config import Config, Credentials
from async_poller.redact import Secret
from async_poller.simulator import FaultPlan, JobTruth, RequestRecord, Simulator, SimulatorConfig

from .conftest import TIME_SCALE
from .helpers import CliRun, clean_env, early_retries, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
STATUS_PATH = "/external/client/api/v1/agent/install/status"
UNKNOWN_IDS = (4_242_424_242, 9_223_372_036_854_775_807)
"""Valid ids the simulator never issued: they must end NOT_FOUND."""
LIFECYCLES: dict[str, Any] = {
    "queued_s": 30.0,
    "preparing_s": 10.0,
    "processing_s": 40.0,
    "spread": 0.3,
}
"""Jobs of about 80 simulated seconds, mostly QUEUED while the CLI starts (a few tens of
simulated seconds after they were created), all done within a few real seconds."""
MAX_DELAY = "60s"
"""`--max-delay`: half the default, so that the last job is seen final sooner."""
IN_FLIGHT_GRACE_S = 1.0 / 60.0
"""Real seconds after a 429 during which requests already in flight may still arrive."""
DEADLINE_SLACK_S = 5.0 / 60.0
"""Real seconds before the deadline after which an answer may no longer reach the client."""
DATE_FORMS = ("http_date", "rfc850_date", "asctime_date")
DEFAULTS = Config(credentials=Credentials(access_token=Secret("unused")))
"""The client's settings the suite leaves at their defaults."""
MAX_NOT_FOUND = DEFAULTS.max_not_found
"""404 answers in a row after which a job ends NOT_FOUND."""
MALFORMED = frozenset(
    {"truncated_json", "html_error", "oversized_body", "wrong_id", "unknown_status"}
)
"""Faults whose answers the client takes as malformed (`bad_response`)."""


@dataclass(frozen=True)
class Scenario:
    """One fault family: what the simulator does wrong and how the client is set up."""

    name: str
    plan: FaultPlan = field(default_factory=FaultPlan)
    jobs: int = 200
    seed: int = 1
    """Seeds the simulator and the client's jitter. The faults of the Nth request to an
    endpoint depend on the seed alone, so the seeds here are ones that bring every kind of
    the plan within the first few dozen requests, however the timing goes."""
    sim_rate: int = 600
    """The simulator's rate limit per minute."""
    rate: int = 500
    """The client's `--rate` per minute."""
    scale: float = TIME_SCALE
    deadline: float | None = None
    """`--deadline` in seconds: jobs not seen final by then legitimately end TIMED_OUT."""
    long_jobs: int = 0
    """Extra jobs that run for hours: with a deadline, they must end TIMED_OUT."""
    sim: Mapping[str, Any] = field(default_factory=dict)
    """Other `SimulatorConfig` settings."""
    files: bool = False
    """Also write `--state` and `--metrics-file`, and log at debug level (more to leak into)."""
    messy_input: bool = False
    """Read ids from a file with unknown ids, duplicates and invalid lines (`--skip-invalid`)."""
    restart_after: int | None = None
    """Restart the simulator once it has seen this many requests."""
    every_kind: bool = True
    """Every fault kind of the plan must have happened at least once."""


@dataclass(frozen=True)
class Figures:
    """What one scenario cost, for the report."""

    name: str
    jobs: int
    requests: int
    retries: int
    throttles: int
    max_in_window: int
    limit: int
    wall_s: float


@dataclass
class Outcome:
    """One scenario run: the simulator (stopped, its records kept), the CLI run, and files."""

    scenario: Scenario
    sim: Simulator
    run: CliRun
    valid_ids: list[int]
    workdir: Path
    wall_s: float
    files_seen: dict[str, bool]
    """Every file seen under `workdir` during the run, and whether a token was in it."""
    events: list[dict[str, Any]] = field(init=False)
    """stdout as events, each validated against the schema (once: that takes a while)."""

    def __post_init__(self) -> None:
        assert "Traceback" not in self.run.stderr, self.run.stderr[-3000:]
        self.events = self.run.events

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event"] == kind]

    @property
    def summary(self) -> dict[str, Any]:
        assert self.events[-1]["event"] == "summary", "summary must be the last event"
        return self.events[-1]


def _throttle_kinds(*forms: str) -> list[str]:
    return [f"http_{code}_retry_after_{form}" for form in forms for code in (429, 503)]


_EVERY_STATUS_FAULT = {
    **dict.fromkeys(("http_500", "http_502", "http_503", "http_504"), 0.01),
    **dict.fromkeys(_throttle_kinds("seconds", *DATE_FORMS, "invalid"), 0.0005),
    **dict.fromkeys(("hang", "slow_body", "reset_before", "reset_mid_body"), 0.005),
    **dict.fromkeys(("truncated_json", "html_error", "oversized_body"), 0.01),
    **dict.fromkeys(("wrong_id", "unknown_status", "status_backwards"), 0.01),
}

SCENARIOS = [
    Scenario(
        "server_errors",
        FaultPlan(rates={"http_500": 0.05, "http_502": 0.05, "http_503": 0.05, "http_504": 0.05}),
        sim={"envelope": "B"},
    ),
    Scenario(
        "retry_after_seconds",
        FaultPlan(rates=dict.fromkeys(_throttle_kinds("seconds"), 0.005), retry_after_s=20.0),
        seed=30,
    ),
    Scenario(
        "retry_after_dates",
        FaultPlan(rates=dict.fromkeys(_throttle_kinds(*DATE_FORMS), 0.004), retry_after_s=10.0),
        seed=2932,
        sim={"envelope": "C"},
    ),
    Scenario(
        "retry_after_invalid",
        FaultPlan(rates=dict.fromkeys(_throttle_kinds("invalid"), 0.005)),
        seed=30,
    ),
    Scenario("rate_limited", sim_rate=120, rate=300),
    Scenario(
        "tight_budget",
        FaultPlan(rates={"http_503": 0.05}),
        jobs=150,
        sim_rate=50,
        rate=45,
        scale=240.0,
        sim={"queued_s": 120.0, "preparing_s": 60.0, "processing_s": 240.0},
    ),
    Scenario("hang", FaultPlan(rates={"hang": 0.05})),
    Scenario("slow_body", FaultPlan(rates={"slow_body": 0.05}, slow_body_s=16.0)),
    Scenario("resets", FaultPlan(rates={"reset_before": 0.05, "reset_mid_body": 0.05})),
    Scenario(
        "bad_bodies",
        FaultPlan(rates={"truncated_json": 0.05, "html_error": 0.05, "oversized_body": 0.05}),
        files=True,
    ),
    Scenario(
        "misreported_jobs",
        FaultPlan(rates={"wrong_id": 0.05, "unknown_status": 0.05, "status_backwards": 0.1}),
        sim={"envelope": "B"},
    ),
    Scenario(
        "token_faults",
        FaultPlan(rates={"token_500": 0.3, "token_hang": 0.2}),
        jobs=150,
        deadline=300.0,
        long_jobs=10,
        sim={"token_ttl": 60.0},
        files=True,
    ),
    Scenario("restart", FaultPlan(rates={"http_503": 0.02}), restart_after=150, files=True),
    Scenario(
        "everything",
        FaultPlan(rates={**_EVERY_STATUS_FAULT, "token_500": 0.1, "token_hang": 0.05}),
        jobs=250,
        deadline=360.0,
        long_jobs=5,
        sim={"token_ttl": 120.0, "unknown_rate": 0.05},
        files=True,
        messy_input=True,
        every_kind=False,
    ),
]


@pytest.fixture(scope="module")
def figures() -> Iterator[list[Figures]]:
    """Collects every scenario's figures; writes them to $FAULT_REPORT at the end, if set."""
    collected: list[Figures] = []
    yield collected
    report = os.environ.get("FAULT_REPORT")
    if report and collected:
        Path(report).write_text(markdown_table(collected), encoding="utf-8")


def markdown_table(rows: list[Figures]) -> str:
    """The figures as a markdown table, one row per scenario."""
    lines = [
        "| scenario | jobs | requests | retries | throttles | max in any 60 s window | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.name} | {r.jobs} | {r.requests} | {r.retries} | {r.throttles} "
        f"| {r.max_in_window} / {r.limit} | {r.wall_s:.1f} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_fault_scenario(scenario: Scenario, tmp_path: Path, figures: list[Figures]) -> None:
    """A few hundred jobs against the faulty simulator keep every invariant of the contract."""
    outcome = await run_scenario(scenario, tmp_path)
    summary = outcome.summary
    figures.append(
        Figures(
            name=scenario.name,
            jobs=len(outcome.valid_ids),
            requests=summary["requests"],
            retries=summary["retries"],
            throttles=summary["throttled"],
            max_in_window=outcome.sim.max_in_window(60.0),
            limit=scenario.rate,
            wall_s=outcome.wall_s,
        )
    )
    assert_invariants(outcome)


async def run_scenario(scenario: Scenario, workdir: Path) -> Outcome:
    """Run `poll` for the scenario's jobs against its faulty simulator, to the end."""
    settings: dict[str, Any] = {
        "seed": scenario.seed,
        "time_scale": scenario.scale,
        "rate_limit": scenario.sim_rate,
        "faults": scenario.plan,
        **LIFECYCLES,
        **scenario.sim,
    }
    async with Simulator(SimulatorConfig(**settings)) as sim:
        ids = sim.create_jobs(scenario.jobs)
        ids += sim.create_jobs(scenario.long_jobs, outcome="COMPLETED", processing_s=7200.0)
        valid_ids = ids + list(UNKNOWN_IDS) if scenario.messy_input else ids
        source = workdir / "ids.txt"
        source.write_bytes(id_lines(ids, messy=scenario.messy_input))
        args = [
            "poll",
            *("--time-scale", str(scenario.scale), "--seed", str(scenario.seed)),
            *("--rate", f"{scenario.rate}/min", "--max-delay", MAX_DELAY, "--log-format", "json"),
        ]
        if scenario.deadline is not None:
            args += ["--deadline", f"{scenario.deadline:g}s"]
        if scenario.files:
            args += ["--state", str(workdir / "state.db")]
            args += ["--metrics-file", str(workdir / "metrics.prom"), "--log-level", "debug"]
        if scenario.messy_input:
            args.append("--skip-invalid")
        env = clean_env(LUCIDITY_BASE_URL=sim.base_url, LUCIDITY_REFRESH_TOKEN=sim.refresh_token)
        began = time.monotonic()
        cli = asyncio.create_task(run_cli(*args, str(source), env=env))
        seen: dict[str, bool] = {}
        watcher = asyncio.create_task(watch_files(sim, workdir, seen))
        try:
            if scenario.restart_after is not None:
                await restart_midway(sim, cli, scenario.restart_after)
            run = await cli
        finally:
            watcher.cancel()
        wall_s = time.monotonic() - began
    return Outcome(scenario, sim, run, valid_ids, workdir, wall_s, seen)


def id_lines(ids: list[int], *, messy: bool) -> bytes:
    """The ids one per line; `messy` adds comments, blanks, duplicates, unknown and bad ids."""
    if not messy:
        return "".join(f"{job_id}\n" for job_id in ids).encode()
    lines = ["# rollout 42", ""]
    for n, job_id in enumerate(ids):
        lines.append(f"  {job_id}\t" if n % 7 else f"{job_id:0>20}")
        if n % 50 == 0:
            lines += [str(job_id), "12a", "-5", "0x1F", "\uff11\uff12"]
    lines += [str(job_id) for job_id in UNKNOWN_IDS]
    return ("\r\n".join(lines) + "\r\n").encode()


async def watch_files(sim: Simulator, workdir: Path, seen: dict[str, bool]) -> None:
    """Note every file of the run and whether a token was in it, while the run goes on: the
    state file's WAL is gone once it ends. A token in a file was issued before it is read."""
    while True:
        secrets = [sim.refresh_token, *sim.issued_tokens]
        for name, blob in (await asyncio.to_thread(read_files, workdir)).items():
            leaked = any(secret.encode() in blob for secret in secrets)
            seen[name] = seen.get(name, False) or leaked
        await sim.clock.sleep(10.0)


def read_files(directory: Path) -> dict[str, bytes]:
    """The raw bytes of every file under `directory`, by path."""
    found = {}
    for path in directory.rglob("*"):
        with contextlib.suppress(OSError):  # the WAL may go away in between
            if path.is_file():
                found[str(path)] = path.read_bytes()
    return found


async def restart_midway(sim: Simulator, cli: asyncio.Task[CliRun], requests: int) -> None:
    """Restart the simulator (30 simulated seconds down) once it has seen `requests`."""
    while len(sim.requests) < requests and not cli.done():
        await sim.clock.sleep(1.0)
    assert not cli.done(), "the run ended before the restart"
    await sim.restart(downtime=30.0)


def assert_invariants(outcome: Outcome) -> None:
    """Every invariant of the fault suite, for one scenario run."""
    scenario, sim, summary = outcome.scenario, outcome.sim, outcome.summary
    assert outcome.events[0]["event"] == "start"
    results = {event["job_id"]: event for event in outcome.of("result")}
    assert len(results) == len(outcome.of("result")), "a job got more than one result"
    assert sorted(results) == sorted(outcome.valid_ids), "every valid id gets one result"
    assert summary["total"] == len(outcome.valid_ids)
    assert summary["counts"]["pending"] == 0

    assert_results_match_truth(outcome, results)
    assert_transitions_chain(outcome.of("transition"), results)
    assert_exit_code(outcome, results)
    assert sim.max_in_window(60.0) <= scenario.rate, "a 60 s window held more than --rate"
    assert_throttles_honoured(outcome)
    assert summary["retries"] <= 10 + 0.2 * (summary["requests"] - summary["retries"])
    # The final sweep starts at 3/4 of the deadline, counted from just before the first
    # request: nothing from half the deadline on counts.
    until = sim.requests[0].at + scenario.deadline / 2 if scenario.deadline else math.inf
    early, others = early_retries(sim, min_delay=DEFAULTS.min_delay, until=until)
    assert early <= 10 + 0.2 * others, "early retries the simulator saw, over the retry budget"
    if scenario.restart_after is not None:
        assert {e["kind"] for e in outcome.of("poll_error")} >= {"connection"}
        assert summary["requests"] >= len(sim.requests), "refused requests count too"
    elif scenario.deadline is None:
        assert summary["requests"] == len(sim.requests), "every request the simulator saw"
    if scenario.rate <= scenario.sim_rate:
        limited = [r for r in sim.requests if r.http_status == 429 and r.fault is None]
        assert not limited, "within the simulator's limit, the client is never rate limited"
    if scenario.every_kind:
        happened = {record.fault for record in sim.requests}
        assert set(scenario.plan.rates) <= happened, "every fault kind of the plan happened"
    assert_no_token_leaked(outcome)


def assert_results_match_truth(outcome: Outcome, results: dict[int, dict[str, Any]]) -> None:
    """Each result is the job's true final status, reason and instances, or NOT_FOUND for an
    id the simulator never issued. With a deadline, a job may end TIMED_OUT instead, unless
    the simulator's record shows that the client was told the end in time; and a job may end
    ERROR (with a reason) when the record shows malformed answers lasting long enough."""
    scenario, sim = outcome.scenario, outcome.sim
    truth = {job.id: job for job in sim.truth()}
    told = told_in_time(outcome, truth) if scenario.deadline is not None else set(results)
    for job_id, result in results.items():
        job = truth.get(job_id)
        if result["status"] == "TIMED_OUT" and job_id not in told:
            assert job is None or plausible_last_status(job, result["last_status"]), result
        elif result["status"] == "ERROR" and malformed_long_enough(sim.requests, job_id):
            assert result.get("reason"), result
        elif job is None:
            assert result["status"] == "NOT_FOUND", result
        else:
            assert result["status"] == job.final_status, (result, job)
            assert result["last_status"] == job.final_status
            assert result.get("reason") == job.failure_reason, result
            reported = [(i["instanceId"], i["status"]) for i in result["details"]]
            assert reported == [(i.instance_id, i.final_status) for i in job.instances]
    if scenario.long_jobs:
        long_running = [job.id for job in truth.values() if job.final_at > sim.clock.now()]
        assert len(long_running) >= scenario.long_jobs
        assert {results[job_id]["status"] for job_id in long_running} == {"TIMED_OUT"}


def told_in_time(outcome: Outcome, truth: Mapping[int, JobTruth]) -> set[int]:
    """The ids whose end the client was told before its deadline, by the simulator's record:
    a faithful 200 once the job was final, or (for an unknown id) `MAX_NOT_FOUND` 404s in a
    row. A 401 or a throttling answer does not break a row; any other answer does."""
    scenario, records = outcome.scenario, outcome.sim.requests
    assert scenario.deadline is not None
    # The CLI's deadline runs from its start, a little before its first request.
    in_time = records[0].at + scenario.deadline - DEADLINE_SLACK_S * scenario.scale
    told: set[int] = set()
    not_found_row: Counter[int] = Counter()
    for r in records:
        job_id = r.job_id
        if r.path != STATUS_PATH or job_id is None or r.at >= in_time:
            continue
        job = truth.get(job_id)
        faithful = r.fault is None
        if job is not None and faithful and r.http_status == 200 and r.at >= job.final_at:
            told.add(job_id)
        elif job is None and faithful and r.http_status == 404:
            not_found_row[job_id] += 1
            if not_found_row[job_id] >= MAX_NOT_FOUND:
                told.add(job_id)
        elif r.http_status not in (401, 429) and r.retry_after is None:
            not_found_row[job_id] = 0
    return told


def malformed_long_enough(records: list[RequestRecord], job_id: int) -> bool:
    """Whether the simulator gave `job_id` malformed answers (bodies that are not a status
    of this job) over at least the client's `bad_response_window`: then ending ERROR is the
    contract, not a bug.

    Measured from the first such answer to the last, whatever came in between: on a loaded
    machine a good answer the simulator sent may reach the client after its request timed
    out, and then it does not start the window over. The client times answers on receipt,
    the simulator on arrival: twice the request timeout is allowed for the difference.
    """
    malformed = [r.at for r in records if r.job_id == job_id and r.fault in MALFORMED]
    slack = 2 * DEFAULTS.request_timeout
    return bool(malformed) and malformed[-1] - malformed[0] >= DEFAULTS.bad_response_window - slack


def plausible_last_status(job: JobTruth, last_status: str | None) -> bool:
    """A TIMED_OUT job's last status is one the job really had (or none was seen yet)."""
    return last_status is None or last_status in {s for s, _ in job.timeline if s not in TERMINAL}


def assert_transitions_chain(
    transitions: list[dict[str, Any]], results: dict[int, dict[str, Any]]
) -> None:
    """Each job's transitions chain from null, never say UNKNOWN, and end where its result is."""
    steps: dict[int, list[dict[str, Any]]] = {}
    for event in transitions:
        steps.setdefault(event["job_id"], []).append(event)
    for job_id, result in results.items():
        chain = steps.get(job_id, [])
        if not chain:
            assert result["last_status"] is None, result
            continue
        assert chain[0]["from"] is None
        assert all(a["to"] == b["from"] for a, b in itertools.pairwise(chain))
        assert "UNKNOWN" not in {step["to"] for step in chain}
        assert chain[-1]["to"] == result["last_status"]


def assert_exit_code(outcome: Outcome, results: dict[int, dict[str, Any]]) -> None:
    """The exit code follows from the results (docs/exit-codes.md: 3, then 1, then 0)."""
    statuses = {result["status"] for result in results.values()}
    if statuses - set(TERMINAL):
        expected = 3
    elif statuses & {"FAILED", "CANCELLED"}:
        expected = 1
    else:
        expected = 0
    codes = (outcome.run.code, outcome.summary["exit_code"])
    assert codes == (expected, expected), outcome.run.stderr[-3000:]


def assert_throttles_honoured(outcome: Outcome) -> None:
    """No request arrives inside an announced Retry-After pause, and each 429 or 503 is
    reported as `throttled`.

    Requests already in flight when the 429 left may still arrive just after it: they get a
    grace of `IN_FLIGHT_GRACE_S` real seconds. An HTTP-date `Retry-After` crosses two
    processes whose scaled wall clocks are each anchored at their own start: the simulator's
    at its creation, the CLI's a moment (d real seconds) later, so the CLI's wall clock lags
    by (scale - 1) * d and the announced date looks later to it. The client then pauses
    longer than announced, never shorter; the `throttled` events show it.
    """
    scenario = outcome.scenario
    grace = IN_FLIGHT_GRACE_S * scenario.scale
    records = outcome.sim.requests
    arrivals = [record.at for record in records]
    early: list[tuple[RequestRecord, float]] = []
    for record in records:
        if record.retry_after is None:
            continue
        quiet_from, quiet_until = record.at + grace, record.at + record.retry_after
        first = bisect.bisect_right(arrivals, quiet_from)
        last = bisect.bisect_left(arrivals, quiet_until - 1e-6)
        early += [(record, arrivals[n] - record.at) for n in range(first, last)]
    assert not early, f"requests inside an announced pause (record, seconds after): {early[:5]}"

    throttled = outcome.of("throttled")
    answered = [r for r in records if r.http_status in (429, 503)]  # every one slows the rate
    assert len(throttled) == outcome.summary["throttled"]
    if scenario.restart_after is None and scenario.deadline is None:
        assert len(throttled) == len(answered), "each throttling answer is reported once"
    dated = [r for r in answered if r.fault and r.fault.endswith(DATE_FORMS)]
    if dated and len(dated) == len(answered):
        announced = min(r.retry_after or 0.0 for r in dated)
        assert min(event["retry_after_s"] for event in throttled) >= announced


def assert_no_token_leaked(outcome: Outcome) -> None:
    """Neither the refresh token nor any access token issued is in any output or file."""
    secrets = [outcome.sim.refresh_token, *outcome.sim.issued_tokens]
    assert len(secrets) > 1, "the run obtained at least one access token"
    blobs = {"stdout": outcome.run.stdout, "stderr": outcome.run.stderr.encode()}
    blobs |= read_files(outcome.workdir)
    for where, blob in blobs.items():
        leaked = sum(secret.encode() in blob for secret in secrets)
        assert not leaked, f"{leaked} token(s) appeared in {where}"
    during = [name for name, leaked in outcome.files_seen.items() if leaked]
    assert not during, f"a token appeared in {during} during the run"
    if outcome.scenario.files:
        state = str(outcome.workdir / "state.db")
        assert {state, f"{state}-wal", str(outcome.workdir / "metrics.prom")} <= {
            *blobs,
            *outcome.files_seen,
        }, "the state file, its WAL and the metrics file were all looked at"
