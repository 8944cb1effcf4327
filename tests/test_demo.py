"""`async-poller demo` at a glance: a human summary on stderr, JSON lines on stdout."""

from __future__ import annotations

import re

import pytest

from async_poller.events import Result, Summary
from async_poller.outcome import FinalStatus

from .helpers import run_cli

pytestmark = pytest.mark.e2e


def result(job_id: int, status: str, reason: str | None = None) -> Result:
    return Result(
        ts="t", job_id=job_id, status=status, last_status=status, polls=3, elapsed_s=1.0,
        event_id="e", reason=reason,
    )  # fmt: skip


async def test_demo_summary_on_stderr_events_on_stdout() -> None:
    """The demo ends with counts by status, the failed jobs' reasons and the requests used."""
    run = await run_cli("demo", "--jobs", "12", "--time-scale", "120")
    assert run.code == 0, run.stderr
    assert len(run.results) == 12, "stdout holds only valid events"
    summary = run.summary
    for status, count in summary["counts"].items():
        if count:
            assert re.search(rf"^  {status}\s+{count}$", run.stderr, re.MULTILINE)
    for failed in (r for r in run.results.values() if r["status"] in ("FAILED", "CANCELLED")):
        assert f"{failed['job_id']}  {failed['reason'][:40]}" in run.stderr
    assert f"requests   {summary['requests']}, at most " in run.stderr
    assert "budget 45/min" in run.stderr
    assert "\x1b[" not in run.stderr, "no progress frame when stderr is not a terminal"


def test_summary_lines_put_failures_first_and_cut_long_reasons() -> None:
    """FAILED before CANCELLED, reasons on one line and cut to fit."""
    from async_poller.cli.demo_run import REASON_WIDTH, summary_lines

    results = {
        1: result(1, "CANCELLED", "Cancelled by user"),
        2: result(2, "FAILED", "line one\nline two " + "x" * 200),
        3: result(3, "COMPLETED"),
    }
    counts = {status.value: 0 for status in FinalStatus} | {"COMPLETED": 1, "FAILED": 1}
    counts |= {"CANCELLED": 1, "pending": 0}
    summary = Summary(
        ts="t", total=3, counts=counts, requests=9, retries=0, throttled=0, rate="45/min",
        duration_s=120.0, exit_code=1,
    )  # fmt: skip
    lines = summary_lines(summary, results, time_scale=60.0)
    assert "demo: 3 jobs polled in 2m of simulated time (2.0s real)" == lines[1]
    listed = [line for line in lines if line.startswith("    ")]
    assert listed[0].startswith("    FAILED     2  line one line two xxx")
    assert listed[0].endswith("...")
    assert len(listed[0]) <= len("    FAILED     2  ") + REASON_WIDTH
    assert "    CANCELLED  1  Cancelled by user" == listed[1]
    assert not any("pending" in line or "TIMED_OUT" in line for line in lines)
