"""The simulator's rate limiters: sliding window or token bucket, answering 429 or 503.

The limiters are pure and tested at explicit times; the end-to-end tests send real HTTP to
the `simulator` fixture, whose limit is set so low that the refusals do not depend on timing.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_poller.errors import ConfigError
from async_poller.simulator import FaultPlan, Simulator, SimulatorConfig
from async_poller.simulator.ratelimit import (
    RateLimiter,
    SlidingWindowLimiter,
    TokenBucketLimiter,
    limiter_for,
    normalise_limiter,
)
from async_poller.simulator.serve import add_simulate_arguments, simulator_config

STATUS = "/external/client/api/v1/agent/install/status"


def admitted(limiter: RateLimiter, *times: float) -> list[bool]:
    """Which of the requests arriving at `times` the limiter admits."""
    return [limiter.admit(t) is None for t in times]


# --- the token bucket, at explicit times -----------------------------------------------------


def test_bucket_of_one_refuses_a_request_closer_than_the_interval() -> None:
    """bucket:1 at 50/min (nginx rate=50r/m, no burst): one request per 1.2 s, not sooner."""
    bucket = TokenBucketLimiter(1, 50, 60.0)
    assert admitted(bucket, 0.0, 1.0, 1.2, 2.3, 2.4) == [True, False, True, False, True]


def test_bucket_admits_a_burst_of_its_capacity() -> None:
    """A full bucket of 5 admits 5 requests at once and refuses the 6th."""
    bucket = TokenBucketLimiter(5, 5, 10.0)
    assert admitted(bucket, *[0.0] * 6) == [True] * 5 + [False]


def test_bucket_refills_one_token_per_interval_up_to_its_capacity() -> None:
    """Emptied, it gets a token back every window/limit seconds; idle, it holds no more than B."""
    bucket = TokenBucketLimiter(3, 5, 10.0)  # a token every 2 s
    assert admitted(bucket, 0.0, 0.0, 0.0, 1.9, 2.0, 2.0) == [True, True, True, False, True, False]
    assert admitted(bucket, 100.0, 100.0, 100.0, 100.0) == [True, True, True, False]


def test_refused_requests_take_no_token() -> None:
    """Hammering an empty bucket does not delay the next token."""
    bucket = TokenBucketLimiter(1, 5, 10.0)
    assert bucket.admit(0.0) is None
    assert admitted(bucket, *[n / 10 for n in range(1, 20)]) == [False] * 19
    assert bucket.admit(2.0) is None


def test_bucket_retry_after_is_whole_seconds_until_a_token() -> None:
    """Retry-After rounds the wait for the next token up, and is never below 1."""
    bucket = TokenBucketLimiter(2, 1, 10.0)  # a token every 10 s
    assert admitted(bucket, 0.0, 0.0) == [True, True]
    assert bucket.admit(0.5) == 10  # the first token is back at t=10: 9.5 s, rounded up
    assert bucket.admit(9.0) == 1
    assert bucket.admit(9.99) == 1
    assert bucket.admit(10.0) is None
    assert bucket.admit(10.0) == 10


def test_window_retry_after_waits_for_the_oldest_request() -> None:
    """The sliding window, behind the same protocol, frees a slot when its oldest leaves."""
    window = SlidingWindowLimiter(2, 60.0)
    assert admitted(window, 0.0, 1.0) == [True, True]
    assert window.admit(30.5) == 30
    assert window.admit(60.0) is None


def test_bucket_repr_shows_its_state() -> None:
    """repr names the capacity, the rate and the next theoretical arrival."""
    bucket = TokenBucketLimiter(5, 50, 60.0)
    bucket.admit(3.0)
    assert repr(bucket) == "TokenBucketLimiter(capacity=5, 50 per 60s, tat=4.2)"


@given(
    capacity=st.integers(1, 6),
    gaps=st.lists(st.integers(0, 24).map(lambda n: n / 4), max_size=60),
)
def test_bucket_matches_a_counted_token_bucket(capacity: int, gaps: list[float]) -> None:
    """GCRA admits exactly what a bucket counting fractional tokens would, with the same wait."""
    bucket = TokenBucketLimiter(capacity, 4, 8.0)  # a token every 2 s; quarters stay exact
    tokens, last, now = float(capacity), 0.0, 0.0
    for gap in gaps:
        now += gap
        tokens, last = min(capacity, tokens + (now - last) / 2.0), now
        expected = None if tokens >= 1 else max(1, math.ceil((1 - tokens) * 2.0))
        assert bucket.admit(now) == expected
        if expected is None:
            tokens -= 1


# --- choosing a limiter ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "canonical"),
    [("window", "window"), ("bucket:1", "bucket:1"), ("bucket:05", "bucket:5")],
)
def test_limiter_specs_have_one_canonical_form(spec: str, canonical: str) -> None:
    """window and bucket:B are accepted; B is read as a number."""
    assert normalise_limiter(spec) == canonical


@pytest.mark.parametrize(
    "spec", ["", "bucket", "bucket:", "bucket:0", "bucket:-1", "bucket:1.5", "bucket:x", "leaky"]
)
def test_bad_limiter_specs_are_refused_with_a_hint(spec: str) -> None:
    """Anything but window or bucket:B with B >= 1 is a ConfigError that says what to write."""
    with pytest.raises(ConfigError, match=r"(?s)invalid limiter.*HINT: write window"):
        normalise_limiter(spec)


def test_limiter_for_builds_the_named_limiter() -> None:
    """limiter_for gives a sliding window or a bucket of the named capacity at the given rate."""
    window = limiter_for("window", 50, 60.0)
    bucket = limiter_for("bucket:5", 50, 60.0)
    assert isinstance(window, SlidingWindowLimiter)
    assert (window.limit, window.window) == (50, 60.0)
    assert isinstance(bucket, TokenBucketLimiter)
    assert (bucket.capacity, bucket.interval) == (5, 1.2)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"limiter": "bucket:0"}, "limiter"), ({"throttle_status": 500}, "throttle_status")],
)
def test_config_rejects_a_bad_limiter_or_status(overrides: dict[str, Any], message: str) -> None:
    """SimulatorConfig refuses an unknown limiter or a throttle status other than 429/503."""
    with pytest.raises(ConfigError, match=message):
        SimulatorConfig(**overrides)


def test_config_defaults_are_the_lucidity_api() -> None:
    """By default: the sliding window, 429, with Retry-After; a bucket spec is normalised."""
    default = SimulatorConfig()
    assert (default.limiter, default.throttle_status, default.retry_after) == ("window", 429, True)
    assert SimulatorConfig(limiter="bucket:007").limiter == "bucket:7"


# --- over HTTP -------------------------------------------------------------------------------


def combination(limiter: str, burst: int, status: int, retry_after: bool) -> Any:
    """One test case: the limiter admits `burst` requests at once at 2 per simulated hour."""
    marks = pytest.mark.simulator(
        rate_limit=2,
        rate_window=3600.0,
        limiter=limiter,
        throttle_status=status,
        retry_after=retry_after,
    )
    name = f"{limiter}-{status}-{'retry-after' if retry_after else 'no-retry-after'}"
    return pytest.param(burst, status, retry_after, marks=marks, id=name)


async def knock(simulator: Simulator, times: int) -> list[tuple[int, str | None, bytes]]:
    """Send `times` unauthenticated status requests: (status, Retry-After, body) of each."""
    answers = []
    async with aiohttp.ClientSession(simulator.base_url) as session:
        for _ in range(times):
            async with session.get(STATUS, params={"id": "1"}) as response:
                body = await response.read()
                answers.append((response.status, response.headers.get("Retry-After"), body))
    return answers


@pytest.mark.parametrize(
    ("burst", "status", "retry_after"),
    [
        combination(limiter, burst, status, retry_after)
        for limiter, burst in (("window", 2), ("bucket:1", 1), ("bucket:3", 3))
        for status in (429, 503)
        for retry_after in (True, False)
    ],
)
async def test_refusals_carry_the_configured_status_and_retry_after(
    simulator: Simulator, burst: int, status: int, retry_after: bool
) -> None:
    """Past its burst a limiter refuses with throttle_status, with Retry-After only if asked."""
    answers = await knock(simulator, burst + 2)
    assert [code for code, _, _ in answers] == [401] * burst + [status] * 2
    for _, header, body in answers[burst:]:
        if retry_after:
            assert header is not None
            assert 1 <= int(header) <= 3600
        else:
            assert header is None
        if status == 503:
            assert b"<h1>503 Service Temporarily Unavailable</h1>" in body
        else:
            assert b'"RATE_LIMITED"' in body
    refused = [r for r in simulator.requests if r.refused]
    assert len(refused) == simulator.refusals() == 2
    assert all(r.fault is None and r.http_status == status for r in refused)
    assert all((r.retry_after is not None) == retry_after for r in refused)
    assert simulator.max_in_window(admitted_only=True) == burst
    assert simulator.max_in_window() == burst + 2


@pytest.mark.simulator(
    rate_limit=1,
    rate_window=3600.0,
    limiter="bucket:1",
    throttle_status=503,
    retry_after=False,
    faults=FaultPlan(rates={"http_503": 1.0}),
)
async def test_limiter_refusals_are_told_apart_from_injected_503s(simulator: Simulator) -> None:
    """An injected 503 was admitted (it counts in the window); a limiter 503 is a refusal."""
    answers = await knock(simulator, 3)
    assert [code for code, _, _ in answers] == [503, 503, 503]
    assert [(r.fault, r.refused) for r in simulator.requests] == [
        ("http_503", False),
        (None, True),
        (None, True),
    ]
    assert simulator.refusals() == 2
    assert simulator.max_in_window(admitted_only=True) == 1


@pytest.mark.simulator(rate_limit=1, rate_window=3600.0, limiter="bucket:1")
async def test_stats_count_refusals(simulator: Simulator) -> None:
    """GET /_sim/stats names the limiter, counts refusals and flags each refused request."""
    await knock(simulator, 2)
    async with (
        aiohttp.ClientSession(simulator.base_url) as session,
        session.get("/_sim/stats") as response,
    ):
        stats = await response.json()
    assert (stats["limiter"], stats["refused"]) == ("bucket:1", 1)
    assert [r["refused"] for r in stats["requests"]] == [False, True]


# --- `async-poller simulate` flags -----------------------------------------------------------


def simulate(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="async-poller simulate")
    add_simulate_arguments(parser)
    return parser.parse_args(argv)


def test_simulate_limiter_flags_reach_the_config() -> None:
    """--limiter, --throttle-status and --no-retry-after set the simulator's config."""
    config = simulator_config(
        simulate("--limiter", "bucket:05", "--throttle-status", "503", "--no-retry-after")
    )
    assert (config.limiter, config.throttle_status, config.retry_after) == ("bucket:5", 503, False)


def test_simulate_limiter_flags_default_to_the_lucidity_api() -> None:
    """Without the flags: the sliding window, 429, Retry-After."""
    config = simulator_config(simulate())
    assert (config.limiter, config.throttle_status, config.retry_after) == ("window", 429, True)


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["--limiter", "bucket"], "HINT: write window"),
        (["--limiter", "bucket:0"], "HINT: write window"),
        (["--limiter", "token"], "HINT: write window"),
        (["--throttle-status", "500"], "HINT: 429"),
        (["--throttle-status", "x"], "HINT: 429"),
    ],
)
def test_simulate_rejects_bad_limiter_flags(
    argv: list[str], hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad limiter or throttle status exits 2 with a message naming the flag and a hint."""
    with pytest.raises(SystemExit) as exited:
        simulate(*argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[0]}" in err
    assert hint in err
    assert "Traceback" not in err
