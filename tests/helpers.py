"""Helpers for end-to-end tests: running the CLI as a real process and reading its events."""

from __future__ import annotations

import asyncio
import math
import os
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any, Final

import jsonschema
import orjson
from hypothesis import settings

from async_poller._lucidity.client import STATUS_PATH
from async_poller.events import event_schema
from async_poller.outcome import exit_code_for
from async_poller.simulator import RequestRecord, Simulator


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(event_schema())


@dataclass
class CliRun:
    """What one `async-poller` process did."""

    code: int
    stdout: bytes
    stderr: str

    @cached_property
    def events(self) -> list[dict[str, Any]]:
        """stdout as events; every line must be one valid event (parsed and checked once)."""
        events = [orjson.loads(line) for line in self.stdout.splitlines()]
        for event in events:
            _validator().validate(event)
        return events

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event"] == kind]

    @property
    def results(self) -> dict[int, dict[str, Any]]:
        """Results by job id; asserts that no job has two."""
        found = self.of("result")
        ids = [event["job_id"] for event in found]
        assert len(ids) == len(set(ids)), "a job got more than one result"
        return {event["job_id"]: event for event in found}

    @property
    def summary(self) -> dict[str, Any]:
        events = self.events
        assert events, f"no events; stderr:\n{self.stderr}"
        assert events[-1]["event"] == "summary", "summary must be the last event"
        return events[-1]


UNSET: Final = frozenset({"PYTHONUNBUFFERED", "ASYNC_POLLER_BUDGET_STORE"})
"""Variables no CLI under test inherits: cron, systemd and CI do not set PYTHONUNBUFFERED,
so a test must not hide output that only a flush at exit would write; and a budget store
of the developer's own must not be the tests'."""


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any Lucidity settings or `UNSET`, plus `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("LUCIDITY_") and key not in UNSET
    }
    return env | extra


async def start_cli(
    *args: str, env: dict[str, str], stderr: int = asyncio.subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    """Start `python -m async_poller ARGS`, its stdout a pipe to read while it runs."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "async_poller",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        env=env,
    )


async def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None, wait_s: float = 90.0
) -> CliRun:
    """Run `python -m async_poller ARGS` to the end and collect what it wrote."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "async_poller",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else clean_env(),
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(stdin), wait_s)
    except BaseException:  # timed out, or the test cancelled us: leave no process behind
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return CliRun(process.returncode, stdout, stderr.decode("utf-8", "replace"))


def early_retries(
    simulator: Simulator, min_delay: float, *, until: float = math.inf
) -> tuple[int, int]:
    """(early retries, other status requests), counted from what the simulator received.

    A status request is an early retry when it came less than `min_delay` after the same
    job's previous request and that one failed (no answer, or a 5xx that names no pause):
    after a failure, a job that is not retried early waits at least `min_delay`. The count
    is a lower bound (a late early retry looks like a regular poll), so a test asserting
    that early retries stay within the retry budget cannot fail for the wrong reason.
    Requests from `until` on (simulator time) are left out: a run's final sweep wakes jobs
    before their time.
    """
    last: dict[int, RequestRecord] = {}
    early = other = 0
    for record in simulator.requests:
        if record.path != STATUS_PATH or record.job_id is None or record.at >= until:
            continue
        before = last.get(record.job_id)
        last[record.job_id] = record
        failed = before is not None and (
            not before.refused
            and before.retry_after is None
            and (before.http_status is None or before.http_status >= 500)
        )
        if failed and before is not None and record.at - before.at < min_delay:
            early += 1
        else:
            other += 1
    return early, other


def true_statuses(simulator: Simulator) -> dict[int, str]:
    """Every job the simulator made, with its true final status."""
    return {job.id: job.final_status for job in simulator.truth()}


def true_exit_code(simulator: Simulator, ids: Iterable[int]) -> int:
    """The exit code of a run that sees every job in `ids` to the end, from the simulator's
    ground truth (an id it never created ends NOT_FOUND)."""
    truth = true_statuses(simulator)
    return exit_code_for(Counter(truth.get(job_id, "NOT_FOUND") for job_id in ids))


def assert_true_results(
    simulator: Simulator,
    results: dict[int, dict[str, Any]],
    ids: Iterable[int] | None = None,
    context: object = None,
) -> None:
    """One result for each job in `ids` (every job the simulator made, by default) and for
    no other, each the job's true final status."""
    truth = true_statuses(simulator)
    expected = truth if ids is None else {job_id: truth[job_id] for job_id in ids}
    assert expected == {job_id: result["status"] for job_id, result in results.items()}, context


def simulator_env(simulator: Simulator, **extra: str) -> dict[str, str]:
    """`clean_env()` pointing at `simulator`, with its refresh token, plus `extra`."""
    return clean_env(
        LUCIDITY_BASE_URL=simulator.base_url,
        LUCIDITY_REFRESH_TOKEN=simulator.refresh_token,
        **extra,
    )


def ids_arg(ids: list[int]) -> list[str]:
    """`--id N` for each id."""
    return [part for job_id in ids for part in ("--id", str(job_id))]


def examples(count: int) -> int:
    """`count` examples for a property test that sets its own number, scaled like the
    loaded hypothesis profile (the "thorough" profile draws ten times the default 100)."""
    return max(1, count * settings().max_examples // 100)
