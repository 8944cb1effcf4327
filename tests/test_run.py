"""One run in virtual time, through the real client stack over a fake wire: outcomes,
pacing, limits, throttling and token renewal.

`FakeApi` answers on the far side of `tests.wire`: every request passes through the real
`client.connect` (transport, rate budget, token provider, the 401 replay) and reaches the
fake API only once the budget let it leave, so what these tests count is what a server
would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from async_poller._engine.control import Snapshot
from async_poller._engine.poll import poll_jobs, stream_events
from async_poller._lucidity.auth import REFRESH_PATH
from async_poller._lucidity.client import STATUS_PATH
from async_poller._lucidity.transport import RawResponse
from async_poller._pacing.budget import RateBudget
from async_poller.config import Config, Credentials, Rate, parse_rate
from async_poller.errors import ConfigError
from async_poller.events import (
    Event,
    PollError,
    Result,
    RunWarning,
    Start,
    Summary,
    Throttled,
    Transition,
)
from async_poller.ids import JobIds
from async_poller.redact import Secret
from async_poller.testing import VirtualClock

from .wire import Request, job_body, token_body, wire_connect

Timeline = list[tuple[float, str]]
"""(from this many seconds after start, the job's status) pairs, in order."""
Fault = Callable[[int, float], RawResponse | None]
"""What the API answers a poll of a job arriving at a time instead of the truth, if anything."""


def no_fault(job_id: int, now: float) -> RawResponse | None:
    return None


@dataclass
class Sent:
    """One request as the fake API saw it: when it arrived, for which job (None for a token
    refresh), with which token, and the HTTP status and time of its answer."""

    at: float
    job_id: int | None
    token: str | None
    status: int | None = None
    done_at: float = math.inf


@dataclass
class FakeApi:
    """The Lucidity API in memory: job statuses from timelines, access tokens from the
    refresh endpoint, and `fault` answers in their place."""

    clock: VirtualClock
    timelines: dict[int, Timeline]
    fault: Fault = no_fault
    latency: float = 0.2
    refresh_latency: float = 0.2
    sent: list[Sent] = field(default_factory=list)
    issued: dict[str, float] = field(default_factory=dict)
    """Every access token handed out, with when."""
    revoked_before: float = -math.inf
    """Tokens issued before this time are answered 401 (expired before the client thinks)."""

    @property
    def polls(self) -> list[tuple[float, int]]:
        """(arrival time, job id) of every status request."""
        return [(r.at, r.job_id) for r in self.sent if r.job_id is not None]

    @property
    def refreshes(self) -> list[Sent]:
        return [r for r in self.sent if r.job_id is None]

    async def answer(self, request: Request) -> RawResponse:
        now = self.clock.now()
        record = Sent(now, request.job_id, request.token)
        self.sent.append(record)
        refresh = request.path == REFRESH_PATH
        await self.clock.sleep(self.refresh_latency if refresh else self.latency)
        if refresh:
            token = f"token-{len(self.issued) + 1}"
            self.issued[token] = self.clock.now()
            response = RawResponse(200, {}, token_body(token))
        else:
            assert request.path == STATUS_PATH
            assert request.job_id is not None
            response = self._status(request.job_id, request.token, now)
        record.status, record.done_at = response.status, self.clock.now()
        return response

    def _status(self, job_id: int, token: str | None, now: float) -> RawResponse:
        if self.issued.get(token or "", math.inf) < self.revoked_before <= now:
            return RawResponse(401, {}, b'{"message": "token expired"}')
        if token not in self.issued:
            return RawResponse(401, {}, b'{"message": "unknown token"}')
        injected = self.fault(job_id, now)
        if injected is not None:
            return injected
        if job_id not in self.timelines:
            return RawResponse(404, {}, b'{"message": "no such job"}')
        status = next(s for start, s in reversed(self.timelines[job_id]) if now >= start)
        reason = "it broke" if status == "FAILED" else None
        return RawResponse(200, {}, job_body(job_id, status, reason))


def once_from(at: float, response: RawResponse) -> Fault:
    """A fault: `response` to the first poll, of whichever job, arriving from `at` on."""
    fired = False

    def fault(job_id: int, now: float) -> RawResponse | None:
        nonlocal fired
        if fired or now < at:
            return None
        fired = True
        return response

    return fault


def config(**overrides: object) -> Config:
    settings: dict[str, object] = {
        "credentials": Credentials(refresh_token=Secret("refresh-token")),
        "base_url": "http://127.0.0.1:1",
        "seed": 1,
    }
    return Config(**(settings | overrides))  # type: ignore[arg-type]


def lifecycle(done_at: float, final: str = "COMPLETED") -> Timeline:
    return [
        (0, "QUEUED"),
        (done_at * 0.2, "PREPARING"),
        (done_at * 0.4, "PROCESSING"),
        (done_at, final),
    ]


async def run(api: FakeApi, ids: list[int], settings: Config) -> list[Event]:
    job_ids = JobIds(ids=ids, invalid=[], duplicates=0)
    stream = stream_events(job_ids, settings, api.clock, wire_connect(api.answer))
    return [event async for event in stream]


def results(events: list[Event]) -> dict[int, Result]:
    found = [event for event in events if isinstance(event, Result)]
    assert len(found) == len({result.job_id for result in found}), "a job got two results"
    return {result.job_id: result for result in found}


def summary(events: list[Event]) -> Summary:
    assert isinstance(events[0], Start)
    assert isinstance(events[-1], Summary)
    return events[-1]


async def test_every_job_ends_with_its_true_final_status() -> None:
    """Jobs completing, failing and cancelling each get one matching result; exit code 1."""
    clock = VirtualClock()
    finals = ["COMPLETED", "FAILED", "CANCELLED", "COMPLETED"]
    api = FakeApi(clock, {n: lifecycle(100.0 * n, final) for n, final in enumerate(finals, 1)})
    events = await run(api, [1, 2, 3, 4], config())
    assert {job: result.status for job, result in results(events).items()} == dict(
        enumerate(finals, 1)
    )
    assert results(events)[2].reason == "it broke"
    assert summary(events).exit_code == 1
    assert summary(events).counts["FAILED"] == 1
    assert summary(events).requests == len(api.sent)


async def test_transitions_follow_the_lifecycle_in_order() -> None:
    """A slow job shows each status once, in order, starting from null."""
    clock = VirtualClock()
    api = FakeApi(clock, {7: lifecycle(1000.0)})
    events = await run(api, [7], config())
    steps = [(e.from_, e.to) for e in events if isinstance(e, Transition)]
    assert steps == [
        (None, "QUEUED"),
        ("QUEUED", "PREPARING"),
        ("PREPARING", "PROCESSING"),
        ("PROCESSING", "COMPLETED"),
    ]
    assert summary(events).exit_code == 0


async def test_thrifty_polls_of_a_job_respect_min_and_max_delay() -> None:
    """Polling by backoff alone: between two polls of a job there are at least min_delay
    and at most ~max_delay, and the delays grow."""
    clock = VirtualClock()
    api = FakeApi(clock, {1: lifecycle(3000.0)})
    await run(api, [1], config(min_delay=10.0, max_delay=120.0, thrifty=True))
    times = [t for t, _ in api.polls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 10.0
    assert max(gaps) <= 120.0 + api.latency + 1e-9
    assert len(times) < 3000 / 60, "delays grew beyond min_delay"


async def test_a_status_change_starts_the_delays_over_from_min_delay() -> None:
    """Polling by backoff alone, the delays grow while the status stays the same; the poll
    that sees a new status is followed by one after about min_delay (10 s, +20% jitter),
    not by the grown delay."""
    clock = VirtualClock()
    timeline: Timeline = [
        (0, "QUEUED"),
        (1000, "PREPARING"),
        (2000, "PROCESSING"),
        (3000, "COMPLETED"),
    ]
    api = FakeApi(clock, {1: timeline})
    events = await run(api, [1], config(min_delay=10.0, max_delay=300.0, thrifty=True))
    assert results(events)[1].status == "COMPLETED"
    times = [t for t, _ in api.polls]
    seen = [next(s for start, s in reversed(timeline) if t >= start) for t in times]
    changes = [n for n in range(1, len(times) - 1) if seen[n] != seen[n - 1]]
    assert [seen[n] for n in changes] == ["PREPARING", "PROCESSING"]
    for n in changes:
        assert times[n] - times[n - 1] >= 100.0, "the delays had grown before the change"
        after = times[n + 1] - times[n]
        assert after <= 10.0 * 1.2 + api.latency + 1e-6, f"{after:.0f} s after {seen[n]}"


@pytest.mark.parametrize(("jobs", "longest"), [(1, 10.0), (5, 10.0), (40, 40 / 0.75)])
async def test_headroom_keeps_every_job_within_one_round(jobs: int, longest: float) -> None:
    """While the budget has room, no job waits longer than one round of all unfinished jobs
    at the budget's rate (45/min: 0.75/s), nor less than min_delay, even when every job
    changes status at once; backoff alone would let the delays climb to max_delay.

    A round may hold one more request, the token refresh 14 minutes in: it too takes a slot."""
    clock = VirtualClock()
    ids = list(range(1, jobs + 1))
    api = FakeApi(clock, {n: lifecycle(1200.0) for n in ids})
    await run(api, ids, config(min_delay=10.0, max_delay=300.0))
    assert len(api.refreshes) == 2, "the first token, and its refresh before it expires"
    token_slot = 1 / 0.75
    for job_id in ids:
        times = [t for t, polled in api.polls if polled == job_id]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 10.0
        worst = max(gaps)
        assert worst <= longest + token_slot + 1.5, f"job {job_id} waited {worst:.1f}s"


async def test_deadline_ends_unfinished_jobs_timed_out() -> None:
    """At the deadline, unfinished jobs end TIMED_OUT with where they stood; exit 3."""
    clock = VirtualClock()
    api = FakeApi(clock, {1: lifecycle(50.0), 2: lifecycle(1000.0)})
    events = await run(api, [1, 2], config(deadline=600.0))
    found = results(events)
    assert found[1].status == "COMPLETED"
    assert (found[2].status, found[2].last_status) == ("TIMED_OUT", "PROCESSING")
    assert summary(events).exit_code == 3
    assert clock.now() == pytest.approx(600.0, abs=1.0)


async def test_unknown_is_rechecked_quickly_then_final() -> None:
    """UNKNOWN answers are re-checked after a few seconds and end UNKNOWN after max_unknown."""
    clock = VirtualClock()
    api = FakeApi(clock, {1: [(0, "UNKNOWN")]})
    events = await run(api, [1], config(max_unknown=4, unknown_delay=5.0))
    assert results(events)[1].status == "UNKNOWN"
    assert not [e for e in events if isinstance(e, Transition)], "UNKNOWN is never a transition"
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(api.polls)]
    assert len(api.polls) == 4
    assert all(3.9 <= gap <= 6.3 for gap in gaps)
    assert summary(events).exit_code == 3


async def test_an_unknown_blip_does_not_end_the_job() -> None:
    """One UNKNOWN between PROCESSING answers changes nothing."""
    clock = VirtualClock()
    api = FakeApi(
        clock, {1: [(0, "PROCESSING"), (30, "UNKNOWN"), (36, "PROCESSING"), (200, "COMPLETED")]}
    )
    events = await run(api, [1], config(min_delay=10.0))
    assert results(events)[1].status == "COMPLETED"
    assert [e.to for e in events if isinstance(e, Transition)] == ["PROCESSING", "COMPLETED"]


async def test_repeated_404_ends_not_found() -> None:
    """An id the API keeps answering 404 for ends NOT_FOUND after max_not_found answers."""
    clock = VirtualClock()
    api = FakeApi(clock, {})
    events = await run(api, [99], config(max_not_found=3))
    assert results(events)[99].status == "NOT_FOUND"
    assert len(api.polls) == 3


async def test_transient_failures_never_end_a_job_early() -> None:
    """Timeouts and 5xx are retried with poll_error events until the job completes."""
    clock = VirtualClock()

    def flaky(job_id: int, now: float) -> RawResponse | None:
        return RawResponse(503, {}, b"") if now < 400 else None

    api = FakeApi(clock, {1: lifecycle(100.0)}, fault=flaky)
    events = await run(api, [1], config())
    errors = [e for e in events if isinstance(e, PollError)]
    assert results(events)[1].status == "COMPLETED"
    assert len(errors) >= 5
    assert [e.attempt for e in errors] == list(range(1, len(errors) + 1))
    assert summary(events).retries == len(errors)


async def test_persistent_bad_responses_end_error() -> None:
    """A job whose answers stay malformed for `bad_response_window` ends ERROR with the last
    reason."""
    clock = VirtualClock()
    api = FakeApi(
        clock,
        {1: lifecycle(100.0)},
        fault=lambda job_id, now: RawResponse(200, {}, b"<html>gateway</html>"),
    )
    events = await run(api, [1], config(bad_response_window=300.0))
    ending = (results(events)[1].status, results(events)[1].reason)
    assert ending == ("ERROR", "body is not JSON: <html>gateway</html>")
    assert 300.0 <= results(events)[1].elapsed_s < 600.0


async def test_rate_budget_holds_across_many_jobs() -> None:
    """200 jobs under 30/min: no window of 60 s holds more than 30 polls."""
    clock = VirtualClock()
    api = FakeApi(clock, {n: lifecycle(300.0 + 7 * n) for n in range(1, 201)})
    events = await run(api, list(range(1, 201)), config(rate=Rate(30, 60.0), deadline=7200.0))
    times = sorted(t for t, _ in api.polls)
    assert max(sum(1 for t in times if t0 <= t < t0 + 60.0) for t0 in times) <= 30
    assert len(results(events)) == 200


async def test_auth_failure_aborts_with_pending_jobs() -> None:
    """An AuthError stops the run: exit 4, unfinished jobs counted pending, no result for them."""
    clock = VirtualClock()

    def revoked(job_id: int, now: float) -> RawResponse | None:
        return RawResponse(403, {}, b'{"message": "no access"}') if now > 50 else None

    api = FakeApi(clock, {1: lifecycle(20.0), 2: lifecycle(500.0)}, fault=revoked)
    events = await run(api, [1, 2], config())
    assert set(results(events)) == {1}
    assert summary(events).exit_code == 4
    assert summary(events).counts["pending"] == 1


async def test_once_checks_each_job_once() -> None:
    """--once polls each job one time; unfinished jobs stay pending; exit 3."""
    clock = VirtualClock()
    api = FakeApi(clock, {1: [(0, "COMPLETED")], 2: lifecycle(500.0)})
    events = await run(api, [1, 2], config(once=True))
    assert set(results(events)) == {1}
    assert len(api.polls) == 2
    assert summary(events).counts["pending"] == 1
    assert summary(events).exit_code == 3


async def test_leaving_the_loop_early_cancels_cleanly() -> None:
    """Breaking out of the event loop stops every job without errors."""
    clock = VirtualClock()
    api = FakeApi(clock, {n: lifecycle(1000.0) for n in range(1, 20)})
    job_ids = JobIds(ids=list(range(1, 20)), invalid=[], duplicates=0)
    stream = stream_events(job_ids, config(), clock, wire_connect(api.answer))
    async for event in stream:
        if isinstance(event, Transition):
            break
    await stream.aclose()
    polls_then = len(api.polls)
    await clock.sleep(3600.0)
    assert len(api.polls) == polls_then


async def test_first_polls_follow_input_order_at_the_budgets_pace() -> None:
    """First polls go in input order, one budget slot apart from the first: no burst."""
    clock = VirtualClock()
    ids = list(range(1, 501))
    api = FakeApi(clock, {n: [(0, "COMPLETED")] for n in ids}, latency=0.001)
    await run(api, ids, config(rate=Rate(100, 1.0), concurrency=1000))
    firsts = [t for t, _ in api.polls]
    assert [job for _, job in api.polls] == ids
    gaps = [b - a for a, b in itertools.pairwise(firsts)]
    assert min(gaps) >= 0.01 - 1e-9
    assert max(firsts) - min(firsts) < 5.1


async def ticks_of(
    api: FakeApi, ids: list[int], every: float, *, connect_s: float = 0.0
) -> list[Snapshot]:
    """The snapshots a run of `ids` gives its tick listener every `every` clock seconds,
    with a connect that takes `connect_s` (a slow start)."""
    connect = wire_connect(api.answer)

    @contextlib.asynccontextmanager
    async def slow_connect(*args: Any) -> AsyncIterator[Any]:
        await api.clock.sleep(connect_s)
        async with connect(*args) as client:
            yield client

    snapshots: list[Snapshot] = []
    job_ids = JobIds(ids=ids, invalid=[], duplicates=0)
    events = stream_events(
        job_ids, config(), api.clock, slow_connect, ticks=(snapshots.append, every)
    )
    async for _ in events:
        pass
    return snapshots


async def test_ticks_report_progress_in_clock_time() -> None:
    """on_tick gets a snapshot every tick_s clock seconds with counts that only grow."""
    clock = VirtualClock()
    api = FakeApi(clock, {n: lifecycle(100.0 * n) for n in range(1, 6)})
    snapshots = await ticks_of(api, list(range(1, 6)), 60.0)
    assert [round(s.elapsed_s) for s in snapshots[:3]] == [60, 120, 180]
    finished = [sum(s.counts.values()) for s in snapshots]
    assert finished == sorted(finished)
    assert all(s.total == 5 for s in snapshots)
    assert snapshots[-1].pending == 5 - finished[-1]


async def test_a_late_start_delays_only_the_first_tick() -> None:
    """Ticks keep to multiples of tick_s since the run started: a connect that takes 75 clock
    seconds makes the first tick late (at 75), not every tick after it."""
    clock = VirtualClock()
    api = FakeApi(clock, {n: lifecycle(1000.0) for n in range(1, 3)})
    snapshots = await ticks_of(api, [1, 2], 60.0, connect_s=75.0)
    assert [round(s.elapsed_s) for s in snapshots[:4]] == [75, 120, 180, 240]


@pytest.mark.parametrize(("late", "every"), [(0.5, 0.1), (3.3, 0.3), (0.7, 0.1)])
async def test_a_late_tick_on_a_multiple_is_not_told_twice(late: float, every: float) -> None:
    """A first tick late by whole intervals, landing on a multiple that floats cannot hold
    exactly (0.7 / 0.1 is 6.999...), is followed by the next multiple, not by itself."""
    clock = VirtualClock()
    api = FakeApi(clock, {1: lifecycle(5.0)})
    ticks = [s.elapsed_s for s in await ticks_of(api, [1], every, connect_s=late)]
    assert ticks[0] == pytest.approx(late)
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    assert min(gaps) >= every - 0.002, ticks[:5]  # elapsed_s is rounded to the millisecond


@pytest.mark.parametrize("tick_s", [0.0, -1.0, math.nan, math.inf])
async def test_ticks_need_a_positive_interval(tick_s: float) -> None:
    """poll_jobs(on_tick=..., tick_s=0) is a ConfigError, not ticks that silently stop."""
    events = poll_jobs([1], config(), clock=VirtualClock(), on_tick=print, tick_s=tick_s)
    with pytest.raises(ConfigError, match="tick_s"):
        await anext(events)


async def test_no_job_waits_beyond_a_bounded_multiple_of_its_fair_share() -> None:
    """Under a short budget every job is polled again within max_delay plus one fair round."""
    clock = VirtualClock()
    jobs = 150
    api = FakeApi(clock, {n: lifecycle(5000.0 + n) for n in range(1, jobs + 1)})
    settings = config(rate=Rate(30, 60.0), deadline=3000.0)
    await run(api, list(range(1, jobs + 1)), settings)
    fair_round = jobs / settings.rate.per_second
    by_job: dict[int, list[float]] = {}
    for at, job_id in api.polls:
        by_job.setdefault(job_id, []).append(at)
    worst = max(b - a for times in by_job.values() for a, b in itertools.pairwise(times))
    assert worst <= settings.max_delay + 1.5 * fair_round
    assert min(len(times) for times in by_job.values()) >= 3, "no job is starved"


async def test_overdue_jobs_go_first_when_the_budget_is_short() -> None:
    """With one request a minute, every job is polled once before any twice, and then the
    most overdue job goes first."""
    clock = VirtualClock()
    api = FakeApi(clock, {n: [(0, "PROCESSING")] for n in (1, 2, 3)})
    settings = config(rate=Rate(1, 60.0), min_delay=300.0, max_delay=300.0, deadline=900.0)
    await run(api, [1, 2, 3], settings)
    assert [job_id for _, job_id in api.polls][:6] == [1, 2, 3, 1, 2, 3]


async def test_final_sweep_rechecks_every_job_before_the_deadline() -> None:
    """Just before the deadline every unfinished job is polled once more, stalest first."""
    clock = VirtualClock()
    ids = list(range(1, 21))
    api = FakeApi(clock, {n: lifecycle(10_000.0) for n in ids})
    settings = config(min_delay=500.0, max_delay=500.0, deadline=800.0, rate=Rate(60, 60.0))
    events = await run(api, ids, settings)
    last_poll = {job_id: at for at, job_id in api.polls}
    sweep_window = min(len(ids) / settings.rate.per_second, settings.deadline / 4)
    assert all(at >= settings.deadline - sweep_window for at in last_poll.values())
    assert {r.status for r in results(events).values()} == {"TIMED_OUT"}


async def test_a_sweep_short_of_budget_rechecks_the_stalest_jobs() -> None:
    """When the budget left before the deadline cannot recheck every job, the final sweep
    rechecks those polled longest ago, in that order, and leaves the freshest be.

    8 jobs at 1 request per 10 s: the first round takes 80 s; with a 200 s deadline the
    sweep gets the last quarter, 50 s, room for 5 polls."""
    clock = VirtualClock()
    ids = list(range(1, 9))
    api = FakeApi(clock, {n: [(0, "PROCESSING")] for n in ids}, latency=0.1)
    settings = config(rate=Rate(1, 10.0), min_delay=300.0, max_delay=300.0, deadline=200.0)
    events = await run(api, ids, settings)
    assert [job_id for _, job_id in api.polls[: len(ids)]] == ids
    swept = [job_id for at, job_id in api.polls if at >= settings.deadline * 3 / 4]
    assert swept == [1, 2, 3, 4, 5]
    assert {r.status for r in results(events).values()} == {"TIMED_OUT"}


async def test_the_sweep_goes_by_staleness_not_by_due_time() -> None:
    """The final sweep rechecks jobs in the order they were last polled, stalest first, even
    where their own turns say otherwise: polling by backoff alone, a job whose status changed
    lately is due again sooner than one polled long ago, and the sweep still takes it last.

    8 jobs at 1 request per 10 s, whose statuses change at different times so that their
    delays differ; the sweep takes the last 80 s before the deadline: one poll for each."""
    clock = VirtualClock()
    ids = list(range(1, 9))
    timelines: dict[int, Timeline] = {
        n: [(0, "QUEUED"), (60.0 * n, "PREPARING"), (100.0 * n, "PROCESSING")] for n in ids
    }
    api = FakeApi(clock, timelines, latency=0.1)
    settings = config(
        rate=Rate(1, 10.0), min_delay=10.0, max_delay=600.0, deadline=1200.0, thrifty=True
    )
    events = await run(api, ids, settings)
    sweep_from = settings.deadline - len(ids) / settings.rate.per_second
    last_polled = {job_id: at for at, job_id in api.polls if at < sweep_from}
    swept = [job_id for at, job_id in api.polls if at >= sweep_from]
    assert sorted(swept) == ids, "the sweep polls every job once"
    assert swept == sorted(ids, key=last_polled.__getitem__), "not the stalest first"
    assert {r.status for r in results(events).values()} == {"TIMED_OUT"}


async def test_a_short_budget_is_announced_with_numbers() -> None:
    """A warning event says when the budget cannot poll every job once per max_delay."""
    clock = VirtualClock()
    ids = list(range(1, 301))
    api = FakeApi(clock, {n: [(0, "COMPLETED")] for n in ids})
    events = await run(api, ids, config())
    [warning] = [e for e in events if isinstance(e, RunWarning)]
    assert warning.code == "budget_short"
    assert warning.details["needed_per_min"] == 150.0
    assert warning.details["budget_per_min"] == 45.0
    assert "6m40s" in warning.message
    few = await run(FakeApi(VirtualClock(), {1: [(0, "COMPLETED")]}), [1], config())
    assert not [e for e in few if isinstance(e, RunWarning)]


async def test_sweep_wakes_jobs_once_not_continuously() -> None:
    """After its sweep poll a job waits its normal delay again (no back-to-back polling)."""
    clock = VirtualClock()
    ids = [1, 2, 3]
    api = FakeApi(clock, {n: [(0, "PROCESSING")] for n in ids})
    settings = config(min_delay=100.0, max_delay=100.0, deadline=1000.0)
    await run(api, ids, settings)
    per_job = {n: sum(1 for _, job in api.polls if job == n) for n in ids}
    assert all(count <= 1000 / 100 + 2 for count in per_job.values())


async def test_timed_out_reason_is_only_a_failure_that_was_not_followed_by_an_answer() -> None:
    """An old 503 followed by good answers leaves TIMED_OUT without a stale reason."""
    clock = VirtualClock()

    def early_outage(job_id: int, now: float) -> RawResponse | None:
        return RawResponse(503, {}, b"") if now < 30 else None

    api = FakeApi(clock, {1: [(0, "PROCESSING")]}, fault=early_outage)
    events = await run(api, [1], config(deadline=600.0))
    assert results(events)[1].status == "TIMED_OUT"
    assert results(events)[1].reason is None


@pytest.mark.parametrize(
    ("status", "retry_after", "pause"),
    [(429, "30", 30.0), (429, None, 5.0), (503, "30", 30.0)],
)
async def test_a_throttling_answer_pauses_every_job(
    status: int, retry_after: str | None, pause: float
) -> None:
    """A 429, or a 503 with Retry-After, holds back every job for the pause it asks (5 s for
    a 429 without one): as seen on the wire, no request leaves until the pause is over. Then
    polling resumes at once, and the refused job is polled again in the first round. The
    refusal is no fault of its job (no poll_error); every job ends with its true final
    status."""
    clock = VirtualClock()
    ids = list(range(1, 11))
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    refusal = RawResponse(status, headers, b"")
    api = FakeApi(clock, {n: lifecycle(300.0 + 10 * n) for n in ids}, once_from(100.0, refusal))
    events = await run(api, ids, config(rate=Rate(120, 60.0)))
    [refused] = [r for r in api.sent if r.status == status]
    after = [r for r in api.sent if r.at > refused.done_at]
    assert min(r.at for r in after) >= refused.done_at + pause - 1e-9, "a request in the pause"
    assert after[0].at < refused.done_at + pause + 1.0, "polling did not resume"
    first_round = [job_id for at, job_id in api.polls if at > refused.done_at][: len(ids)]
    assert sorted(first_round) == ids, "the refused job waits no longer than a round"
    [throttled] = [e for e in events if isinstance(e, Throttled)]
    assert throttled.retry_after_s == pause
    assert summary(events).throttled == 1
    assert not [e for e in events if isinstance(e, PollError)]
    assert {job: r.status for job, r in results(events).items()} == dict.fromkeys(ids, "COMPLETED")


async def test_a_503_without_retry_after_slows_the_rate_but_pauses_nobody() -> None:
    """A 503 without Retry-After may be a failing backend, not a limiter: its job gets a
    poll_error and is retried, the rate in force is lowered (a throttled event says to what),
    and the other jobs' requests go on leaving without a pause."""
    clock = VirtualClock()
    ids = list(range(1, 11))
    refusal = RawResponse(503, {}, b"")
    api = FakeApi(clock, {n: lifecycle(300.0 + 10 * n) for n in ids}, once_from(100.0, refusal))
    events = await run(api, ids, config(rate=Rate(120, 60.0)))
    [refused] = [r for r in api.sent if r.status == 503]
    after = [r.at for r in api.sent if r.at > refused.done_at]
    assert min(after) < refused.done_at + 1.0, "the 503 paused everyone"
    [error] = [e for e in events if isinstance(e, PollError)]
    assert (error.job_id, error.http_status, error.attempt) == (refused.job_id, 503, 1)
    [throttled] = [e for e in events if isinstance(e, Throttled)]
    assert throttled.retry_after_s == 0
    assert parse_rate(throttled.rate).per_second < Rate(120, 60.0).per_second
    assert {job: r.status for job, r in results(events).items()} == dict.fromkeys(ids, "COMPLETED")


async def test_a_replay_after_401_goes_before_jobs_queued_ahead_of_it() -> None:
    """A poll answered 401 is replayed with the renewed token in the first slot after the
    renewal, ahead of jobs queued with better priorities: it already waited its turn once,
    and a token that has to wait may age. (One slot every 2 s; token-1 is revoked at 0.5.)"""
    clock = VirtualClock()
    api = FakeApi(clock, {n: lifecycle(1000.0) for n in range(1, 11)}, latency=3.0)
    api.revoked_before = 0.5
    budget = RateBudget(Rate(10, 20.0), clock)
    async with wire_connect(api.answer)(config(), clock, budget, lambda *_: None) as client:
        first = asyncio.create_task(client.check(1, priority=10.0))
        await clock.sleep(2.1)  # job 1 is under way with token-1; the others queue
        queued = [asyncio.create_task(client.check(n, priority=n - 10.0)) for n in range(2, 11)]
        await asyncio.gather(first, *queued)
    [renewal] = api.refreshes[1:]
    after = [(r.job_id, r.token) for r in api.sent if r.job_id and r.at > renewal.at]
    assert (1, "token-2") == after[0], f"the replay queued behind the others: {after}"
    await budget.aclose()


async def test_a_401_mid_run_renews_the_token_once_and_replays_the_polls() -> None:
    """When the API starts rejecting the access token mid-run (it expired early), the polls
    answered 401 lead to one token refresh, however many of them there are (some answered
    while it is under way, some after it), and each is replayed at once with the new token:
    no poll_error, no job lost, every job ends with its true final status."""
    clock = VirtualClock()
    ids = list(range(1, 41))
    timelines = {n: lifecycle(300.0 + 5 * n) for n in ids}
    api = FakeApi(clock, timelines, latency=2.0, refresh_latency=0.25)
    api.revoked_before = 100.0
    events = await run(api, ids, config(rate=Rate(10, 1.0)))
    rejected = [r for r in api.sent if r.status == 401]
    for refused in rejected:
        later = [r for r in api.sent if r.job_id == refused.job_id and r.at > refused.at]
        assert later, f"job {refused.job_id} was not polled again"
        assert (later[0].token, later[0].status) == ("token-2", 200)
    assert len(api.refreshes) == 2, "the first token, then one renewal"
    renewal = api.refreshes[1]
    assert min(r.done_at for r in rejected) <= renewal.at
    assert [r for r in rejected if r.done_at < renewal.done_at], "no 401 while it is under way"
    assert [r for r in rejected if r.done_at > renewal.done_at], "no 401 after it"
    for refused in rejected:
        replay = next(r for r in api.sent if r.job_id == refused.job_id and r.at > refused.at)
        waited = replay.at - max(refused.done_at, renewal.done_at)
        assert waited < 1.0, "not replayed at once"
    assert not [e for e in events if isinstance(e, PollError)]
    assert {job: r.status for job, r in results(events).items()} == dict.fromkeys(ids, "COMPLETED")
    assert summary(events).exit_code == 0
    assert summary(events).requests == len(api.sent)
