"""Transport and StatusClient over real HTTP: one request per slot, capped bodies, no redirects."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import random
from collections.abc import AsyncIterator
from typing import cast

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from async_poller._lucidity.auth import REFRESH_PATH, RefreshTokenProvider
from async_poller._lucidity.client import STATUS_PATH, StatusClient
from async_poller._lucidity.transport import Transport, TransportError, open_session
from async_poller._pacing.budget import RateBudget
from async_poller._pacing.delays import DelayPolicy
from async_poller.clock import SystemClock
from async_poller.config import Rate
from async_poller.simulator import FaultPlan, Simulator, SimulatorConfig


def quiet_transport(
    session: aiohttp.ClientSession,
    base_url: str,
    budget: RateBudget,
    clock: SystemClock,
    *,
    timeout: float,
) -> Transport:
    """A Transport under test that ignores throttling reports."""
    return Transport(
        session, base_url, budget=budget, clock=clock, timeout=timeout, on_throttle=lambda *_: None
    )


async def send_one(base_url: str, path: str, *, request_timeout: float = 600.0) -> None:
    """One request through a real `Transport`, in clock time at 60x. The default timeout is
    10 real seconds: a loaded machine must not turn a reset or a bad body into a timeout."""
    clock = SystemClock(scale=60.0)
    budget = RateBudget(Rate(100, 60.0), clock)
    async with open_session(4, None) as session:
        transport = quiet_transport(session, base_url, budget, clock, timeout=request_timeout)
        try:
            await transport.request("GET", path, priority=0.0, headers={}, params={"id": "1"})
        finally:
            await budget.aclose()


@pytest.mark.parametrize("fault", ["reset_before", "reset_mid_body"])
async def test_a_dropped_connection_is_one_request_not_two(fault: str) -> None:
    """aiohttp's silent resend is off: one call puts exactly one request on the wire."""
    plan = FaultPlan(windows=((0.0, math.inf, fault),))
    async with Simulator(SimulatorConfig(time_scale=60.0, faults=plan)) as simulator:
        [job] = simulator.create_jobs(1)
        with pytest.raises(TransportError) as caught:
            await send_one(
                simulator.base_url, f"/external/client/api/v1/agent/install/status?id={job}"
            )
        assert caught.value.kind == "connection"
        assert len(simulator.requests) == 1


async def test_oversized_bodies_are_refused_unread() -> None:
    """A body over 64 KiB is a bad response, not a memory hog."""
    plan = FaultPlan(windows=((0.0, math.inf, "oversized_body"),))
    async with Simulator(SimulatorConfig(time_scale=60.0, faults=plan)) as simulator:
        with pytest.raises(TransportError, match="body over 65536 bytes") as caught:
            await send_one(simulator.base_url, "/external/client/api/v1/agent/install/status")
        assert caught.value.kind == "bad_response"


async def test_a_hung_server_times_out() -> None:
    """No headers within the request timeout is a timeout failure."""
    plan = FaultPlan(windows=((0.0, math.inf, "hang"),))
    async with Simulator(SimulatorConfig(time_scale=60.0, faults=plan)) as simulator:
        with pytest.raises(TransportError) as caught:
            await send_one(
                simulator.base_url,
                "/external/client/api/v1/agent/install/status",
                request_timeout=6.0,
            )
        assert caught.value.kind == "timeout"


async def test_redirects_are_never_followed(aiohttp_redirect_server: str) -> None:
    """A 302 comes back as it is; the Location is not visited."""
    clock = SystemClock()
    budget = RateBudget(Rate(10, 1.0), clock)
    async with open_session(1, None) as session:
        transport = quiet_transport(session, aiohttp_redirect_server, budget, clock, timeout=5.0)
        response = await transport.request(
            "GET", "/moved", priority=0.0, headers={"Authorization": "secret"}
        )
    await budget.aclose()
    assert response.status == 302


async def test_a_pause_holds_requests_already_waiting_for_a_connection() -> None:
    """A 429 also pauses requests granted a budget slot before it came: with one connection,
    the third request waits out the pause the second one was told."""
    config = SimulatorConfig(time_scale=600.0, rate_limit=1)
    async with Simulator(config) as simulator:
        clock = SystemClock(scale=600.0)
        budget = RateBudget(Rate(100, 60.0), clock, max_in_flight=1)
        async with open_session(1, None) as session:
            transport = quiet_transport(session, simulator.base_url, budget, clock, timeout=5.0)
            await asyncio.gather(
                *(
                    transport.request(
                        "GET", STATUS_PATH, priority=0.0, headers={}, params={"id": "1"}
                    )
                    for _ in range(3)
                )
            )
            await budget.aclose()
    first, second, third = simulator.requests
    assert (first.http_status, second.http_status) == (401, 429)
    assert second.retry_after is not None
    assert third.at >= second.at + second.retry_after - 1.0
    assert third.http_status == 401, "admitted: the simulator's window had passed"


async def test_a_request_that_waited_for_its_slot_sends_the_newest_token() -> None:
    """The token is read when a request goes out: requests queued behind a slow budget while
    the token was renewed send the new one, so every 401 is for the newest token."""
    config = SimulatorConfig(time_scale=600.0, token_ttl=60.0)
    async with Simulator(config) as simulator:
        [job] = simulator.create_jobs(1, processing_s=3600.0)
        clock = SystemClock(scale=600.0)
        budget = RateBudget(Rate(1, 20.0), clock, max_in_flight=1)
        async with open_session(1, None) as session:
            transport = quiet_transport(session, simulator.base_url, budget, clock, timeout=5.0)
            policy = DelayPolicy(10.0, 120.0, random.Random(1))
            tokens = RefreshTokenProvider(simulator.refresh_token, transport, clock, policy)
            client = StatusClient(transport, tokens, clock)
            try:
                await asyncio.gather(*(client.check(job, priority=n) for n in range(8)))
            finally:
                await tokens.aclose()
                await budget.aclose()
    refreshes = [r for r in simulator.requests if r.path == REFRESH_PATH]
    rejected = [r for r in simulator.requests if r.http_status == 401]
    assert rejected, "the run outlived a token"
    assert len(rejected) == len(refreshes) - 1, "each 401 renewed the token once"


@pytest.fixture
async def aiohttp_redirect_server() -> AsyncIterator[str]:
    visited: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    async def elsewhere(request: web.Request) -> web.Response:
        visited.append(request.headers.get("Authorization", ""))
        return web.Response(text="should not be here")

    app = web.Application()
    app.router.add_get("/moved", moved)
    app.router.add_get("/elsewhere", elsewhere)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()
    assert visited == []


@pytest.mark.parametrize(
    ("status", "headers", "pause"),
    [
        (503, {}, 0.0),  # nginx limit_req's default answer: slow down, nobody pauses
        (429, {}, 5.0),  # no Retry-After: the default pause
        (503, {"Retry-After": "7"}, 7.0),
        (429, {"Retry-After": "3"}, 3.0),
        (429, {"Retry-After": "3600"}, 600.0),  # more than 10 minutes: clamped to 10
        (503, {"Retry-After": "86400"}, 600.0),
    ],
)
async def test_every_overload_answer_lowers_the_rate(
    status: int, headers: dict[str, str], pause: float
) -> None:
    """429 and 503, with or without Retry-After, lower the budget's rate; only a
    Retry-After (or a bare 429) pauses everyone, and never for more than 10 minutes."""
    reports: list[tuple[float, Rate]] = []
    async with answering(status, headers) as base_url:
        clock = SystemClock(scale=60.0)
        budget = RateBudget(Rate(40, 60.0), clock)
        async with open_session(1, None) as session:
            transport = Transport(
                session,
                base_url,
                budget=budget,
                clock=clock,
                timeout=5.0,
                on_throttle=lambda pause, rate: reports.append((pause, rate)),
            )
            await transport.request("GET", "/", priority=0.0, headers={})
            assert budget.paused_for() == pytest.approx(pause, abs=0.5)
        await budget.aclose()
    [(reported_pause, rate)] = reports
    assert (pause, "28/min") == (reported_pause, str(rate))


async def test_other_server_errors_leave_the_rate_alone() -> None:
    """A 500 is a failure of one request, not a sign of overload."""
    async with answering(500, {}) as base_url:
        clock = SystemClock(scale=60.0)
        budget = RateBudget(Rate(40, 60.0), clock)
        async with open_session(1, None) as session:
            transport = quiet_transport(session, base_url, budget, clock, timeout=5.0)
            await transport.request("GET", "/", priority=0.0, headers={})
        await budget.aclose()
    assert "40/min" == str(budget.rate)


@contextlib.asynccontextmanager
async def answering(status: int, headers: dict[str, str]) -> AsyncIterator[str]:
    """A server on an ephemeral loopback port that answers every request `status`."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, headers=headers, text="busy")

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_a_100_kb_header_is_a_bad_response_not_a_connection_failure() -> None:
    """A server answering with a 100 KB header gets counted as a bad answer (and so given up
    on in time), not retried to the deadline as a broken connection."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TransportError) as caught:
            await send_one(f"http://127.0.0.1:{port}", STATUS_PATH)
    finally:
        server.close()
        await server.wait_closed()
    assert "bad_response" == caught.value.kind
    assert "aaaa" not in caught.value.message


class OutOfFiles:
    """A session whose every request fails like a process out of file descriptors."""

    def request(self, *args: object, **kwargs: object) -> object:
        raise OSError(errno.EMFILE, "Too many open files")


async def test_running_out_of_file_descriptors_says_how_to_fix_it() -> None:
    """EMFILE: the error names `ulimit -n` and --concurrency, and a warning says so once."""
    clock = SystemClock(scale=60.0)
    budget = RateBudget(Rate(100, 60.0), clock)
    session = cast(aiohttp.ClientSession, OutOfFiles())
    transport = quiet_transport(session, "http://127.0.0.1:9", budget, clock, timeout=5.0)
    messages = []
    with capture_logs() as logs:
        for _ in range(3):
            with pytest.raises(TransportError) as caught:
                await transport.request("GET", STATUS_PATH, priority=0.0, headers={})
            messages.append(caught.value.message)
    await budget.aclose()
    assert all("ulimit -n" in message and "--concurrency" in message for message in messages)
    assert 1 == sum(entry["event"] == "too_many_open_files" for entry in logs)
