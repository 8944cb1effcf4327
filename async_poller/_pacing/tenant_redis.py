"""One budget per tenant across machines: the pacing state in Redis.

The same contract as `tenant_sqlite.SqlitePacer` (read that first): every process of a tenant keeps
one `PaceState` and one sliding-window log, and a request leaves only through one atomic step
that checks and records it. Here the store is a Redis server that pollers on many machines
reach (`--budget-store redis://HOST/DB`), and that step is a Lua script the server runs
atomically (`tenant_lua`): one round trip per request.

Time is the callers', as with SqlitePacer: each process passes its `shared_timeline` (Unix
time, scaled) to the scripts, so the machines' clocks must agree (NTP keeps them within
milliseconds; a skew of d seconds can bring two machines' requests d seconds closer).

`throttle` is called synchronously, as the refusal is read: the pacer applies it to the
state it last saw at once, and tells the store from a task of its own. Every call to the
store goes through one connection, in order, so the store has the throttle before this
process's next request is checked. When the server cannot be reached or answers an error
(within `TIMEOUT_S`), the pacer says why once and goes on alone, as SqlitePacer does.

redis-py is imported only when such a pacer is made (`pip install 'async-poller[redis]'`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
from collections.abc import Callable, Sequence
from typing import Final

from ..clock import Clock
from ..config import Rate, shown_store
from ..logs import get_logger
from ..redact import redact
from .pacer import EARLY
from .tenant import SharedPacer
from .tenant_lua import THROTTLE, TRY_PASS

__all__ = ["KEPT_WINDOWS", "TIMEOUT_S", "RedisPacer"]

_log = get_logger()

TIMEOUT_S: Final = 1.0
"""How long connecting or one call may take (real seconds) before the pacer goes on alone."""
KEPT_WINDOWS: Final = 3
"""A tenant's keys outlive its last use by this many windows plus the longest request."""


class RedisPacer(SharedPacer):
    """A pacer whose state lives in Redis, shared by every process of a tenant, anywhere."""

    def __init__(
        self,
        url: str,
        tenant: str,
        rate: Rate,
        clock: Clock,
        *,
        timeline: Callable[[], float],
        burst: int = 1,
        max_request_s: float = 60.0,
        on_failure: Callable[[str], None] = lambda reason: None,
        rng: random.Random | None = None,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError

        super().__init__(
            rate, clock, timeline=timeline, burst=burst, max_request_s=max_request_s,
            on_failure=on_failure, rng=rng,
        )  # fmt: skip
        self._store = shown_store(url)
        # One connection keeps this process's calls in order; one quick retry gets past a
        # connection the server dropped while idle, and no more.
        self._client = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
            single_connection_client=True,
            decode_responses=True,
        )
        self._errors: tuple[type[Exception], ...] = (RedisError, OSError)
        self._try_pass_script = self._client.register_script(TRY_PASS)
        self._throttle_script = self._client.register_script(THROTTLE)
        # A hash tag keeps a tenant's keys in one slot, as a script on a cluster needs.
        prefix = f"async-poller:budget:v1:{{{tenant}}}"
        self._keys = [f"{prefix}:pace", f"{prefix}:flights", f"{prefix}:sharers"]
        pace = self._state.pace
        kept_ms = math.ceil((KEPT_WINDOWS * rate.period + max_request_s) * 1000)
        # What every script call passes after `now` (`tenant_lua`): the curve's parameters
        # (the script computes this very curve), the window, the keys' lifetime.
        self._constants = [pace.ceiling, pace.floor, rate.period, pace._beta, rate.period, kept_ms]
        self._requests = itertools.count()
        self._throttles: list[tuple[float, float, float]] = []  # now, pause, sent_at: untold
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def try_pass(self) -> float | None:
        async with self._lock:
            if self._alone is None:
                try:
                    at, now = await self._ask()
                except self._errors as error:
                    self._fail(error)
                else:
                    return self._jittered(None if at is None else at - now, now)
        assert self._alone is not None
        return await self._alone.try_pass()

    def throttle(self, pause: float, *, sent_ago: float) -> None:
        if self._alone is not None:
            self._alone.throttle(pause, sent_ago=sent_ago)
            return
        now = self._timeline()
        self._state.throttle(now, pause, now - sent_ago)
        self._throttles.append((now, pause, now - sent_ago))
        task = asyncio.get_running_loop().create_task(self._tell())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def synced(self) -> None:
        """Wait until every throttle told so far is in the store (or the pacer is alone)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def aclose(self) -> None:
        """Tell the store the ends of this process's last requests, and disconnect."""
        if self._closed:
            return
        self._closed = True
        await self.synced()
        async with self._lock:
            try:
                if self._alone is None and self._ended:
                    await self._tell_ended()
            except self._errors as error:
                _log.warning(
                    "budget_store_not_updated",
                    message="the ends of this run's last requests were not recorded: "
                    "other runs count them as in flight until they age out",
                    reason=redact(str(error)),
                )
            finally:
                with contextlib.suppress(*self._errors):  # a broken connection is gone anyway
                    await self._client.aclose()

    async def _ask(self) -> tuple[float | None, float]:
        """One request's check in the store: None (it passed) or when to ask again; and
        the time of asking."""
        await self._tell_throttles()
        ended, self._ended = self._ended, []
        now = self._timeline()
        request = f"{self._id}:{next(self._requests)}"
        told = [value for member, end in ended for value in (member, "" if end is None else end)]
        reply = await self._try_pass_script(
            keys=self._keys,
            args=[
                *self._common(now), self._rate.limit, self._burst, EARLY,
                self._max_request_s, self._id, request, *told,
            ],
        )  # fmt: skip
        at = self._load(reply)
        if at is None:
            self._in_flight.append(request)
        return at, now

    async def _tell(self) -> None:
        async with self._lock:
            if self._alone is None:
                try:
                    await self._tell_throttles()
                except self._errors as error:
                    self._fail(error)

    async def _tell_throttles(self) -> None:
        while self._throttles:
            now, pause, sent_at = self._throttles[0]
            reply = await self._throttle_script(
                keys=self._keys, args=[*self._common(now), pause, sent_at]
            )
            del self._throttles[0]
            self._load(reply)

    async def _tell_ended(self) -> None:
        flights = self._keys[1]
        pipe = self._client.pipeline(transaction=False)
        for member, end in self._ended:
            if end is None:
                pipe.zrem(flights, member)
            else:
                pipe.zadd(flights, {member: end + self._rate.period}, xx=True)
        self._ended.clear()
        await pipe.execute()

    def _common(self, now: float) -> list[float | int]:
        """The arguments every script begins with (`tenant_lua`)."""
        return [now, *self._constants]

    def _load(self, reply: Sequence[object]) -> float | None:
        """Take the state the store sent back; return the script's `at` (None: passed)."""
        at, sharers, *fields = reply
        next_at, paused_until, refused_at, cut_at, signalled_at = (
            -math.inf if value == "" else float(str(value)) for value in fields
        )
        state, pace = self._state, self._state.pace
        state.next_at, state.paused_until = next_at, paused_until
        pace.refused_at, pace.cut_at, pace.signalled_at = refused_at, cut_at, signalled_at
        for now, pause, sent_at in self._throttles:  # still to tell: already true here
            state.throttle(now, pause, sent_at)
        if isinstance(sharers, int) and sharers > 0:
            self._sharers = sharers
        return None if at == "" else float(str(at))

    def _fail(self, error: BaseException) -> None:
        """Go on alone (`SharedPacer._go_alone`), and say so."""
        reason = self._go_alone(self._store, error)
        self._throttles.clear()
        self._on_failure(reason)

    def __repr__(self) -> str:
        where = "alone" if self._alone is not None else self._store
        return f"RedisPacer({where}, sharers={self._sharers}, in_flight={len(self._in_flight)})"
