"""Behind a real nginx `limit_req`: every job right, and few requests refused.

nginx's limiter runs in real time, so here the simulator and the client do too (time scale
1): jobs last about 15 real seconds, and the client's budget spacing is real. nginx admits
10 requests per second (one per 100 ms, no burst); the client asks for 8 per second, one per
125 ms, a margin event-loop jitter cannot eat. 30 jobs with a 1-4 s poll delay want far more
than 8 requests per second, so the budget, not the jobs, sets the pace.

Run them alone with `pytest -m nginx`; they need an nginx binary (Debian's nginx-light,
which .ci/run installs), and are skipped without one, except in CI (CI=true), where a
missing nginx fails them.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

from async_poller.simulator import Simulator

from .helpers import (
    CliRun,
    assert_true_results,
    clean_env,
    ids_arg,
    run_cli,
    true_exit_code,
    true_statuses,
)
from .nginx import Nginx, NginxLimit, find_nginx, free_port, required, running_nginx

REAL_TIME_JOBS: Final[dict[str, Any]] = {
    "time_scale": 1.0,
    "queued_s": 2.0,
    "preparing_s": 2.0,
    "processing_s": 10.0,
    "spread": 0.3,
    "rate_limit": 1_000_000,
}
"""Jobs of about 15 real seconds; the simulator's own limit out of the way, so only nginx's
refuses anything."""

JOBS: Final = 30
PACING: Final = ("--min-delay", "1s", "--max-delay", "4s", "--deadline", "50s")
"""Real seconds (the client runs at time scale 1); the deadline leaves 20 s of slack after
the longest job, and bounds a run that goes wrong."""

pytestmark = [pytest.mark.e2e, pytest.mark.simulator(**REAL_TIME_JOBS)]


@pytest.fixture
async def nginx(
    simulator: Simulator, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Nginx]:
    """nginx in front of the simulator; `@pytest.mark.nginx(**limit)` sets its `NginxLimit`."""
    marker = request.node.get_closest_marker("nginx")
    limit = NginxLimit(**(marker.kwargs if marker else {}))
    async with running_nginx(
        nginx_binary(), simulator.base_url, limit, tmp_path / "nginx"
    ) as running:
        yield running


def nginx_binary() -> str:
    """The nginx binary; skip the test without one, but fail it in CI, where there must be."""
    return required(find_nginx(), "nginx-light")


async def poll_through(nginx: Nginx, simulator: Simulator, rate: str) -> CliRun:
    """`async-poller poll --rate RATE` of `JOBS` new jobs, through nginx, in real time."""
    ids = simulator.create_jobs(JOBS)
    env = clean_env(
        LUCIDITY_BASE_URL=nginx.base_url, LUCIDITY_REFRESH_TOKEN=simulator.refresh_token
    )
    return await run_cli("poll", "--seed", "1", "--rate", rate, *PACING, *ids_arg(ids), env=env)


def assert_ground_truth(run: CliRun, simulator: Simulator, nginx: Nginx) -> None:
    """One result per job, each the simulator's true final status."""
    context = f"{nginx.refusals()}; counts {run.summary['counts']}"
    assert_true_results(simulator, run.results, context=context)
    assert run.code == true_exit_code(simulator, true_statuses(simulator)), context


@pytest.mark.nginx
async def test_nginx_refuses_a_burst_and_admits_evenly_spaced_requests(
    nginx: Nginx, simulator: Simulator
) -> None:
    """The harness is fair and bites: requests 125 ms apart pass a 10r/s nginx (one refusal
    in 24 tolerated for a hiccup of a loaded machine), while of 8 sent at once nginx refuses
    most with a 503, as its access log shows."""
    url = nginx.base_url + "/external/client/api/v1/agent/install/status?id=1"
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:

        async def send() -> int:
            async with session.get(url) as response:
                await response.read()
                return response.status

        sent_at = -1.0
        for _ in range(24):
            await asyncio.sleep(max(0.0, sent_at + 0.125 - loop.time()))
            sent_at = loop.time()
            await send()
        spaced = len(await nginx.logged(24)), len(nginx.refused())
        await asyncio.sleep(0.2)
        statuses = await asyncio.gather(*(send() for _ in range(8)))
    await nginx.logged(24 + 8)

    assert 24 == spaced[0]
    assert spaced[1] <= 1, f"{spaced[1]} of 24 evenly spaced requests refused"
    assert 6 <= statuses.count(503) == len(nginx.refused()) - spaced[1]
    assert 24 + 8 - len(nginx.refused()) == len(simulator.requests)


@pytest.mark.nginx
async def test_nginx_moves_to_another_port_when_its_port_is_taken(
    simulator: Simulator, tmp_path: Path
) -> None:
    """A port taken between picking it and nginx binding it costs one retry, not the test."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken: int = squatter.getsockname()[1]
        ports = iter([taken])
        async with (
            running_nginx(
                nginx_binary(),
                simulator.base_url,
                NginxLimit(),
                tmp_path,
                pick_port=lambda: next(ports, None) or free_port(),
            ) as nginx,
            aiohttp.ClientSession() as session,
            session.get(nginx.base_url) as answer,
        ):
            await answer.read()

    assert taken != nginx.port
    assert 404 == answer.status, "the simulator's 404, through nginx"


@pytest.mark.nginx(rate="10r/s", burst=0)
async def test_a_client_below_nginx_rate_is_rarely_refused(
    nginx: Nginx, simulator: Simulator
) -> None:
    """At 8/s against nginx's 10r/s leaky bucket (no burst, plain 503s), every job ends with
    its true status and nginx refuses at most 5% of the requests."""
    run = await poll_through(nginx, simulator, "8/s")

    assert_ground_truth(run, simulator, nginx)
    assert nginx.refused_share() <= 0.05, nginx.refusals()


@pytest.mark.nginx(rate="10r/s", burst=0)
async def test_a_client_above_nginx_rate_adapts(nginx: Nginx, simulator: Simulator) -> None:
    """At 12/s against nginx's 10r/s, the client slows down on the 503s (which carry no
    Retry-After): every job ends with its true status, and nginx refuses at most 15%."""
    run = await poll_through(nginx, simulator, "12/s")

    assert_ground_truth(run, simulator, nginx)
    assert nginx.refused_share() <= 0.15, nginx.refusals()


@pytest.mark.nginx(rate="10r/s", burst=5, nodelay=True, status=429)
async def test_a_burst_allowance_answering_429_is_rarely_refused(
    nginx: Nginx, simulator: Simulator
) -> None:
    """Against nginx's 10r/s with `burst=5 nodelay` and 429s (no Retry-After), a client at
    8/s gets every job right, and nginx refuses at most 5% of the requests."""
    run = await poll_through(nginx, simulator, "8/s")

    assert_ground_truth(run, simulator, nginx)
    assert nginx.refused_share() <= 0.05, nginx.refusals()
