"""Fault injection: each kind does what it claims, deterministically, only where it applies."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from async_poller import testing
from async_poller.clock import Clock, SystemClock
from async_poller.errors import ConfigError
from async_poller.simulator import FAULT_KINDS, FaultPlan, Simulator, SimulatorConfig

REFRESH = "/external/api/v1/auth/user-token/refresh"
STATUS = "/external/client/api/v1/agent/install/status"
INSTALL = "/external/client/api/v1/agent/install"
ALWAYS = (0.0, math.inf)


class SteppedClock(testing.SteppedClock):
    """A `SteppedClock` whose timeouts say they began (the simulator times only its stalls)."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = asyncio.Event()

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[None]:
        self.stalled.set()
        return super().timeout(seconds)


@dataclass
class Target:
    """A simulator with a fault plan, a session, a valid token and one job (10 s phases)."""

    sim: Simulator
    session: aiohttp.ClientSession
    headers: dict[str, str]
    job_id: int

    def get(self, job_id: int | None = None, timeout: float | None = None) -> Any:
        """A status request for `job_id` (default: the job), used as `async with`."""
        return self.session.get(
            STATUS,
            params={"id": str(job_id or self.job_id)},
            headers=self.headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        )

    async def status(self, job_id: int | None = None) -> tuple[int, Any]:
        async with self.get(job_id) as response:
            raw = await response.read()
            return response.status, orjson.loads(raw) if raw else None


Start = Callable[..., Awaitable[Target]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start a simulator whose every request gets `kind` (or that follows `plan`)."""
    async with contextlib.AsyncExitStack() as stack:

        async def run(
            kind: str | None = None,
            *,
            plan: FaultPlan | None = None,
            clock: Clock | None = None,
            seed: int = 7,
        ) -> Target:
            plan = plan or FaultPlan(windows=((*ALWAYS, kind),) if kind else ())
            settings = SimulatorConfig(seed=seed, unknown_rate=0.0, faults=plan)
            sim = await stack.enter_async_context(
                Simulator(settings, clock=clock or SteppedClock())
            )
            session = await stack.enter_async_context(aiohttp.ClientSession(sim.base_url))
            headers = {"X-Authtype": "lucidity_access_token", "Authorization": ""}
            headers["Authorization"] = sim.issue_access_token()
            [job_id] = sim.create_jobs(
                1, outcome="COMPLETED", queued_s=10, preparing_s=10, processing_s=10
            )
            return Target(sim, session, headers, job_id)

        yield run


@pytest.mark.parametrize(
    ("kind", "code", "body"),
    [
        ("http_500", 500, "INTERNAL_ERROR"),
        ("http_502", 502, None),
        ("http_503", 503, None),
        ("http_504", 504, None),
    ],
)
async def test_server_errors(start: Start, kind: str, code: int, body: str | None) -> None:
    """http_5xx kinds answer that status: 500 with an envelope A error, the others empty."""
    target = await start(kind)
    status, reply = await target.status()
    assert status == code
    assert (reply["error"]["code"] if reply else None) == body
    [record] = target.sim.requests
    assert (record.http_status, record.fault, record.job_id) == (code, kind, target.job_id)


# The SteppedClock's wall time is 2027-01-15T08:16:40Z; injected Retry-After is 5 s later.
RETRY_AFTER = {
    "seconds": "5",
    "http_date": "Fri, 15 Jan 2027 08:16:45 GMT",
    "rfc850_date": "Friday, 15-Jan-27 08:16:45 GMT",
    "asctime_date": "Fri Jan 15 08:16:45 2027",
    "invalid": "soon",
}


@pytest.mark.parametrize("code", [429, 503])
@pytest.mark.parametrize("form", sorted(RETRY_AFTER))
async def test_retry_after_in_every_form(start: Start, code: int, form: str) -> None:
    """Throttling kinds send 429/503 with Retry-After written in the kind's form."""
    kind = f"http_{code}_retry_after_{form}"
    target = await start(kind)
    async with target.get() as response:
        assert response.status == code
        assert response.headers["Retry-After"] == RETRY_AFTER[form]
        if code == 429:
            assert (await response.json())["error"]["code"] == "RATE_LIMITED"
    [record] = target.sim.requests
    assert record.retry_after == (None if form == "invalid" else 5.0)
    assert record.fault == kind


async def test_hang_never_answers(start: Start) -> None:
    """hang sends no status line: the client's timeout fires; the log says no answer."""
    target = await start("hang")
    with pytest.raises(TimeoutError):
        async with target.get(timeout=0.1):
            pass
    [record] = target.sim.requests
    assert (record.http_status, record.fault) == (None, "hang")


async def test_hang_ends_by_dropping_the_connection(start: Start) -> None:
    """After hang_s simulated seconds a hang closes the connection without an answer."""
    plan = FaultPlan(windows=((*ALWAYS, "hang"),), hang_s=30.0)
    target = await start(plan=plan, clock=SystemClock(scale=1000.0))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await target.status()


async def test_stop_ends_a_hang_at_once(start: Start) -> None:
    """Stopping the simulator drops a hanging request instead of waiting for it."""
    clock = SteppedClock()
    target = await start("hang", clock=clock)
    pending = asyncio.create_task(target.status())
    await clock.stalled.wait()
    await target.sim.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await pending


async def test_slow_body_trickles_a_valid_answer(start: Start) -> None:
    """slow_body sends the true answer in several pieces over slow_body_s seconds."""
    plan = FaultPlan(windows=((*ALWAYS, "slow_body"),), slow_body_s=8.0)
    target = await start(plan=plan, clock=SystemClock(scale=100.0))
    async with target.get() as response:
        assert response.status == 200
        pieces = [piece async for piece in response.content.iter_any()]
    assert len(pieces) > 1
    assert orjson.loads(b"".join(pieces))["data"]["id"] == target.job_id
    assert target.sim.requests[0].fault == "slow_body"


async def test_reset_before_closes_without_answering(start: Start) -> None:
    """reset_before drops the connection before any byte of an answer."""
    target = await start("reset_before")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await target.status()
    assert {record.http_status for record in target.sim.requests} == {None}


async def test_reset_mid_body_cuts_the_body(start: Start) -> None:
    """reset_mid_body sends the headers and half the body, then drops the connection."""
    target = await start("reset_mid_body")
    async with target.get() as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_truncated_json_is_not_json(start: Start) -> None:
    """truncated_json sends a complete response whose JSON body stops halfway."""
    target = await start("truncated_json")
    async with target.get() as response:
        assert (response.status, response.content_type) == (200, "application/json")
        body = await response.read()
    assert body.startswith(b'{"success":true')
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)


async def test_html_error_is_a_gateway_page(start: Start) -> None:
    """html_error answers 502 with an HTML page, as a load balancer would."""
    target = await start("html_error")
    async with target.get() as response:
        assert (response.status, response.content_type) == (502, "text/html")
        assert b"<title>502 Bad Gateway</title>" in await response.read()


async def test_oversized_body_is_valid_but_huge(start: Start) -> None:
    """oversized_body is the true answer padded past 1 MiB, still valid JSON."""
    target = await start("oversized_body")
    async with target.get() as response:
        body = await response.read()
    assert len(body) > 1024 * 1024
    assert orjson.loads(body)["data"]["id"] == target.job_id


async def test_wrong_id_answers_for_another_job(start: Start) -> None:
    """wrong_id answers with another job's data, or a neighbouring id if there is no other."""
    target = await start("wrong_id")
    assert (await target.status())[1]["data"]["id"] == target.job_id + 1
    [other] = target.sim.create_jobs(1)
    assert (await target.status())[1]["data"]["id"] == other


async def test_unknown_status_is_an_unlisted_word(start: Start) -> None:
    """unknown_status reports a status outside the lifecycle."""
    target = await start("unknown_status")
    assert (await target.status())[1]["data"]["status"] == "REBOOTING"


async def test_status_backwards_goes_back_once_per_job(start: Start) -> None:
    """status_backwards reports the phase before the true one, once per job."""
    clock = SteppedClock()
    target = await start("status_backwards", clock=clock)
    assert (await target.status())[1]["data"]["status"] == "QUEUED"  # nothing before QUEUED
    clock.t += 25  # PROCESSING
    assert (await target.status())[1]["data"]["status"] == "PREPARING"
    assert (await target.status())[1]["data"]["status"] == "PROCESSING"
    assert [r.fault for r in target.sim.requests] == [None, "status_backwards", None]


async def test_data_faults_leave_errors_alone(start: Start) -> None:
    """A data fault cannot apply to a 404, which is then sent unchanged and unrecorded."""
    target = await start("wrong_id")
    assert (await target.status(12345))[0] == 404
    assert target.sim.requests[0].fault is None


async def test_token_500_fails_the_refresh_only(start: Start) -> None:
    """token_500 answers refreshes with 500 in envelope B; status requests are unaffected."""
    target = await start("token_500")
    async with target.session.post(REFRESH, json={"refreshToken": target.sim.refresh_token}) as r:
        assert r.status == 500
        assert (await r.json())["status"] == 500
    assert (await target.status())[0] == 200


async def test_token_hang_stalls_the_refresh(start: Start) -> None:
    """token_hang never answers a refresh."""
    target = await start("token_hang")
    timeout = aiohttp.ClientTimeout(total=0.1)
    with pytest.raises(TimeoutError):
        await target.session.post(REFRESH, json={"refreshToken": "x"}, timeout=timeout)


async def test_status_faults_spare_refresh_and_install(start: Start) -> None:
    """A status fault window leaves the refresh and install endpoints alone."""
    target = await start("http_500")
    async with target.session.post(REFRESH, json={"refreshToken": target.sim.refresh_token}) as r:
        assert r.status == 200
    install = {"cloudProvider": "GCP", "cloudProviderAccountId": "p", "instanceIds": ["1"]}
    async with target.session.post(INSTALL, json=install, headers=target.headers) as r:
        assert r.status == 200


async def test_windows_apply_between_start_and_end(start: Start) -> None:
    """A scripted window faults requests from start_s (inclusive) to end_s (exclusive)."""
    clock = SteppedClock()
    target = await start(plan=FaultPlan(windows=((10.0, 20.0, "http_503"),)), clock=clock)
    seen = []
    for at in (5.0, 10.0, 19.9, 20.0):
        clock.t = 1000.0 + at
        seen.append((await target.status())[0])
    assert seen == [200, 503, 503, 200]


async def test_rates_are_deterministic_for_a_seed(start: Start) -> None:
    """The same seed and plan fault the same requests; another seed faults others."""
    plan = FaultPlan(rates={"http_500": 0.3, "http_503": 0.2})

    async def faults(seed: int) -> list[str | None]:
        target = await start(plan=plan, seed=seed)
        for _ in range(40):
            await target.status()
        return [r.fault for r in target.sim.requests]

    first = await faults(1)
    assert first == await faults(1)
    assert first != await faults(2)
    assert set(first) == {None, "http_500", "http_503"}


async def test_a_rate_of_one_faults_every_request(start: Start) -> None:
    """A rate of 1 injects the fault into every request to its endpoint."""
    target = await start(plan=FaultPlan(rates={"http_502": 1.0}))
    assert [(await target.status())[0] for _ in range(5)] == [502] * 5


async def test_stats_count_faults(start: Start) -> None:
    """/_sim/stats counts the injected faults by kind."""
    target = await start("unknown_status")
    await target.status()
    async with target.session.get("/_sim/stats") as response:
        assert (await response.json())["faults"] == {"unknown_status": 1}


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"rates": {"http_999": 0.1}}, "unknown fault kind"),
        ({"windows": ((0.0, 1.0, "nap"),)}, "unknown fault kind"),
        ({"rates": {"hang": 1.5}}, "between 0 and 1"),
        ({"rates": {"hang": 0.6, "http_500": 0.6}}, "add up to"),
        ({"windows": ((5.0, 5.0, "hang"),)}, "start_s < end_s"),
        ({"hang_s": -1.0}, "hang_s"),
    ],
)
def test_plans_reject_nonsense(plan: dict[str, Any], message: str) -> None:
    """An invalid fault plan raises ConfigError explaining the problem."""
    with pytest.raises(ConfigError, match=message):
        FaultPlan(**plan)


def test_token_and_status_rates_are_budgeted_separately() -> None:
    """Refresh and status fault rates may each add up to 1."""
    FaultPlan(rates={"token_500": 1.0, "http_500": 1.0})


@pytest.mark.parametrize("kind", sorted(FAULT_KINDS))
async def test_every_kind_is_injected_and_recorded(start: Start, kind: str) -> None:
    """Every fault kind can be injected, and the request log names it."""
    clock = SteppedClock()
    target = await start(kind, clock=clock)
    clock.t += 25  # PROCESSING, so that status_backwards has somewhere to go
    timeout = aiohttp.ClientTimeout(total=0.1)
    if kind.startswith("token_"):
        request = target.session.post(REFRESH, json={"refreshToken": "x"}, timeout=timeout)
    else:
        request = target.get(timeout=0.1)
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with request as response:
            await response.read()
    # aiohttp resends an idempotent request once after a reset, so there may be two.
    assert {record.fault for record in target.sim.requests} == {kind}
