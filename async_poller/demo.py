"""`async-poller demo`: the whole product in under a minute, with no account.

Starts the simulator in-process, creates jobs through its Agent Install endpoint, polls them
with the real `poll_jobs` in scaled time, writes the events to stdout, and checks every
result against the simulator's ground truth.
"""

from __future__ import annotations

import sys
from typing import BinaryIO, TextIO

import aiohttp

from .auth import REFRESH_PATH, auth_headers
from .clock import SystemClock
from .config import Config, Credentials, format_duration
from .events import JsonLinesSink, Result, Summary
from .outcome import ExitCode
from .redact import Secret
from .scheduler import poll_jobs
from .simulator import Simulator, SimulatorConfig
from .simulator.records import max_in_window

__all__ = ["run_demo"]

INSTALL_PATH = "/external/client/api/v1/agent/install"


async def run_demo(
    *,
    jobs: int = 50,
    seed: int = 7,
    time_scale: float = 60.0,
    stdout: BinaryIO,
    stderr: TextIO = sys.stderr,
) -> int:
    """Run the demo; 0 when every result matched the simulator's ground truth."""
    clock = SystemClock(time_scale)
    simulated = SimulatorConfig(
        seed=seed, time_scale=time_scale, queued_s=15.0, preparing_s=20.0, processing_s=120.0
    )
    async with Simulator(simulated, clock=clock) as simulator:
        ids = await create_jobs(simulator.base_url, simulator.refresh_token, jobs)
        config = Config(
            credentials=Credentials(refresh_token=Secret(simulator.refresh_token)),
            base_url=simulator.base_url,
            seed=seed,
        )
        setup_requests = len(simulator.requests)
        sink = JsonLinesSink(stdout)
        results: dict[int, Result] = {}
        summary: Summary | None = None
        started = clock.now()
        async for event in poll_jobs(ids, config, clock=clock):
            sink.write(event)
            if isinstance(event, Result):
                results[event.job_id] = event
            elif isinstance(event, Summary):
                summary = event
        truth = {job.id: job.final_status for job in simulator.truth()}
        polling = simulator.requests[setup_requests:]
        busiest = max_in_window([r.at for r in polling], config.rate.period)
    assert summary is not None
    mismatches = [
        job_id
        for job_id in ids
        if results.get(job_id) is None or results[job_id].status != truth[job_id]
    ]
    simulated_s = clock.now() - started
    _report(stderr, summary, results, simulated_s=simulated_s, busiest=busiest, config=config)
    if mismatches:
        print(f"demo check FAILED: {len(mismatches)} results differ from ground truth", file=stderr)
        return ExitCode.INCOMPLETE
    print("every result matches the simulator's ground truth", file=stderr)
    return ExitCode.OK


async def create_jobs(base_url: str, refresh_token: str, count: int) -> list[int]:
    """Create `count` jobs with one Agent Install call, as a user would; return their ids."""
    installs = [
        {
            "cloudProvider": "AWS",
            "cloudProviderAccountId": "123456789012",
            "instanceIds": [f"i-{n:08x}{k}" for k in range(1 + n % 3)],
        }
        for n in range(count)
    ]
    async with aiohttp.ClientSession(base_url) as session:
        async with session.post(REFRESH_PATH, json={"refreshToken": refresh_token}) as response:
            token = (await response.json())["accessToken"]
        headers = auth_headers(token)
        async with session.post(INSTALL_PATH, json=installs, headers=headers) as response:
            response.raise_for_status()
            created = await response.json()
    return [int(job["id"]) for job in created["data"]]


def _report(
    stderr: TextIO,
    summary: Summary,
    results: dict[int, Result],
    *,
    simulated_s: float,
    busiest: int,
    config: Config,
) -> None:
    counts = "  ".join(f"{status} {n}" for status, n in summary.counts.items() if n)
    lines = [
        "",
        f"demo: {summary.total} jobs in {format_duration(round(simulated_s))} simulated time, "
        f"{summary.requests} requests, at most {busiest} in any minute "
        f"(budget {config.rate})",
        f"  {counts}",
    ]
    for result in results.values():
        if result.status in ("FAILED", "CANCELLED"):
            lines.append(f"  {result.status:<9} {result.job_id}  {result.reason or ''}")
    print("\n".join(lines), file=stderr)
