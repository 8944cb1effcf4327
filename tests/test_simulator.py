"""The Lucidity API simulator: faithful endpoints, lifecycles, rate limit and ground truth.

Real HTTP against the simulator on an ephemeral loopback port. Time is a `SteppedClock` that
moves only when a test says so (safe with sockets, unlike `VirtualClock`), so nothing sleeps.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import statistics
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import async_poller.simulator as simulator_package
from async_poller.errors import ConfigError
from async_poller.simulator import JobTruth, RequestRecord, Simulator, SimulatorConfig
from async_poller.simulator.serve import add_simulate_arguments, run_simulate
from async_poller.testing import SteppedClock

from .helpers import examples

REFRESH = "/external/api/v1/auth/user-token/refresh"
STATUS = "/external/client/api/v1/agent/install/status"
INSTALL = "/external/client/api/v1/agent/install"
MAX_LONG = 2**63 - 1
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
AWS_INSTALL = {"cloudProvider": "AWS", "cloudProviderAccountId": "123456789012"}


def config(**overrides: Any) -> SimulatorConfig:
    """Test settings: seeded, and no UNKNOWN blips unless a test asks for them."""
    return SimulatorConfig(**{"seed": 7, "unknown_rate": 0.0, **overrides})


@dataclass
class Client:
    """A thin HTTP client for the simulator, holding an access token once logged in."""

    sim: Simulator
    session: aiohttp.ClientSession
    clock: SteppedClock
    token: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    async def call(
        self, method: str, path: str, *, json: Any = None, data: bytes | None = None, **kw: Any
    ) -> tuple[int, Any, Mapping[str, str]]:
        """Send a request; returns (status, parsed JSON body or None, headers)."""
        async with self.session.request(method, path, json=json, data=data, **kw) as response:
            raw = await response.read()
            return response.status, orjson.loads(raw) if raw else None, response.headers

    async def login(self) -> str:
        status, body, _ = await self.call(
            "POST", REFRESH, json={"refreshToken": self.sim.refresh_token}
        )
        assert status == 200
        self.token = body["accessToken"]
        self.headers = {"X-Authtype": "lucidity_access_token", "Authorization": self.token}
        return self.token

    async def status(self, job_id: int | str) -> tuple[int, Any]:
        status, body, _ = await self.call(
            "GET", STATUS, params={"id": str(job_id)}, headers=self.headers
        )
        return status, body

    async def install(self, body: Any) -> tuple[int, Any]:
        status, reply, _ = await self.call("POST", INSTALL, json=body, headers=self.headers)
        return status, reply


Connect = Callable[..., Awaitable[Client]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Start a simulator on 127.0.0.1:0 with a SteppedClock and return a logged-in client."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(simulated: SimulatorConfig | None = None, *, login: bool = True) -> Client:
            clock = SteppedClock()
            sim = await stack.enter_async_context(Simulator(simulated or config(), clock=clock))
            session = await stack.enter_async_context(aiohttp.ClientSession(sim.base_url))
            client = Client(sim, session, clock)
            if login:
                await client.login()
            return client

        yield start


# --- tokens and auth ---------------------------------------------------------------------


async def test_refresh_returns_a_bare_access_token(connect: Connect) -> None:
    """A valid refresh token gets 200 and a bare {"accessToken"} object with a new token."""
    client = await connect(login=False)
    status, body, _ = await client.call(
        "POST", REFRESH, json={"refreshToken": client.sim.refresh_token}
    )
    assert status == 200
    assert list(body) == ["accessToken"]
    assert body["accessToken"] in client.sim.issued_tokens
    assert await client.login() != body["accessToken"]


@pytest.mark.parametrize(
    "payload",
    [b'{"refreshToken": "nope"}', b"{}", b'{"refreshToken": null}', b"not json", b"[1]"],
)
async def test_refresh_rejections_use_envelope_b(connect: Connect, payload: bytes) -> None:
    """A wrong, missing or malformed refresh token gets 400 in envelope B."""
    client = await connect(login=False)
    status, body, _ = await client.call("POST", REFRESH, data=payload)
    assert status == 400
    assert set(body) == {"message", "status", "data", "trackingCode"}
    assert (body["status"], body["data"]) == (400, None)
    assert not client.sim.issued_tokens


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Authtype": "lucidity_access_token"},
        {"Authorization": "TOKEN"},
        {"X-Authtype": "bearer", "Authorization": "TOKEN"},
        {"X-Authtype": "lucidity_access_token", "Authorization": "Bearer TOKEN"},
        {"X-Authtype": "lucidity_access_token", "Authorization": "made-up-token"},
    ],
)
async def test_status_needs_both_auth_headers(connect: Connect, headers: dict[str, str]) -> None:
    """Missing headers, a Bearer prefix or an unknown token get 401 UNAUTHORIZED."""
    client = await connect()
    [job_id] = client.sim.create_jobs(1)
    sent = {name: value.replace("TOKEN", client.token) for name, value in headers.items()}
    status, body, _ = await client.call("GET", STATUS, params={"id": str(job_id)}, headers=sent)
    assert status == 401
    assert body["error"]["code"] == "UNAUTHORIZED"
    assert client.token not in orjson.dumps(body).decode()


async def test_access_token_expires_after_its_ttl(connect: Connect) -> None:
    """A token works until token_ttl simulated seconds have passed, then gets 401."""
    client = await connect(config(token_ttl=900.0))
    [job_id] = client.sim.create_jobs(1)
    client.clock.advance(899.9)
    assert (await client.status(job_id))[0] == 200
    client.clock.advance(0.1)
    status, body = await client.status(job_id)
    assert status == 401
    assert body["error"]["message"] == "Access token is invalid or expired"


async def test_issue_access_token_works_without_http(connect: Connect) -> None:
    """`issue_access_token` gives a usable token and records it as issued."""
    client = await connect(login=False)
    [job_id] = client.sim.create_jobs(1)
    token = client.sim.issue_access_token()
    client.headers = {"X-Authtype": "lucidity_access_token", "Authorization": token}
    assert (await client.status(job_id))[0] == 200
    assert client.sim.issued_tokens == {token}
    assert not client.sim.requests[0].path.endswith("refresh")


def test_a_fixed_refresh_token_is_used() -> None:
    """`SimulatorConfig.refresh_token` is the refresh token; otherwise a random one is made."""
    assert Simulator(config(refresh_token="rt-fixed-123")).refresh_token == "rt-fixed-123"
    assert Simulator(config()).refresh_token != Simulator(config()).refresh_token


# --- status answers --------------------------------------------------------------------------


async def test_status_answer_in_envelope_a(connect: Connect) -> None:
    """By default a status answer is envelope A with the job's data and a request id."""
    client = await connect()
    [job_id] = client.sim.create_jobs(1, instances=2, cloud_provider="AWS")
    status, body = await client.status(job_id)
    assert status == 200
    assert set(body) == {"success", "data", "error", "requestId"}
    assert (body["success"], body["error"]) == (True, None)
    assert UUID.fullmatch(body["requestId"])
    data = body["data"]
    assert list(data) == ["id", "status", "cloudProvider", "createdAt", "updatedAt", "instances"]
    assert (data["id"], data["status"], data["cloudProvider"]) == (job_id, "QUEUED", "AWS")
    assert ISO.fullmatch(data["createdAt"])
    assert [i["status"] for i in data["instances"]] == ["QUEUED", "QUEUED"]
    assert all(re.fullmatch(r"i-0[0-9a-f]{16}", i["instanceId"]) for i in data["instances"])


@pytest.mark.parametrize("envelope", ["B", "C"])
async def test_status_answer_in_envelopes_b_and_c(connect: Connect, envelope: str) -> None:
    """Envelope B wraps the data with message/status/trackingCode; C is the bare data."""
    client = await connect(config(envelope=envelope))
    [job_id] = client.sim.create_jobs(1)
    status, body = await client.status(job_id)
    assert status == 200
    if envelope == "B":
        assert set(body) == {"message", "status", "data", "trackingCode"}
        assert body["status"] == 200
        body = body["data"]
    assert (body["id"], body["status"]) == (job_id, "QUEUED")


async def test_errors_follow_envelope_b(connect: Connect) -> None:
    """When the API speaks envelope B, its 404 is a B error too."""
    client = await connect(config(envelope="B"))
    status, body = await client.status(42)
    assert status == 404
    assert (body["status"], body["data"]) == (404, None)
    assert "42" in body["message"]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?id=",
        "?id=abc",
        "?id=-1",
        "?id=0",
        "?id=+5",
        "?id=1.0",
        "?id=1e3",
        "?id=%205",
        "?id=0x1F",
        "?id=%EF%BC%91",
        f"?id={MAX_LONG + 1}",
        "?id=" + "9" * 5000,
        "?id=5&id=6",
    ],
)
async def test_invalid_ids_get_400(connect: Connect, query: str) -> None:
    """An id that is missing, repeated or not a positive signed 64-bit integer gets 400."""
    client = await connect()
    status, body, _ = await client.call("GET", STATUS + query, headers=client.headers)
    assert status == 400
    assert body["error"]["code"] == "INVALID_REQUEST"


async def test_unknown_ids_get_404(connect: Connect) -> None:
    """A well-formed id the API does not know gets 404 NOT_FOUND, the largest Long included."""
    client = await connect()
    for job_id in (1, MAX_LONG):
        status, body = await client.status(job_id)
        assert status == 404
        assert body["error"]["code"] == "NOT_FOUND"


async def test_leading_zeros_name_the_same_job(connect: Connect) -> None:
    """An id's value is what counts: 000123 is job 123."""
    client = await connect()
    [job_id] = client.sim.create_jobs(1)
    status, body = await client.status(f"000{job_id}")
    assert (status, body["data"]["id"]) == (200, job_id)


# --- lifecycles ----------------------------------------------------------------------------


async def test_status_follows_the_true_timeline(connect: Connect) -> None:
    """As time passes the answers walk QUEUED, PREPARING, PROCESSING, COMPLETED, as truth says."""
    client = await connect()
    [job_id] = client.sim.create_jobs(
        1, outcome="COMPLETED", queued_s=10, preparing_s=20, processing_s=30
    )
    [truth] = client.sim.truth()
    start = client.clock.t
    assert [(s, at - start) for s, at in truth.timeline] == [
        ("QUEUED", 0),
        ("PREPARING", 10),
        ("PROCESSING", 30),
        ("COMPLETED", 60),
    ]
    seen = []
    for at in (0, 9.9, 10, 29, 30, 59, 60, 600):
        client.clock.t = start + at
        seen.append((await client.status(job_id))[1]["data"]["status"])
    assert seen == [
        "QUEUED",
        "QUEUED",
        "PREPARING",
        "PREPARING",
        "PROCESSING",
        "PROCESSING",
        "COMPLETED",
        "COMPLETED",
    ]
    assert (truth.final_status, truth.final_at) == ("COMPLETED", start + 60)


async def test_updated_at_is_the_simulated_wall_time_of_the_last_change(connect: Connect) -> None:
    """createdAt/updatedAt are the simulated wall clock at creation and at the last change."""
    client = await connect()
    [job_id] = client.sim.create_jobs(1, queued_s=10, preparing_s=20, processing_s=30)
    client.clock.advance(15)
    data = (await client.status(job_id))[1]["data"]
    assert data["createdAt"] == "2027-01-15T08:16:40.000Z"  # wall 1_800_000_000 + 1000
    assert data["updatedAt"] == "2027-01-15T08:16:50.000Z"


async def test_failed_jobs_carry_reasons_and_failed_instances(connect: Connect) -> None:
    """A FAILED job has a failureReason and at least one FAILED instance with its own reason."""
    client = await connect()
    [job_id] = client.sim.create_jobs(1, outcome="FAILED", instances=4, processing_s=10)
    client.clock.advance(10_000)
    await client.login()
    data = (await client.status(job_id))[1]["data"]
    assert data["status"] == "FAILED"
    assert data["failureReason"] == client.sim.truth()[0].failure_reason
    failed = [i for i in data["instances"] if i["status"] == "FAILED"]
    assert failed
    assert all(i["failureReason"] and i["instanceId"] in i["failureReason"] for i in failed)
    assert all("failureReason" not in i for i in data["instances"] if i["status"] == "COMPLETED")


async def test_cancelled_jobs_carry_a_reason(connect: Connect) -> None:
    """A CANCELLED job says why, and so do none of its instances."""
    client = await connect()
    [job_id] = client.sim.create_jobs(1, outcome="CANCELLED")
    client.clock.advance(100_000)
    await client.login()
    data = (await client.status(job_id))[1]["data"]
    assert data["status"] == "CANCELLED"
    assert data["failureReason"].startswith("Cancelled")
    assert {i["status"] for i in data["instances"]} == {"CANCELLED"}


async def test_unknown_blips_only_for_live_jobs(connect: Connect) -> None:
    """With unknown_rate=1 a live job reads UNKNOWN, a final one never; truth has no UNKNOWN."""
    client = await connect(config(unknown_rate=1.0))
    [done] = client.sim.create_jobs(1, outcome="COMPLETED", processing_s=10)
    client.clock.advance(5_000)
    await client.login()
    [live] = client.sim.create_jobs(1)
    assert (await client.status(live))[1]["data"]["status"] == "UNKNOWN"
    assert (await client.status(done))[1]["data"]["status"] == "COMPLETED"
    assert "UNKNOWN" not in {s for job in client.sim.truth() for s, _ in job.timeline}


def test_same_seed_same_jobs() -> None:
    """Job ids and timelines are reproducible from the seed and creation order alone."""

    def jobs(seed: int) -> list[JobTruth]:
        sim = Simulator(config(seed=seed), clock=SteppedClock())
        sim.create_jobs(20)
        return sim.truth()

    assert jobs(3) == jobs(3)
    assert [j.id for j in jobs(3)] != [j.id for j in jobs(4)]


def test_fixing_one_job_leaves_the_next_jobs_unchanged() -> None:
    """Overrides for one job do not shift the random stream of the jobs created after it."""
    plain = Simulator(config(), clock=SteppedClock())
    fixed = Simulator(config(), clock=SteppedClock())
    plain.create_jobs(1)
    fixed.create_jobs(1, outcome="FAILED", processing_s=1)
    plain.create_jobs(5)
    fixed.create_jobs(5)
    assert plain.truth()[1:] == fixed.truth()[1:]


@settings(max_examples=examples(50), deadline=None)
@given(
    seed=st.integers(0, 2**32),
    spread=st.floats(0.0, 2.0),
    outcomes=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0.01, 1)),
)
def test_every_lifecycle_is_well_formed(
    seed: int, spread: float, outcomes: tuple[float, float, float]
) -> None:
    """Timelines follow the lifecycle in time order; ids are distinct, rising, 64-bit Longs."""
    sim = Simulator(config(seed=seed, spread=spread, outcomes=outcomes), clock=SteppedClock())
    sim.create_jobs(30)
    allowed = {
        ("QUEUED", "CANCELLED"),
        ("QUEUED", "PREPARING", "PROCESSING", "COMPLETED"),
        ("QUEUED", "PREPARING", "PROCESSING", "FAILED"),
        ("QUEUED", "PREPARING", "PROCESSING", "CANCELLED"),
    }
    ids = [job.id for job in sim.truth()]
    assert ids == sorted(set(ids))
    assert all(10**18 <= job_id <= MAX_LONG for job_id in ids)
    for job in sim.truth():
        assert tuple(s for s, _ in job.timeline) in allowed
        times = [at for _, at in job.timeline]
        assert times == sorted(times)
        assert job.created_at == times[0]
        assert (job.failure_reason is not None) == (job.final_status in ("FAILED", "CANCELLED"))
        statuses = {i.final_status for i in job.instances}
        if job.final_status == "FAILED":
            assert "FAILED" in statuses
        else:
            assert statuses == {job.final_status}


def test_phase_durations_are_lognormal_around_the_medians() -> None:
    """Over many jobs, the median time in each phase is close to its configured median."""
    sim = Simulator(config(outcomes=(1, 0, 0), spread=0.6), clock=SteppedClock())
    sim.create_jobs(2000)
    for phase, median in ((0, 20.0), (1, 30.0), (2, 240.0)):
        durations = [j.timeline[phase + 1][1] - j.timeline[phase][1] for j in sim.truth()]
        assert statistics.median(durations) == pytest.approx(median, rel=0.1)
        assert max(durations) > 2 * median  # spread, not a constant


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rate_limit": 0}, "rate_limit"),
        ({"rate_window": 0}, "rate_window"),
        ({"time_scale": -1}, "time_scale"),
        ({"token_ttl": float("inf")}, "token_ttl"),
        ({"processing_s": -1}, "processing_s"),
        ({"outcomes": (0, 0, 0)}, "outcomes"),
        ({"unknown_rate": 1.5}, "unknown_rate"),
        ({"envelope": "D"}, "envelope"),
        ({"refresh_token": " "}, "refresh_token"),
    ],
)
def test_config_rejects_nonsense(overrides: dict[str, Any], message: str) -> None:
    """Invalid settings raise ConfigError naming the setting."""
    with pytest.raises(ConfigError, match=message):
        config(**overrides)


def test_create_jobs_rejects_impossible_jobs() -> None:
    """Only COMPLETED, FAILED and CANCELLED can be forced, and a job needs an instance."""
    with pytest.raises(ConfigError, match="outcome"):
        Simulator(config()).create_jobs(1, outcome="DONE")
    with pytest.raises(ConfigError, match="instance"):
        Simulator(config()).create_jobs(1, instances=0)


# --- the Agent Install endpoint -------------------------------------------------------------


async def test_install_one_object_creates_one_job(connect: Connect) -> None:
    """One install object creates one QUEUED job covering its instances, in envelope A."""
    client = await connect()
    status, body = await client.install({**AWS_INSTALL, "instanceIds": ["i-1", "i-2"]})
    assert status == 200
    assert (body["success"], body["error"]) == (True, None)
    [created] = body["data"]
    assert created["cloudProvider"] == "AWS"
    assert (created["instanceIds"], created["status"]) == (["i-1", "i-2"], "QUEUED")
    [truth] = client.sim.truth()
    assert truth.id == created["id"]
    assert [i.instance_id for i in truth.instances] == ["i-1", "i-2"]
    assert (await client.status(created["id"]))[1]["data"]["status"] == "QUEUED"


async def test_install_array_creates_a_job_per_object(connect: Connect) -> None:
    """An array of install objects creates one job each, with fresh ids."""
    client = await connect()
    azure = {"cloudProvider": "AZURE", "cloudProviderAccountId": "sub", "resourceGroup": "rg"}
    gcp = {"cloudProvider": "GCP", "cloudProviderAccountId": "my-project"}
    status, body = await client.install(
        [
            {**AWS_INSTALL, "instanceIds": ["i-1"]},
            {**azure, "instanceIds": ["vm-1"]},
            {**gcp, "instanceIds": ["123"]},
        ]
    )
    assert status == 200
    assert [c["cloudProvider"] for c in body["data"]] == ["AWS", "AZURE", "GCP"]
    assert [c["id"] for c in body["data"]] == [job.id for job in client.sim.truth()]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**AWS_INSTALL}, "instanceIds"),
        ({**AWS_INSTALL, "instanceIds": []}, "instanceIds"),
        ({**AWS_INSTALL, "instanceIds": ["i-1", ""]}, "instanceIds"),
        ({"cloudProvider": "AWS", "instanceIds": ["i-1"]}, "cloudProviderAccountId"),
        ({**AWS_INSTALL, "cloudProvider": "aws", "instanceIds": ["i-1"]}, "cloudProvider"),
        ({**AWS_INSTALL, "cloudProvider": "AZURE", "instanceIds": ["vm"]}, "resourceGroup"),
        ([{**AWS_INSTALL, "instanceIds": ["i-1"]}, {"cloudProvider": "GCP"}], "item 1:"),
        ([], "at least one"),
        ("AWS", "JSON object"),
    ],
)
async def test_install_rejects_invalid_requests(connect: Connect, body: Any, message: str) -> None:
    """An invalid install request gets 400 INVALID_REQUEST saying what is wrong; no job is made."""
    client = await connect()
    status, reply = await client.install(body)
    assert status == 400
    assert reply["error"]["code"] == "INVALID_REQUEST"
    assert message in reply["error"]["message"]
    assert client.sim.truth() == []


async def test_install_needs_auth(connect: Connect) -> None:
    """The install endpoint, like status, answers 401 without a valid access token."""
    client = await connect(login=False)
    status, body = await client.install({**AWS_INSTALL, "instanceIds": ["i-1"]})
    assert (status, body["error"]["code"]) == (401, "UNAUTHORIZED")


# --- rate limit and the request log --------------------------------------------------------


async def test_rate_limit_answers_429_with_retry_after(connect: Connect) -> None:
    """Past rate_limit requests in the window: 429 RATE_LIMITED, Retry-After until a slot frees."""
    client = await connect(config(rate_limit=3, rate_window=60.0), login=False)
    start = client.clock.t
    for at in (0, 10, 20):
        client.clock.t = start + at
        assert (await client.status(1))[0] == 401  # answered, so it used a slot
    client.clock.t = start + 30.5
    status, body, headers = await client.call("GET", STATUS, params={"id": "1"})
    assert status == 429
    assert headers["Retry-After"] == "30"  # ceil(60 - 30.5): the t=0 request leaves at t=60
    assert body["error"]["code"] == "RATE_LIMITED"
    client.clock.t = start + 59.9
    assert (await client.status(1))[0] == 429
    client.clock.t = start + 60
    assert (await client.status(1))[0] == 401
    assert client.sim.requests[3].retry_after == 30


async def test_rejected_requests_do_not_use_the_window(connect: Connect) -> None:
    """Requests answered 429 take no slot: the first request's slot frees on time anyway."""
    client = await connect(config(rate_limit=1, rate_window=10.0), login=False)
    assert (await client.status(1))[0] == 401
    for _ in range(5):
        client.clock.advance(1.0)
        assert (await client.status(1))[0] == 429
    client.clock.advance(5.0)
    assert (await client.status(1))[0] == 401


async def test_retry_after_is_at_least_one_second(connect: Connect) -> None:
    """A slot freeing in under a second still announces Retry-After: 1."""
    client = await connect(config(rate_limit=1, rate_window=10.0), login=False)
    await client.status(1)
    client.clock.advance(9.99)
    _, _, headers = await client.call("GET", STATUS, params={"id": "1"})
    assert headers["Retry-After"] == "1"


async def test_every_api_request_counts_toward_the_limit(connect: Connect) -> None:
    """Refresh, status and install requests share one window."""
    client = await connect(config(rate_limit=3))
    await client.status(1)
    await client.install({**AWS_INSTALL, "instanceIds": ["i-1"]})
    assert [r.http_status for r in client.sim.requests] == [200, 404, 200]
    status, _, _ = await client.call("POST", REFRESH, json={"refreshToken": "x"})
    assert status == 429


async def test_max_in_window_counts_arrivals(connect: Connect) -> None:
    """max_in_window counts every arrival by default, and only admitted ones on request."""
    client = await connect(config(rate_limit=2, rate_window=60.0), login=False)
    for at in (0, 1, 2, 3, 70, 71):
        client.clock.t = 1000 + at
        await client.status(1)
    assert [r.http_status for r in client.sim.requests] == [401, 401, 429, 429, 401, 401]
    assert client.sim.max_in_window() == 4
    assert client.sim.max_in_window(admitted_only=True) == 2
    assert client.sim.max_in_window(1.0) == 1
    assert client.sim.max_in_window(71.0) == 5  # 1..71 fit in one window; 0 and 71 do not


async def test_requests_are_recorded_in_arrival_order(connect: Connect) -> None:
    """Each API request is recorded with its time, method, path, job id and answer."""
    client = await connect(login=False)
    await client.login()
    client.clock.advance(5)
    await client.status(123)
    assert client.sim.requests == [
        RequestRecord(at=1000.0, method="POST", path=REFRESH, job_id=None, http_status=200),
        RequestRecord(at=1005.0, method="GET", path=STATUS, job_id=123, http_status=404),
    ]


# --- ground truth over HTTP -----------------------------------------------------------------


async def test_sim_endpoints_are_free_and_unrecorded(connect: Connect) -> None:
    """/_sim/* needs no auth, is not rate limited and does not appear in the request log."""
    client = await connect(config(rate_limit=1), login=False)
    for _ in range(3):
        status, _, _ = await client.call("GET", "/_sim/truth")
        assert status == 200
    assert client.sim.requests == []


async def test_truth_endpoint_serves_truth(connect: Connect) -> None:
    """GET /_sim/truth is the JSON form of truth(), with final status and time."""
    client = await connect()
    [job_id] = client.sim.create_jobs(1, outcome="FAILED", instances=1)
    [truth] = client.sim.truth()
    _, [served], _ = await client.call("GET", "/_sim/truth")
    assert (served["id"], served["final_status"], served["final_at"]) == (
        job_id,
        "FAILED",
        truth.final_at,
    )
    assert [(t["status"], t["at"]) for t in served["timeline"]] == list(truth.timeline)
    assert served["failure_reason"] == truth.failure_reason
    assert served["instances"][0]["instance_id"] == truth.instances[0].instance_id


async def test_stats_endpoint_reports_requests_and_counts(connect: Connect) -> None:
    """GET /_sim/stats has the request log, counts by status and the busiest window."""
    client = await connect(config(rate_limit=2))
    await client.status(1)
    await client.status(1)
    _, stats, _ = await client.call("GET", "/_sim/stats")
    assert stats["counts"] == {"200": 1, "404": 1, "429": 1}
    assert (stats["max_in_window"], stats["max_in_window_admitted"]) == (3, 2)
    assert (stats["rate_limit"], stats["rate_window"]) == (2, 60.0)
    assert [r["http_status"] for r in stats["requests"]] == [200, 404, 429]
    assert stats["faults"] == {}


async def test_sim_jobs_endpoint_creates_jobs(connect: Connect) -> None:
    """POST /_sim/jobs {"count": n} answers a bare array of n new job ids."""
    client = await connect()
    status, ids, _ = await client.call("POST", "/_sim/jobs", json={"count": 3})
    assert status == 200
    assert ids == [job.id for job in client.sim.truth()]
    for bad in ({"count": 0}, {"count": True}, {"count": "3"}, {}, [3]):
        assert (await client.call("POST", "/_sim/jobs", json=bad))[0] == 400


# --- server lifecycle -------------------------------------------------------------------------


async def test_restart_keeps_port_jobs_and_tokens(connect: Connect) -> None:
    """After restart() the same URL answers again, and jobs and tokens survived."""
    client = await connect()
    [job_id] = client.sim.create_jobs(1)
    url = client.sim.base_url
    await client.sim.restart()
    assert client.sim.base_url == url
    assert (await client.status(job_id))[0] == 200


async def test_restart_is_down_for_the_downtime(connect: Connect) -> None:
    """While a restart waits out its downtime, connections are refused."""
    client = await connect()
    down = asyncio.Event()
    back = asyncio.Event()

    async def gated_sleep(seconds: float) -> None:
        down.set()
        await back.wait()

    client.clock.sleep = gated_sleep  # type: ignore[method-assign]
    restarting = asyncio.create_task(client.sim.restart(downtime=30.0))
    await down.wait()
    with pytest.raises(aiohttp.ClientConnectionError):
        await client.status(1)
    back.set()
    await restarting
    assert (await client.status(1))[0] == 404


async def test_base_url_needs_start() -> None:
    """base_url before start() raises with a hint; start() binds an ephemeral loopback port."""
    sim = Simulator(config())
    with pytest.raises(RuntimeError, match="start"):
        _ = sim.base_url
    async with sim:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sim.base_url)
        assert sim.base_url.rsplit(":", 1)[1] != "0"
    assert "stopped" in repr(sim)


def test_public_names_are_sorted_and_importable() -> None:
    """The package's __all__ is sorted and every name in it resolves."""
    names = simulator_package.__all__
    assert names == sorted(names)
    assert all(getattr(simulator_package, name) is not None for name in names)


# --- `async-poller simulate` ----------------------------------------------------------------


def simulate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="async-poller simulate")
    add_simulate_arguments(parser)
    return parser


def test_simulate_flags_all_have_help() -> None:
    """Every `simulate` flag explains itself in --help."""
    flags = [a for a in simulate_parser()._actions if not isinstance(a, argparse._HelpAction)]
    assert len(flags) == 14
    assert all(action.help for action in flags)


def test_simulate_flags_parse_durations_and_fault_rates() -> None:
    """Durations use the poller's syntax; --fault-rate KIND=P is repeatable."""
    args = simulate_parser().parse_args(
        [
            "--rate-window",
            "2m",
            "--token-ttl",
            "1h30m",
            "--fault-rate",
            "http_503=0.1",
            "--fault-rate",
            "hang=0.01",
            "--envelope",
            "B",
        ]
    )
    assert (args.rate_window, args.token_ttl, args.envelope) == (120.0, 5400.0, "B")
    assert args.fault_rate == [("http_503", 0.1), ("hang", 0.01)]
    defaults = simulate_parser().parse_args([])
    assert (defaults.host, defaults.port, defaults.rate_window, defaults.token_ttl) == (
        "127.0.0.1",
        0,
        60.0,
        900.0,
    )


@pytest.mark.parametrize(
    "argv", [["--fault-rate", "nap=0.1"], ["--fault-rate", "hang=2"], ["--rate-window", "5x"]]
)
def test_simulate_rejects_bad_flags(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A bad fault rate or duration is a usage error with a hint."""
    with pytest.raises(SystemExit) as exited:
        simulate_parser().parse_args(argv)
    assert exited.value.code == 2
    assert "HINT" in capsys.readouterr().err


def test_simulate_rejects_an_impossible_plan(capsys: pytest.CaptureFixture[str]) -> None:
    """Fault rates adding up past 1 exit 2 before anything listens."""
    args = simulate_parser().parse_args(
        ["--fault-rate", "hang=0.6", "--fault-rate", "http_500=0.6"]
    )
    assert run_simulate(args) == 2
    assert "add up to" in capsys.readouterr().err


SIMULATE = (
    "import argparse, sys\n"
    "from async_poller.simulator.serve import add_simulate_arguments, run_simulate\n"
    "parser = argparse.ArgumentParser()\n"
    "add_simulate_arguments(parser)\n"
    "sys.exit(run_simulate(parser.parse_args(sys.argv[1:])))\n"
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_simulate_serves_until_a_signal(tmp_path: Path, signum: signal.Signals) -> None:
    """`simulate` prints shell-ready settings, writes the job ids and exits 0 on a signal."""
    ids_file = tmp_path / "ids.txt"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SIMULATE,
        "--jobs",
        "3",
        "--jobs-file",
        str(ids_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        lines = [(await process.stdout.readline()).decode() for _ in range(2)]
        settings = dict(line.rstrip("\n").split("=", 1) for line in lines)
        assert set(settings) == {"LUCIDITY_BASE_URL", "LUCIDITY_REFRESH_TOKEN"}
        ids = [int(line) for line in ids_file.read_text().splitlines()]
        assert len(ids) == 3
        async with aiohttp.ClientSession(settings["LUCIDITY_BASE_URL"]) as session:
            refresh = {"refreshToken": settings["LUCIDITY_REFRESH_TOKEN"]}
            async with session.post(REFRESH, json=refresh) as response:
                token = (await response.json())["accessToken"]
            headers = {"X-Authtype": "lucidity_access_token", "Authorization": token}
            async with session.get(STATUS, params={"id": str(ids[0])}, headers=headers) as r:
                assert r.status == 200
        process.send_signal(signum)
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert "Traceback" not in stderr.decode()
