"""The scheduler against a model, in virtual time: a hypothesis state machine.

`SchedulerMachine` starts a run of a few jobs through the real scheduler, `StatusClient`,
token provider, rate budget and `Transport`; only the wire is fake (`tests.wire`, answered by
`FakeApi`, an in-memory Lucidity API with true job timelines). Hypothesis then interleaves
steps of virtual time with faults: failed and malformed answers, 404s, UNKNOWN blips, a
rejected id, 429/503 pauses, revoked access tokens and a failing token endpoint. After every
step, and once more when the run has ended, what the run emitted is checked against a simple
model of what the API answered (`expect`) and against the limits of the contract.

Why a rule-based machine rather than scripts drawn up front: faults land between steps of a
run that is already going, so hypothesis can find orderings such as "a 429 while requests
wait for their slots" and shrink them to a handful of steps. One event loop per
example lives across the rules; a time step runs it until virtual time has moved on.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

import aiohttp
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from structlog.testing import capture_logs

from async_poller._engine.job import GiveUpLimits
from async_poller._engine.poll import stream_events
from async_poller._lucidity.auth import REFRESH_PATH
from async_poller._lucidity.client import STATUS_PATH
from async_poller._lucidity.transport import RawResponse
from async_poller.config import Config, Credentials, Rate
from async_poller.events import Event, PollError, Result, Summary, Transition
from async_poller.ids import JobIds
from async_poller.outcome import ACTIVE, TERMINAL
from async_poller.redact import Secret
from async_poller.testing import VirtualClock

from .helpers import examples
from .wire import Request, job_body, token_body, wire_connect

LATENCY = 0.5
"""Virtual seconds every answer takes."""
LIMITS = GiveUpLimits(unknown=3, not_found=2, bad_response_window=60.0)
"""Small give-up limits, so that runs reach them."""
UNKNOWN_DELAY = 5.0
EPSILON = 1e-6
FAILURES = ("http", "timeout", "connection", "bad")
"""Faults that make a poll fail: a 503, no answer in time, a reset, a body that is not JSON."""

Timeline = tuple[tuple[float, str], ...]


@st.composite
def timelines(draw: st.DrawFn) -> Timeline:
    """A job's true lifecycle: QUEUED, maybe PREPARING and PROCESSING, then a final status."""
    queued = draw(st.floats(0, 120))
    final = draw(st.sampled_from(sorted(TERMINAL)))
    if final == "CANCELLED" and draw(st.booleans()):
        return ((0.0, "QUEUED"), (queued, "CANCELLED"))
    preparing = queued + draw(st.floats(0, 120))
    processing = preparing + draw(st.floats(0, 600))
    return ((0.0, "QUEUED"), (queued, "PREPARING"), (preparing, "PROCESSING"), (processing, final))


@dataclass
class Sent:
    """One request as the fake API saw it. `outcome` says what the answer meant: a status
    word, `not_found`, `rejected`, one of `FAILURES`, `throttled`, `unauthorized`, or for a
    token refresh `token` / `token_failed`; None while no answer has gone out."""

    at: float
    job_id: int | None
    token: str | None = None
    outcome: str | None = None
    done_at: float = math.inf
    retry_after: float | None = None


@dataclass
class FakeApi:
    """The Lucidity API in memory: true timelines, plus the faults queued by the rules."""

    clock: VirtualClock
    timelines: dict[int, Timeline]
    request_timeout: float
    faults: defaultdict[int, deque[str]] = field(default_factory=lambda: defaultdict(deque))
    """Per job, what its next polls get instead of the truth."""
    throttles: deque[tuple[int, int]] = field(default_factory=deque)
    """(429 or 503, Retry-After seconds) for the next status requests, whichever job."""
    refresh_failures: int = 0
    revoked_before: float = -math.inf
    issued: dict[str, float] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)

    async def answer(self, request: Request) -> RawResponse:
        assert request.path in (STATUS_PATH, REFRESH_PATH)
        record = Sent(self.clock.now(), request.job_id, request.token)
        self.sent.append(record)
        try:
            if request.job_id is None:
                response = await self._refresh(record)
            else:
                response = await self._status(record, request.job_id)
        finally:
            if record.outcome is not None:
                record.done_at = self.clock.now()
        return response

    async def _refresh(self, record: Sent) -> RawResponse:
        await self.clock.sleep(LATENCY)
        if self.refresh_failures:
            self.refresh_failures -= 1
            record.outcome = "token_failed"
            return RawResponse(500, {}, b"")
        token = f"token-{len(self.issued) + 1}"
        self.issued[token] = self.clock.now()
        record.outcome = "token"
        return RawResponse(200, {}, token_body(token))

    async def _status(self, record: Sent, job_id: int) -> RawResponse:
        pending = self.faults[job_id]
        if pending and pending[0] == "timeout":
            try:  # no answer: the transport gives up after its timeout, on the clock
                await self.clock.sleep(math.inf)
            finally:
                if self.clock.now() >= record.at + self.request_timeout:
                    pending.popleft()
                    record.outcome = "timeout"
        await self.clock.sleep(LATENCY)
        if self.throttles:
            code, retry_after = self.throttles.popleft()
            record.outcome, record.retry_after = "throttled", float(retry_after)
            return RawResponse(code, {"Retry-After": str(retry_after)}, b"")
        if self.issued.get(record.token or "", -math.inf) < self.revoked_before:
            record.outcome = "unauthorized"
            return RawResponse(401, {}, b'{"message": "token expired"}')
        fault = pending.popleft() if pending else None
        record.outcome = fault
        if fault == "connection":
            raise aiohttp.ServerDisconnectedError()
        if fault == "http":
            return RawResponse(503, {}, b"")
        if fault == "bad":
            return RawResponse(200, {}, b"<html>gateway</html>")
        if fault == "unknown":
            record.outcome = "UNKNOWN"
            return RawResponse(200, {}, job_body(job_id, "UNKNOWN"))
        if fault == "rejected":
            return RawResponse(400, {}, b'{"message": "bad id"}')
        timeline = self.timelines.get(job_id)
        if fault == "not_found" or timeline is None:
            record.outcome = "not_found"
            return RawResponse(404, {}, b'{"message": "no such job"}')
        status = [status for at, status in timeline if at <= self.clock.now()][-1]
        record.outcome = status
        return RawResponse(200, {}, job_body(job_id, status))


@dataclass
class Expected:
    """What a job's answers, in order, should have made of it."""

    transitions: list[tuple[str | None, str]] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    """`poll_error.attempt` of each failed poll that was reported."""
    ending: str | None = None
    last_status: str | None = None
    polls: int = 0


def expect(outcomes: list[tuple[str, float]]) -> Expected:
    """The model: transitions, poll errors and the ending that `outcomes` (each with the
    time it was answered) call for.

    A status word is a poll answered (UNKNOWN is never a transition); `LIMITS` answers in a
    row of UNKNOWN or 404 end the job, and so do malformed bodies lasting `LIMITS`' window.
    Failures of another kind neither count in nor break a row of malformed bodies; any other
    answer breaks every row.
    Throttling and 401 answers are not polls. Nothing may follow the ending.
    """
    model = Expected()
    failed = unknown = not_found = 0
    malformed_since: float | None = None
    for outcome, at in outcomes:
        if outcome in ("throttled", "unauthorized"):
            continue
        assert model.ending is None, f"a poll after the job ended {model.ending}"
        model.polls += 1
        unknown = unknown + 1 if outcome == "UNKNOWN" else 0
        not_found = not_found + 1 if outcome == "not_found" else 0
        if outcome not in FAILURES:
            failed = 0
            malformed_since = None
        if outcome == "UNKNOWN":
            model.ending = "UNKNOWN" if unknown >= LIMITS.unknown else None
        elif outcome in ACTIVE or outcome in TERMINAL:
            if outcome != model.last_status:
                model.transitions.append((model.last_status, outcome))
                model.last_status = outcome
            model.ending = outcome if outcome in TERMINAL else None
        elif outcome == "not_found":
            model.ending = "NOT_FOUND" if not_found >= LIMITS.not_found else None
        elif outcome == "rejected":
            model.ending = "ERROR"
        else:
            failed += 1
            if outcome == "bad" and malformed_since is None:
                malformed_since = at
            lasted = at - malformed_since if malformed_since is not None else 0.0
            if outcome == "bad" and lasted >= LIMITS.bad_response_window:
                model.ending = "ERROR"
            else:
                model.attempts.append(failed)
    return model


class SchedulerMachine(RuleBasedStateMachine):
    """A run of a few jobs, with faults injected between steps of virtual time."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = VirtualClock()
        self.events: list[Event] = []
        self.disturbed = False
        """A global fault (throttling, revoked tokens, failing refreshes) happened."""
        self.faulted: set[int] = set()

    @initialize(
        truths=st.lists(timelines(), min_size=1, max_size=5),
        unknown_ids=st.integers(0, 1),
        limit=st.integers(3, 60),
        concurrency=st.integers(1, 4),
        min_delay=st.sampled_from([0.0, 5.0, 10.0, 30.0]),
        max_delay=st.sampled_from([30.0, 60.0, 120.0]),
        deadline=st.integers(120, 1800),
        request_timeout=st.sampled_from([3.0, 10.0]),
        seed=st.integers(0, 2**16),
        faulty=st.booleans(),
    )
    def start(
        self,
        *,
        truths: list[Timeline],
        unknown_ids: int,
        limit: int,
        concurrency: int,
        min_delay: float,
        max_delay: float,
        deadline: int,
        request_timeout: float,
        seed: int,
        faulty: bool,
    ) -> None:
        self.faulty = faulty
        """Whether the fault rules may fire (runs without faults check liveness)."""
        self.ids = list(range(1, len(truths) + unknown_ids + 1))
        self.api = FakeApi(self.clock, dict(enumerate(truths, 1)), request_timeout)
        self.config = Config(
            credentials=Credentials(refresh_token=Secret("refresh-token-of-the-model")),
            base_url="http://127.0.0.1:1",
            concurrency=concurrency,
            rate=Rate(limit, 60.0),
            min_delay=min_delay,
            max_delay=max_delay,
            deadline=float(deadline),
            request_timeout=request_timeout,
            unknown_delay=UNKNOWN_DELAY,
            max_unknown=LIMITS.unknown,
            max_not_found=LIMITS.not_found,
            bad_response_window=LIMITS.bad_response_window,
            seed=seed,
        )
        self.run = self.loop.create_task(self._consume())

    async def _consume(self) -> None:
        job_ids = JobIds(ids=self.ids, invalid=[], duplicates=0)
        connect = wire_connect(self.api.answer)
        async for event in stream_events(job_ids, self.config, self.clock, connect):
            self.events.append(event)

    def job(self, index: int) -> int:
        """A job id from a rule's index, whatever the number of jobs."""
        return self.ids[index % len(self.ids)]

    @rule(seconds=st.floats(0.1, 400))
    def wait(self, seconds: float) -> None:
        """Let the run go on for `seconds` of virtual time."""
        self.loop.run_until_complete(self.clock.sleep(seconds))

    @precondition(lambda self: self.faulty)
    @rule(index=st.integers(0, 5), kind=st.sampled_from(FAILURES), count=st.integers(1, 4))
    def fail_polls(self, index: int, kind: str, count: int) -> None:
        """The job's next polls fail."""
        self.api.faults[self.job(index)].extend([kind] * count)
        self.faulted.add(self.job(index))

    @precondition(lambda self: self.faulty)
    @rule(
        index=st.integers(0, 5),
        kind=st.sampled_from(["unknown", "not_found", "rejected"]),
        count=st.integers(1, 3),
    )
    def misanswer(self, index: int, kind: str, count: int) -> None:
        """The job's next polls say UNKNOWN, 404, or 400 (which ends it ERROR)."""
        self.api.faults[self.job(index)].extend([kind] * count)
        self.faulted.add(self.job(index))

    @precondition(lambda self: self.faulty)
    @rule(code=st.sampled_from([429, 503]), retry_after=st.integers(0, 90))
    def throttle(self, code: int, retry_after: int) -> None:
        """The next status request, whichever job it is for, is told to back off."""
        self.api.throttles.append((code, retry_after))
        self.disturbed = True

    @precondition(lambda self: self.faulty)
    @rule()
    def revoke_tokens(self) -> None:
        """Every access token issued so far stops working (expiry before the client thinks)."""
        self.api.revoked_before = self.clock.now()
        self.disturbed = True

    @precondition(lambda self: self.faulty)
    @rule(count=st.integers(1, 3))
    def fail_refreshes(self, count: int) -> None:
        """The token endpoint answers 500 to its next requests."""
        self.api.refresh_failures += count
        self.disturbed = True

    @invariant()
    def consistent_so_far(self) -> None:
        """What the run emitted so far agrees with the model and the limits."""
        if hasattr(self, "run"):
            self.check(final=False)

    def teardown(self) -> None:
        """Let the run end, check everything once more, and close the loop."""
        try:
            if hasattr(self, "run"):
                self.loop.run_until_complete(self.run)
                self.check(final=True)
        finally:
            self.loop.run_until_complete(_cancel_all())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def check(self, *, final: bool) -> None:
        """Every invariant, on what has happened so far (`final`: the run has ended)."""
        sent = self.api.sent
        self.check_rate(sent)
        self.check_pauses(sent)
        results: dict[int, Result] = {}
        for event in self.events:
            if isinstance(event, Result):
                assert event.job_id not in results, "a job got two results"
                results[event.job_id] = event
        aborted = self.auth_aborted()
        for job_id in self.ids:
            mine = [r for r in sent if r.job_id == job_id]
            model = expect([(r.outcome, r.done_at) for r in mine if r.outcome is not None])
            self.check_job(job_id, model, results.get(job_id), final=final, aborted=aborted)
            self.check_spacing(mine)
        if final:
            self.check_summary(results, aborted)

    def check_rate(self, sent: list[Sent]) -> None:
        """No window of the rate's period holds more requests than its limit."""
        rate = self.config.rate
        times = [r.at for r in sent]
        for n, at in enumerate(times):
            assert bisect.bisect_left(times, at + rate.period) - n <= rate.limit

    def check_pauses(self, sent: list[Sent]) -> None:
        """No request goes out while a 429/503 pause announced by an answer is on."""
        times = [r.at for r in sent]
        for r in sent:
            if r.outcome == "throttled" and r.retry_after is not None:
                first = bisect.bisect_right(times, r.done_at + EPSILON)
                last = bisect.bisect_left(times, r.done_at + r.retry_after - EPSILON)
                assert first >= last, f"a request inside the pause announced at {r.done_at}"

    def check_spacing(self, mine: list[Sent]) -> None:
        """Before the final sweep, polls of one job keep to min_delay after an answered
        poll, to the UNKNOWN re-check delay after UNKNOWN, and a retry is never immediate."""
        sweep_from = 0.75 * self.config.deadline  # the sweep takes at most the last quarter
        floor_after_unknown = min(self.config.max_delay, 0.8 * UNKNOWN_DELAY)
        # An early retry waits at least half its first delay; once the retry budget is spent,
        # a failed job waits for its regular poll instead.
        floor_after_failure = min(self.config.min_delay, min(2.0, self.config.max_delay) / 2)
        for before, after in itertools.pairwise(mine):
            gap = after.at - before.done_at
            if after.at >= sweep_from or before.outcome in (None, "throttled", "unauthorized"):
                continue
            if before.outcome in FAILURES:
                assert gap >= floor_after_failure - EPSILON
            elif before.outcome == "UNKNOWN":
                assert gap >= floor_after_unknown - EPSILON
            else:
                assert gap >= self.config.min_delay - EPSILON, (before, after)

    def check_job(
        self,
        job_id: int,
        model: Expected,
        result: Result | None,
        *,
        final: bool,
        aborted: bool,
    ) -> None:
        """The job's transitions, poll errors and result are what its answers call for."""
        transitions = [
            (e.from_, e.to) for e in self.events if isinstance(e, Transition) and e.job_id == job_id
        ]
        attempts = [
            e.attempt for e in self.events if isinstance(e, PollError) and e.job_id == job_id
        ]
        assert transitions == model.transitions
        assert attempts == model.attempts
        if model.ending is not None:
            assert result is not None, f"job {job_id} ended {model.ending} without a result"
            assert (result.status, result.last_status) == (model.ending, model.last_status)
            assert result.polls == model.polls
            if model.ending in TERMINAL:
                final_status = self.api.timelines[job_id][-1][1]
                assert model.ending == final_status, "a result before the true final status"
        elif result is not None:
            assert result.status == "TIMED_OUT", result
            assert abs(result.elapsed_s - self.config.deadline) < 1.0
            assert result.last_status == model.last_status
        elif final:
            assert aborted, f"job {job_id} has no result"
        if final and not self.disturbed and not self.faulted:
            self.check_liveness(job_id, result)

    def check_liveness(self, job_id: int, result: Result | None) -> None:
        """In a run without faults, a job final well before the deadline gets its true final
        status: it is polled at least every max_delay plus a fair share of the budget."""
        truth = self.api.timelines.get(job_id)
        if truth is None or result is None:
            return
        config = self.config
        fair_round = len(self.ids) / config.rate.per_second
        margin = 1.2 * config.max_delay + 3 * fair_round + config.request_timeout + 10.0
        final_at, final_status = truth[-1]
        if final_at <= config.deadline - margin:
            assert result.status == final_status, (result, truth)

    def auth_aborted(self) -> bool:
        """A job got a 401 on the token it was given after its previous 401: exit 4."""
        for job_id in self.ids:
            outcomes = [r.outcome for r in self.api.sent if r.job_id == job_id]
            if any(a == b == "unauthorized" for a, b in itertools.pairwise(outcomes)):
                return True
        return False

    def check_summary(self, results: dict[int, Result], aborted: bool) -> None:
        """The summary is last and adds up: counts, requests, throttles, exit code."""
        summary = self.events[-1]
        assert isinstance(summary, Summary)
        counts = Counter(result.status for result in results.values())
        assert summary.total == len(self.ids)
        assert summary.counts["pending"] == len(self.ids) - len(results)
        assert {k: v for k, v in summary.counts.items() if k != "pending" and v} == counts
        answered = [r for r in self.api.sent if r.outcome is not None]
        # Every request sent counts, including one cut short by the end of the run.
        assert summary.requests == len(self.api.sent)
        # Every 429 and 503 slows the rate: a 503 without Retry-After (the "http" fault) too.
        assert summary.throttled == sum(r.outcome in ("throttled", "http") for r in answered)
        assert summary.retries <= 10 + 0.2 * (summary.requests - summary.retries)
        if aborted:
            expected = 4
        elif set(counts) - TERMINAL:
            expected = 3
        elif counts["FAILED"] or counts["CANCELLED"]:
            expected = 1
        else:
            expected = 0
        assert summary.exit_code == expected


async def _cancel_all() -> None:
    """Cancel whatever still runs in this loop (a failed check leaves the run going)."""
    leftovers = asyncio.all_tasks() - {asyncio.current_task()}
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


def test_scheduler_agrees_with_its_model() -> None:
    """Runs with faults injected at any moment keep every rule of the contract's model."""
    with capture_logs():  # the runs' warnings (budget short, refresh failed) are expected
        run_state_machine_as_test(
            SchedulerMachine,
            settings=settings(
                max_examples=examples(200),
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
