"""DelayPolicy: jittered exponential delays stay within their bounds."""

from __future__ import annotations

import itertools
import random

from hypothesis import given
from hypothesis import strategies as st

from async_poller._pacing.delays import DelayPolicy

bounds = st.tuples(st.floats(0.0, 600.0), st.floats(0.001, 3600.0)).map(sorted)


@given(bounds=bounds, seed=st.integers(0, 2**32))
def test_poll_delays_stay_within_bounds(bounds: list[float], seed: int) -> None:
    """Property: every poll delay is within [min_delay, max_delay]."""
    low, high = bounds
    policy = DelayPolicy(low, high, random.Random(seed))
    for delay in itertools.islice(policy.poll_delays(), 40):
        assert low <= delay <= high


@given(bounds=bounds, seed=st.integers(0, 2**32))
def test_retry_delays_are_positive_and_capped(bounds: list[float], seed: int) -> None:
    """Property: retry delays are positive and never above max_delay."""
    low, high = bounds
    policy = DelayPolicy(low, high, random.Random(seed))
    for delay in itertools.islice(policy.retry_delays(), 40):
        assert 0 < delay <= high


def test_poll_delays_grow_to_the_cap() -> None:
    """Without jitter the delays double from min_delay and stop at max_delay."""
    policy = DelayPolicy(10.0, 120.0, random.Random(1), jitter=0.0)
    assert list(itertools.islice(policy.poll_delays(), 6)) == [10, 20, 40, 80, 120, 120]


def test_jitter_spreads_delays() -> None:
    """Jobs with the same history get different delays (no lock-step)."""
    policy = DelayPolicy(10.0, 120.0, random.Random(3))
    thirds = {round(list(itertools.islice(policy.poll_delays(), 3))[2], 6) for _ in range(50)}
    assert len(thirds) > 40
    assert all(32.0 <= value <= 48.0 for value in thirds)


def test_first_delays_keep_input_order_at_the_budgets_pace() -> None:
    """The first burst goes at once; after it, first polls follow input order one budget
    slot apart, never at the same instant."""
    policy = DelayPolicy(10.0, 120.0, random.Random(5))
    firsts = [policy.first_delay(index, 45, 0.75) for index in range(200)]
    assert firsts[:44] == [0.0] * 44
    assert firsts == sorted(firsts)
    assert len(set(firsts[45:])) == 155
    assert 155 / 0.75 - 2 <= firsts[-1] <= 156 / 0.75
