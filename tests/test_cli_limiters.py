"""`poll` behind every kind of server limiter: paced and adaptive, so few requests refused.

The simulator plays the limiter (a sliding window like the Lucidity API's, or a token
bucket like nginx `limit_req`, refusing with 429 and Retry-After or with a bare 503). Time
runs 10x, not 60x: a bucket judges arrival times, and at 60x the event loop's jitter would
look like bunched requests (helpers measured it in bench/limiters.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from async_poller.simulator import Simulator

from .conftest import QUICK_JOBS, Poll
from .helpers import assert_true_results, ids_arg, true_exit_code

pytestmark = pytest.mark.e2e

SCALE = 10.0
JOBS = {**QUICK_JOBS, "time_scale": SCALE, "rate_limit": 50}


def refused_share(simulator: Simulator) -> float:
    return simulator.refusals() / len(simulator.requests)


def behind(**limiter: Any) -> pytest.MarkDecorator:
    """The simulator marker for a limiter of this kind at 50/min."""
    mark: pytest.MarkDecorator = pytest.mark.simulator(**JOBS, **limiter)
    return mark


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("window-429", marks=behind(limiter="window")),
        pytest.param(
            "leaky-503", marks=behind(limiter="bucket:1", throttle_status=503, retry_after=False)
        ),
        pytest.param("bucket5-429", marks=behind(limiter="bucket:5", throttle_status=429)),
    ],
)
async def test_default_flags_behind_any_limiter(
    name: str, simulator: Simulator, poll: Poll
) -> None:
    """The default 45/min behind a 50/min limiter of any kind: every job final and true,
    and the limiter refuses (almost) nothing; the old budget had 40-98% refused here."""
    ids = simulator.create_jobs(15)
    run = await poll(*ids_arg(ids))
    assert run.code == true_exit_code(simulator, ids), run.stderr[-2000:]
    assert_true_results(simulator, run.results)
    assert refused_share(simulator) <= 0.03, (simulator.refusals(), len(simulator.requests))


@pytest.mark.simulator(**JOBS, limiter="bucket:1", throttle_status=503, retry_after=False)
async def test_a_rate_above_a_leaky_bucket_settles_below_it(
    simulator: Simulator, poll: Poll
) -> None:
    """--rate 60/min behind a 50/min leaky bucket answering bare 503s (nginx's default):
    the rate in force comes down, few requests are refused, every job ends true."""
    ids = simulator.create_jobs(15)
    run = await poll("--rate", "60/min", *ids_arg(ids))
    assert run.code == true_exit_code(simulator, ids), run.stderr[-2000:]
    assert_true_results(simulator, run.results)
    assert 0 < simulator.refusals()
    assert refused_share(simulator) <= 0.1, (simulator.refusals(), len(simulator.requests))
    assert len(run.of("throttled")) == run.summary["throttled"] == simulator.refusals()
    lowered = [float(event["rate"].split("/")[0]) for event in run.of("throttled")]
    assert max(lowered) < 60
