"""One budget per tenant: what every shared store has in common, and choosing the store.

The API's limit belongs to the tenant (a base URL and a credential), not to one process. A
shared pacer keeps the tenant's pace state where every process of the tenant sees it: a
SQLite file on one host (`tenant_sqlite`), or Redis across hosts (`tenant_redis`). When
the store cannot be used, the pacer says why once (`on_failure`) and goes on alone at a
conservative share of the rate (half, or less if more sharers were seen), never more.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from ..clock import Clock, shared_timeline
from ..config import Config, Credentials, Rate, is_redis_url
from ..redact import redact
from .pacer import LocalPacer, Pacer, PaceState

__all__ = [
    "SharedPacer",
    "default_store_path",
    "open_shared_pacer",
    "tenant_key",
]

FAIRNESS_JITTER: Final = 0.05
"""A process told to wait asks again up to this share of an interval later, at random, so
that sharers take turns rather than the same one always winning the next slot."""


def default_store_path() -> Path:
    """`$XDG_STATE_HOME/async-poller/budget.db` (`~/.local/state/...` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "async-poller" / "budget.db"


def tenant_key(base_url: str, credentials: Credentials) -> str:
    """Who owns a budget: the API host and the credential, hashed (the file never holds
    the credential itself)."""
    given = credentials.refresh_token or credentials.access_token
    credential = given.reveal() if given is not None else str(credentials.token_command)
    digest = hashlib.sha256(f"{base_url}\0{credential}".encode()).hexdigest()
    return digest[:32]


class SharedPacer:
    """What the shared pacers have in common: the tenant's pace state as last read from the
    store, on a timeline every sharer agrees on, and a pacer of their own once the store
    has failed."""

    def __init__(
        self,
        rate: Rate,
        clock: Clock,
        *,
        timeline: Callable[[], float],
        burst: int,
        max_request_s: float,
        on_failure: Callable[[str], None],
        rng: random.Random | None,
    ) -> None:
        self._rate = rate
        self._clock = clock
        self._timeline = timeline
        self._burst = burst
        self._max_request_s = max_request_s
        self._on_failure = on_failure
        self._rng = rng or random.Random()
        self._id = f"{os.getpid()}-{self._rng.getrandbits(32):08x}"
        self._state = PaceState.fresh(rate)
        self._sharers = 1
        self._alone: LocalPacer | None = None
        self._in_flight: deque[Any] = deque()  # this process's requests in the store
        self._ended: list[tuple[Any, float | None]] = []  # and their ends (None: never sent)

    @property
    def sharers(self) -> int:
        """Processes seen spending this budget in the last window, this one included."""
        return self._sharers

    def per_second(self) -> float:
        if self._alone is not None:
            return self._alone.per_second()
        return self._state.pace.at(self._timeline())

    def paused_for(self) -> float:
        if self._alone is not None:
            return self._alone.paused_for()
        return max(0.0, self._state.paused_until - self._timeline())

    def ended(self, *, used: bool = True) -> None:
        # Entries are alike: the oldest one ends, whichever request it was. Requests that
        # passed through the store end there; only the others are the fallback pacer's.
        if self._in_flight:
            entry = self._in_flight.popleft()
            if self._alone is None:
                self._ended.append((entry, self._timeline() if used else None))
        elif self._alone is not None:
            self._alone.ended(used=used)

    def _jittered(self, wait: float | None, now: float) -> float | None:
        """`wait`, plus a random share of an interval, so that sharers take turns."""
        if wait is None or math.isinf(wait):
            return wait
        interval = 1 / self._state.pace.at(now)
        return wait + self._rng.uniform(0, FAIRNESS_JITTER * interval)

    def _go_alone(self, store: str, error: BaseException) -> str:
        """Go on with a pacer of its own, at a share of the rate that leaves room for the
        sharers seen (half, or less), still holding any pause known here; the reason to tell."""
        share = 1 / max(2, self._sharers)
        alone = Rate(self._rate.limit * share, self._rate.period)
        self._alone = LocalPacer(alone, self._clock, burst=1)
        pause = self._state.paused_until - self._timeline()
        if pause > 0:
            self._alone.throttle(pause, sent_ago=0.0)
        return redact(
            f"the shared budget store {store} cannot be used ({error}); "
            f"going on alone at {alone}, {share:.0%} of {self._rate}"
        )


def open_shared_pacer(
    config: Config, clock: Clock, on_failure: Callable[[str], None]
) -> Pacer | None:
    """The tenant's shared pacer for `config.budget_store` (None: the budget is not shared):
    in Redis for a `redis://` or `rediss://` URL, else in a SQLite file."""
    if config.budget_store is None:
        return None
    tenant = tenant_key(config.base_url, config.credentials)
    timeline = shared_timeline(clock)
    if is_redis_url(config.budget_store):
        from .tenant_redis import RedisPacer

        return RedisPacer(
            config.budget_store, tenant, config.rate, clock, timeline=timeline,
            burst=config.burst, max_request_s=config.request_timeout, on_failure=on_failure,
        )  # fmt: skip
    from .tenant_sqlite import SqlitePacer

    return SqlitePacer(
        Path(config.budget_store), tenant, config.rate, clock, timeline=timeline,
        burst=config.burst, max_request_s=config.request_timeout, on_failure=on_failure,
    )  # fmt: skip
