"""The files in examples/ work as the README says: each runs against the simulator, or is
checked against the real CLI where running it is not possible (systemd, GitHub Actions)."""

from __future__ import annotations

import asyncio
import csv
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from async_poller.config import parse_duration
from async_poller.events import event_schema
from async_poller.simulator import FaultPlan, Simulator, SimulatorConfig

from .conftest import QUICK_JOBS, TIME_SCALE
from .helpers import clean_env, ids_arg, run_cli, simulator_env, true_exit_code

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
README = ROOT / "README.md"
DOCS = ROOT / "docs"
JQ = shutil.which("jq")
needs_jq = pytest.mark.skipif(JQ is None, reason="jq is not installed (e.g. apt-get install jq)")
SCALED = ("--time-scale", str(TIME_SCALE), "--seed", "1")
"""Poll options that make `poll` keep time with the simulator fixture."""
UNKNOWN_ID = 424242
"""A job id the simulator does not know: it ends NOT_FOUND."""
LIVE_RECIPE = "Follow transitions live"


@dataclass
class Ran:
    """What one example process did."""

    code: int
    stdout: str
    stderr: str


async def run(
    argv: list[str], *, env: dict[str, str], cwd: Path | None = None, wait_s: float = 60.0
) -> Ran:
    """Run `argv` without blocking the event loop (the simulator fixture shares it)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), wait_s)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())


@pytest.fixture(scope="session")
def shim_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose `async-poller` runs this checkout, as an installed one would."""
    directory = tmp_path_factory.mktemp("bin")
    shim = directory / "async-poller"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m async_poller "$@"\n')
    shim.chmod(0o755)
    return directory


def example_env(shim_bin: Path, simulator: Simulator | None = None, **extra: str) -> dict[str, str]:
    """A clean environment with `async-poller` on PATH and the simulator's URL and token."""
    env = clean_env(PATH=f"{shim_bin}{os.pathsep}{os.environ['PATH']}", **extra)
    if simulator is not None:
        env |= {
            "LUCIDITY_BASE_URL": simulator.base_url,
            "LUCIDITY_REFRESH_TOKEN": simulator.refresh_token,
        }
    return env


@cache
def poll_flags() -> frozenset[str]:
    """Every flag `async-poller poll --help` lists."""
    help_text = subprocess.run(
        [sys.executable, "-m", "async_poller", "poll", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env(COLUMNS="200"),
    ).stdout
    return frozenset(re.findall(r"(?<![\w-])--[a-z][a-z-]+", help_text))


def assert_poll_flags_exist(argv: list[str]) -> None:
    unknown = {arg.split("=")[0] for arg in argv if arg.startswith("--")} - poll_flags()
    assert not unknown, f"flags that 'async-poller poll --help' does not list: {unknown}"


def write_ids(path: Path, ids: list[int]) -> None:
    path.write_text("".join(f"{job_id}\n" for job_id in ids))


def read_events(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def option(argv: list[str], flag: str) -> Path:
    return Path(argv[argv.index(flag) + 1])


# --- examples/library.py ---------------------------------------------------------------


@pytest.mark.parametrize(("outcome", "code"), [("COMPLETED", 0), ("FAILED", 1)])
async def test_library_example_polls_to_the_end(
    simulator: Simulator, shim_bin: Path, outcome: str, code: int
) -> None:
    """examples/library.py, given the simulator's URL and token in the environment, reports
    every job's end and exits with the CLI's exit code."""
    ids = simulator.create_jobs(3, outcome=outcome)
    ran = await run(
        [sys.executable, str(EXAMPLES / "library.py"), "--time-scale", str(TIME_SCALE)]
        + [str(job_id) for job_id in ids],
        env=example_env(shim_bin, simulator),
    )
    assert code == ran.code, ran.stderr
    for job_id in ids:
        assert f"{job_id}: ended {outcome}" in ran.stdout
    assert f"done: 3 {outcome}" in ran.stdout


async def test_library_example_without_a_token_says_what_to_set(shim_bin: Path) -> None:
    """examples/library.py with no refresh token exits 2 and names the variable to set."""
    ran = await run(
        [sys.executable, str(EXAMPLES / "library.py"), "4711"], env=example_env(shim_bin)
    )
    assert 2 == ran.code
    assert "LUCIDITY_REFRESH_TOKEN" in ran.stderr


# --- examples/ci-wait-for-installs.sh ----------------------------------------------------


@pytest.mark.parametrize(("outcome", "code"), [("COMPLETED", 0), ("FAILED", 1)])
async def test_ci_script_blocks_until_the_installs_end(
    simulator: Simulator, shim_bin: Path, tmp_path: Path, outcome: str, code: int
) -> None:
    """The CI script waits for every job, keeps the events, names the jobs that did not
    complete, and exits 0 only when all COMPLETED."""
    ids = simulator.create_jobs(2, outcome="COMPLETED") + simulator.create_jobs(1, outcome=outcome)
    write_ids(tmp_path / "ids.txt", ids)
    events = tmp_path / "ci-events.jsonl"
    env = example_env(shim_bin, simulator, DEADLINE="5m", EVENTS=str(events))
    script = str(EXAMPLES / "ci-wait-for-installs.sh")
    ran = await run([script, "ids.txt", *SCALED], env=env, cwd=tmp_path)
    assert code == ran.code, ran.stderr
    lines = read_events(events)
    assert ("start", "summary") == (lines[0]["event"], lines[-1]["event"])
    assert code == lines[-1]["exit_code"]
    if outcome == "FAILED" and JQ is not None:
        assert f"  FAILED\t{JqNumbers([ids[-1]])(ids[-1])}\t" in ran.stdout
        assert "some agent installs FAILED" in ran.stderr
    elif outcome == "COMPLETED":
        assert "every agent install COMPLETED" in ran.stdout


async def test_ci_script_fails_plainly_without_credentials(shim_bin: Path, tmp_path: Path) -> None:
    """Without a token the CI script fails with async-poller's exit 2 and says no summary came."""
    write_ids(tmp_path / "ids.txt", [4711])
    env = example_env(shim_bin, EVENTS=str(tmp_path / "events.jsonl"))
    ran = await run([str(EXAMPLES / "ci-wait-for-installs.sh"), "ids.txt"], env=env, cwd=tmp_path)
    assert 2 == ran.code
    assert "LUCIDITY_REFRESH_TOKEN" in ran.stderr
    assert "ended without a summary" in ran.stderr


def test_github_actions_job_runs_the_ci_script() -> None:
    """The GitHub Actions snippet runs the CI script that ships here, with the settings the
    script reads, and its job timeout leaves room for the deadline."""
    text = (EXAMPLES / "github-actions.yml").read_text()
    assert "\t" not in text, "YAML must be indented with spaces"
    [script] = re.findall(r"run: async-poller/(\S+)", text)
    assert (ROOT / script).is_file()
    assert os.access(ROOT / script, os.X_OK)
    env = dict(re.findall(r"^\s+([A-Z_]+): (.+)$", text, re.MULTILINE))
    assert {"LUCIDITY_REFRESH_TOKEN", "DEADLINE", "EVENTS"} <= set(env)
    assert "secrets.LUCIDITY_REFRESH_TOKEN" in env["LUCIDITY_REFRESH_TOKEN"]
    [timeout] = re.findall(r"timeout-minutes: (\d+)", text)
    assert parse_duration(env["DEADLINE"]) < int(timeout) * 60
    assert f"path: {env['EVENTS']}" in text


NODE24_MAJORS = {"actions/checkout": 5, "actions/upload-artifact": 6}
"""The first major of each action that runs on Node.js 24 (Node.js 20 was retired in 2026)."""


def test_github_actions_job_uses_actions_on_node24() -> None:
    """Every action the GitHub Actions snippet uses is on a major that runs on Node.js 24."""
    text = (EXAMPLES / "github-actions.yml").read_text()
    used = re.findall(r"uses: ([\w-]+/[\w-]+)@v(\d+)", text)
    assert {action for action, _ in used} == set(NODE24_MAJORS)
    for action, major in used:
        assert int(major) >= NODE24_MAJORS[action], f"{action}@v{major} runs on Node.js 20"


# --- examples/crontab --------------------------------------------------------------------


@dataclass
class CronJob:
    schedule: list[str]
    command: str
    variables: dict[str, str]


def crontab() -> CronJob:
    """The one job in examples/crontab, with the variables set above it."""
    variables: dict[str, str] = {}
    jobs = []
    for line in (EXAMPLES / "crontab").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if match := re.fullmatch(r"([A-Z_]+)=(.*)", line):
            variables[match[1]] = match[2]
            continue
        fields = line.split(None, 5)
        jobs.append(CronJob(fields[:5], fields[5], dict(variables)))
    [job] = jobs
    return job


def test_crontab_runs_every_10_minutes_and_stops_before_the_next_run() -> None:
    """The crontab line polls every 10 minutes with a deadline shorter than that interval."""
    job = crontab()
    assert ["*/10", "*", "*", "*", "*"] == job.schedule
    argv = shlex.split(job.command)
    assert ["async-poller", "poll"] == argv[:2]
    assert_poll_flags_exist(argv)
    assert parse_duration(argv[argv.index("--deadline") + 1]) < 600


def move_under(root: Path, command: str, refresh_token: str) -> list[str]:
    """The crontab command with every absolute path moved under `root`, its directories
    created and its refresh token file written (mode 600)."""
    argv = [str(root) + arg if arg.startswith("/") else arg for arg in shlex.split(command)]
    for arg in argv:
        if arg.startswith(str(root)):
            Path(arg).parent.mkdir(parents=True, exist_ok=True)
    token_file = option(argv, "--refresh-token-file")
    token_file.write_text(refresh_token + "\n")
    token_file.chmod(0o600)
    return argv


async def test_crontab_command_runs_against_the_simulator(
    simulator: Simulator, shim_bin: Path, tmp_path: Path
) -> None:
    """The crontab command, its paths moved under a temporary root, polls the simulator
    quietly, appends events, writes metrics, and on its next run reports only the new jobs."""
    job = crontab()
    argv = move_under(tmp_path / "root", job.command, simulator.refresh_token)
    shell = [job.variables["SHELL"], "-c", shlex.join([*argv[:2], *SCALED, *argv[2:]])]
    env = job.variables | {
        "PATH": f"{shim_bin}{os.pathsep}{job.variables['PATH']}",
        "LUCIDITY_BASE_URL": simulator.base_url,
    }

    first = simulator.create_jobs(3, outcome="COMPLETED")
    write_ids(Path(argv[-1]), first)
    ran = await run(shell, env=env)
    assert 0 == ran.code, ran.stderr
    assert "" == ran.stderr, "a healthy run writes nothing for cron to mail"
    metrics = option(argv, "--metrics-file").read_text()
    families = {family.name: family for family in text_string_to_metric_families(metrics)}
    assert 0 == families["async_poller_exit_code"].samples[0].value

    second = simulator.create_jobs(2, outcome="COMPLETED")
    write_ids(Path(argv[-1]), first + second)
    ran = await run(shell, env=env)
    assert 0 == ran.code, ran.stderr
    lines = read_events(option(argv, "--output"))
    assert 2 == sum(line["event"] == "summary" for line in lines), "runs append to one log"
    results = [line["job_id"] for line in lines if line["event"] == "result"]
    assert sorted(first + second) == sorted(results), "one result per job across runs"


# --- examples/async-poller.service and .timer -------------------------------------------


def unit(name: str) -> dict[str, dict[str, str]]:
    """A systemd unit file as {section: {key: value}} (the last value of a key wins)."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in (EXAMPLES / name).read_text().splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if match := re.fullmatch(r"\[(\w+)\]", line):
            current = sections.setdefault(match[1], {})
        else:
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return sections


def test_systemd_units_poll_with_flags_that_exist() -> None:
    """The service is a one-shot poll run using real flags, ending before the timer fires
    again; exit 3 (jobs still under way) counts as success."""
    service, timer = unit("async-poller.service"), unit("async-poller.timer")
    assert "oneshot" == service["Service"]["Type"]
    argv = shlex.split(service["Service"]["ExecStart"])
    assert argv[0].endswith("/async-poller")
    assert "poll" == argv[1]
    assert_poll_flags_exist(argv)
    assert "3" in service["Service"]["SuccessExitStatus"].split()
    deadline = parse_duration(argv[argv.index("--deadline") + 1])
    assert deadline < parse_duration(service["Service"]["TimeoutStartSec"])
    assert "*:0/10" == timer["Timer"]["OnCalendar"]
    assert parse_duration(service["Service"]["TimeoutStartSec"]) <= 600
    assert "timers.target" == timer["Install"]["WantedBy"]


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)
def test_systemd_units_pass_systemd_analyze_verify(shim_bin: Path, tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the service and the timer (the binary path pointed at
    an async-poller that exists here)."""
    for name in ("async-poller.service", "async-poller.timer"):
        text = (EXAMPLES / name).read_text()
        (tmp_path / name).write_text(
            text.replace("/usr/local/bin/async-poller", str(shim_bin / "async-poller"))
        )
    verified = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            str(tmp_path / "async-poller.service"),
            str(tmp_path / "async-poller.timer"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert 0 == verified.returncode, verified.stderr


# --- examples/jq-recipes.md --------------------------------------------------------------


def recipes() -> dict[str, str]:
    """The recipes of examples/jq-recipes.md: heading -> the shell code under it."""
    text = (EXAMPLES / "jq-recipes.md").read_text()
    found = {}
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        title, _, body = section.partition("\n")
        [code] = re.findall(r"```sh\n(.*?)```", body, re.DOTALL)
        found[title.strip()] = code.strip()
    return found


@dataclass
class Recording:
    """A real run against a faulty simulator: its events and state file, in `directory`."""

    directory: Path
    events: list[dict[str, Any]]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event"] == kind]


async def _record(directory: Path) -> Recording:
    # 503s and truncated bodies (often enough to show in ~50 requests), and one certain
    # spell of throttling: the first polls (the CLI starts within a simulated minute) meet
    # 429s asking for a 60 s pause.
    faults = FaultPlan(
        rates={"http_503": 0.2, "truncated_json": 0.2},
        windows=((0.0, 90.0, "http_429_retry_after_seconds"),),
        retry_after_s=60.0,
    )
    config = SimulatorConfig(time_scale=TIME_SCALE, seed=1, faults=faults, **QUICK_JOBS)
    async with Simulator(config) as simulator:
        ids = [
            *simulator.create_jobs(4, outcome="COMPLETED"),
            *simulator.create_jobs(2, outcome="FAILED", instances=3),
            *simulator.create_jobs(1, outcome="CANCELLED"),
            *simulator.create_jobs(2, processing_s=3600.0),
            UNKNOWN_ID,
        ]
        env = simulator_env(simulator)
        events = directory / "events.jsonl"
        ran = await run_cli(
            "poll",
            *SCALED,
            "--deadline",
            "5m",
            "--state",
            str(directory / "state.db"),
            "--output",
            str(events),
            *ids_arg(ids),
            env=env,
        )
    assert 3 == ran.code, ran.stderr
    return Recording(directory, read_events(events))


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """One real run, shared by the recipe tests (they only read it)."""
    return asyncio.run(_record(tmp_path_factory.mktemp("recording")))


class JqNumbers:
    """How the installed jq prints numbers: exactly (jq 1.7+) or rounded to doubles (1.6)."""

    def __init__(self, values: list[Any]) -> None:
        literals = sorted({orjson.dumps(value).decode() for value in _numbers(values)})
        assert JQ is not None
        printed = subprocess.run(
            [JQ, "-c", "."], input="\n".join(literals), capture_output=True, text=True, check=True
        ).stdout.split()
        self._printed = dict(zip(literals, printed, strict=True))

    def __call__(self, value: float | None) -> str:
        """`value` as jq prints it (null as jq's `// ""` and @csv/@tsv print it: empty)."""
        return "" if value is None else self._printed[orjson.dumps(value).decode()]

    def seen(self, value: Any) -> Any:
        """`value` as jq reads it: big integers possibly rounded."""
        if isinstance(value, dict):
            return {key: self.seen(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.seen(item) for item in value]
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
            return int(self(value))
        return value


def _numbers(value: Any) -> Iterator[int | float]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield value


Check = Callable[[Recording, JqNumbers, str], None]


def _rows(output: str) -> list[list[str]]:
    return [line.split("\t") for line in output.splitlines()]


def _tsv(text: str | None) -> str:
    """`text` as jq's @tsv writes it (null as `// ""` makes it: empty)."""
    escapes = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
    return "".join(escapes.get(char, char) for char in text or "")


def check_results_only(rec: Recording, jq: JqNumbers, output: str) -> None:
    expected = [jq.seen(event) for event in rec.of("result")]
    assert expected == [orjson.loads(line) for line in output.splitlines()]


def check_failed_ids(rec: Recording, jq: JqNumbers, output: str) -> None:
    failed = [jq(e["job_id"]) for e in rec.of("result") if e["status"] == "FAILED"]
    assert len(failed) == 2
    assert failed == output.splitlines()


def check_not_completed(rec: Recording, jq: JqNumbers, output: str) -> None:
    expected = [
        [jq(e["job_id"]), e["status"], _tsv(e.get("reason"))]
        for e in rec.of("result")
        if e["status"] != "COMPLETED"
    ]
    assert {"FAILED", "CANCELLED", "TIMED_OUT", "NOT_FOUND"} <= {row[1] for row in expected}
    assert expected == _rows(output)


def check_counts(rec: Recording, jq: JqNumbers, output: str) -> None:
    expected = Counter(e["status"] for e in rec.of("result"))
    assert expected == orjson.loads(output)
    summary = rec.of("summary")[-1]["counts"]
    assert {status: n for status, n in summary.items() if n and status != "pending"} == expected


def check_last_summary(rec: Recording, jq: JqNumbers, output: str) -> None:
    assert rec.of("summary")[-1] == orjson.loads(output)


def check_transitions_of_one_job(rec: Recording, jq: JqNumbers, output: str) -> None:
    target = rec.of("result")[0]["job_id"]
    expected = [
        f"{e['ts']}  {e['from'] or '-'} -> {e['to']}"
        for e in rec.of("transition")
        if jq.seen(e["job_id"]) == jq.seen(target)
    ]
    assert expected
    assert expected == output.splitlines()


def check_csv(rec: Recording, jq: JqNumbers, output: str) -> None:
    assert "" == output
    with (rec.directory / "results.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    fields = ["job_id", "status", "last_status", "polls", "elapsed_s", "reason"]
    expected = [
        [
            jq(e["job_id"]),
            e["status"],
            e["last_status"] or "",
            jq(e["polls"]),
            jq(e["elapsed_s"]),
            e.get("reason", ""),
        ]
        for e in rec.of("result")
    ]
    assert [fields, *expected] == rows


def check_failed_instances(rec: Recording, jq: JqNumbers, output: str) -> None:
    expected = [
        [jq(e["job_id"]), _tsv(instance["instanceId"]), _tsv(instance["failureReason"])]
        for e in rec.of("result")
        if e["status"] == "FAILED"
        for instance in e["details"]
        if instance["status"] == "FAILED"
    ]
    assert expected
    assert expected == _rows(output)


def check_slowest(rec: Recording, jq: JqNumbers, output: str) -> None:
    slowest = sorted(rec.of("result"), key=lambda e: -e["elapsed_s"])[:5]
    assert [[jq(e["job_id"]), e["status"], jq(e["elapsed_s"])] for e in slowest] == _rows(output)


def check_poll_errors(rec: Recording, jq: JqNumbers, output: str) -> None:
    expected = Counter(f"{e['kind']} {jq(e['http_status']) or '-'}" for e in rec.of("poll_error"))
    assert {"http 503", "bad_response 200"} <= set(expected)
    counted: Counter[str] = Counter()
    for line in output.splitlines():
        count, key = line.strip().split(" ", 1)
        counted[key] = int(count)
    assert expected == counted


def check_throttling(rec: Recording, jq: JqNumbers, output: str) -> None:
    expected = [
        f"{e['ts']}  paused {jq(e['retry_after_s'])}s, budget now {e['rate']}"
        for e in rec.of("throttled")
    ]
    assert expected
    assert expected == output.splitlines()


def check_report(rec: Recording, jq: JqNumbers, output: str) -> None:
    expected = sorted(
        [jq(e["job_id"]), e["status"], _tsv(e.get("reason"))]
        for e in rec.of("result")
        if e["status"] != "COMPLETED"
    )
    assert expected == sorted(_rows(output))


CHECKS: dict[str, Check] = {
    "Results only": check_results_only,
    "Ids of failed jobs": check_failed_ids,
    "Every job that did not complete, with the reason": check_not_completed,
    "Counts by final status": check_counts,
    "The last run's summary": check_last_summary,
    "Transitions of one job": check_transitions_of_one_job,
    "Results as CSV": check_csv,
    "Failed instances and their reasons": check_failed_instances,
    "Slowest jobs": check_slowest,
    "Failed requests by kind and HTTP status": check_poll_errors,
    "Throttling: when, for how long, and the budget after it": check_throttling,
    "The audit trail from the state file": check_report,
}


def test_every_jq_recipe_has_a_check() -> None:
    """Each recipe in examples/jq-recipes.md is checked by a test below."""
    assert set(CHECKS) | {LIVE_RECIPE} == set(recipes())


@needs_jq
@pytest.mark.parametrize("title", sorted(CHECKS))
def test_jq_recipe_output(title: str, recording: Recording, shim_bin: Path) -> None:
    """The jq recipe, run on the events and state file of a real run, prints what those
    events say (with numbers as the installed jq prints them)."""
    code = recipes()[title]
    if title == "Transitions of one job":
        code = re.sub(r"^JOB=\d+$", f"JOB={recording.of('result')[0]['job_id']}", code, flags=re.M)
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=recording.directory,
        env=example_env(shim_bin),
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert 0 == ran.returncode, ran.stderr
    CHECKS[title](recording, JqNumbers(recording.events), ran.stdout)


@needs_jq
async def test_jq_live_recipe_follows_a_run(
    simulator: Simulator, shim_bin: Path, tmp_path: Path
) -> None:
    """The live recipe prints each transition of a running poll, ending at a final status."""
    ids = simulator.create_jobs(3)
    write_ids(tmp_path / "ids.txt", ids)
    code = recipes()[LIVE_RECIPE].replace(
        "async-poller poll", f"async-poller poll {' '.join(SCALED)}"
    )
    assert code != recipes()[LIVE_RECIPE]
    ran = await run(
        ["bash", "-euo", "pipefail", "-c", code], env=example_env(shim_bin, simulator), cwd=tmp_path
    )
    assert ran.code == true_exit_code(simulator, ids), ran.stderr
    jq = JqNumbers(list(ids))
    last: dict[str, str] = {}
    for line in ran.stdout.splitlines():
        match = re.fullmatch(r"(\d+)  (-|[A-Z]+) -> ([A-Z]+)", line)
        assert match, line
        last[match[1]] = match[3]
    assert set(last) == {jq(job_id) for job_id in ids}
    assert set(last.values()) <= {"COMPLETED", "FAILED", "CANCELLED"}


@needs_jq
def test_jq_prints_64_bit_job_ids_exactly() -> None:
    """The installed jq prints a 19-digit job id unchanged (jq 1.7+), as the recipes need."""
    assert JQ is not None
    job_id = "1318910358083555295"
    printed = subprocess.run([JQ, "."], input=job_id, capture_output=True, text=True, check=True)
    if printed.stdout.strip() != job_id:
        pytest.skip(
            f"this jq ({_jq_version()}) rounds integers above 2^53; the recipes then print "
            "rounded job ids (the README and jq-recipes.md say to use jq 1.7 or later)"
        )
    assert job_id == printed.stdout.strip()


def _jq_version() -> str:
    assert JQ is not None
    version = subprocess.run([JQ, "--version"], capture_output=True, text=True, check=False)
    return version.stdout.strip()


# --- README.md and docs/ -------------------------------------------------------------------


def doc_pages() -> list[Path]:
    """The README and the hand-written pages in docs/ (not the generated CLI reference)."""
    return [README, *sorted(page for page in DOCS.glob("*.md") if page.name != "cli.md")]


def test_docs_jq_commands_are_the_tested_recipes() -> None:
    """Every jq command in the jq section of docs/cron-and-ci.md is one of the tested recipes."""
    page = (DOCS / "cron-and-ci.md").read_text()
    section = page.split("\n## jq recipes\n", 1)[1].split("\n## ", 1)[0]
    tested = "\n".join(recipes().values())
    commands = [
        line
        for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
        for line in block.splitlines()
        if line.strip()
    ]
    assert commands
    for command in commands:
        assert command in tested, f"not in examples/jq-recipes.md: {command}"


def test_readme_links_the_cli_reference() -> None:
    """The README sends readers to the generated CLI reference instead of repeating it."""
    assert "docs/cli.md" in README.read_text()


@cache
def all_flags() -> frozenset[str]:
    """Every flag that `async-poller` or one of its commands lists in `--help`."""
    found: set[str] = set()
    for command in ([], ["poll"], ["report"], ["simulate"], ["demo"]):
        help_text = subprocess.run(
            [sys.executable, "-m", "async_poller", *command, "--help"],
            capture_output=True,
            text=True,
            check=True,
            env=clean_env(COLUMNS="200"),
        ).stdout
        found |= set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", help_text))
    return frozenset(found)


OTHER_TOOLS_FLAGS = frozenset({"--argjson", "--check", "--collector", "--failed", "--strict"})
"""Flags of jq, ruff, mypy, node_exporter and systemctl that the README and docs/ quote."""


@pytest.mark.parametrize("page", doc_pages(), ids=lambda page: page.name)
def test_docs_name_only_flags_that_exist(page: Path) -> None:
    """Every `--flag` the README or a docs/ page names exists."""
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", page.read_text()))
    unknown = named - all_flags() - OTHER_TOOLS_FLAGS
    assert not unknown, f"{page.name} names flags no command has: {sorted(unknown)}"


def test_docs_event_examples_are_valid_events() -> None:
    """Every JSON line in the README and docs/ is a valid event, and every event type has an
    example."""
    validator = jsonschema.Draft202012Validator(event_schema())
    text = "\n".join(page.read_text() for page in doc_pages())
    blocks = re.findall(r"```json\n(.*?)```", text, re.DOTALL)
    events = [orjson.loads(line) for block in blocks for line in block.splitlines()]
    for event in events:
        validator.validate(event)
    kinds = {branch["$ref"].rsplit("/", 1)[1] for branch in event_schema()["oneOf"]}
    assert kinds == {event["event"] for event in events}
