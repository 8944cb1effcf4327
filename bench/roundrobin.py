"""The naive baseline: what a cron job with curl does, cycling through the ids at the budget rate.

One request at a time, one every `period / limit` seconds on a fixed schedule (45/min: one
every 1.33 s, never more than 45 in any minute), the ids in a ring: ask about the next id,
drop it once its status is final, otherwise put it at the back. No priorities, no backoff.
The access token is refreshed a minute before its 15-minute expiry (and after a 401); a
refresh takes a slot like any request.
A 429 waits out `Retry-After`; a failed request just moves on to the next id.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

import aiohttp
import orjson

from async_poller.clock import Clock
from async_poller.config import Rate

__all__ = ["FINAL_STATUSES", "RoundRobinStats", "round_robin"]

FINAL_STATUSES: Final = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
STATUS_PATH: Final = "/external/client/api/v1/agent/install/status"
REFRESH_PATH: Final = "/external/api/v1/auth/user-token/refresh"
TOKEN_REFRESH_EVERY: Final = 14 * 60.0
REQUEST_TIMEOUT: Final = 10.0

OnFinal = Callable[[int, str], None]
"""Called with (job id, final status) the moment a final status is read."""


@dataclass(slots=True)
class RoundRobinStats:
    """What the baseline sent."""

    requests: int = 0
    refreshes: int = 0
    throttled: int = 0
    failures: int = 0


async def round_robin(
    ids: Iterable[int],
    *,
    base_url: str,
    refresh_token: str,
    clock: Clock,
    rate: Rate,
    on_final: OnFinal,
) -> RoundRobinStats:
    """Poll every id in turn at exactly `rate` until all are final; return what was sent."""
    interval = rate.period / rate.limit
    pending = deque(ids)
    stats = RoundRobinStats()
    token: str | None = None
    token_at = -float("inf")
    next_at = clock.now()
    # When the last `limit` requests ended: a request may start one period after the end of
    # the one `limit` places before it, so that, whatever the latency, no window on the
    # server's side holds more than `limit` (async-poller's budget keeps the same rule).
    ends: deque[float] = deque(maxlen=int(rate.limit))
    async with aiohttp.ClientSession(base_url) as session:
        while pending:
            if len(ends) == rate.limit:
                next_at = max(next_at, ends[0] + rate.period)
            await clock.sleep(next_at - clock.now())
            slot = next_at
            stats.requests += 1
            if token is None or clock.now() - token_at >= TOKEN_REFRESH_EVERY:
                stats.refreshes += 1
                token = await _refresh(session, refresh_token, clock)
                token_at = clock.now()
            else:
                job_id = pending.popleft()
                status, answer = await _status(session, token, job_id, clock)
                if status == 429:
                    stats.throttled += 1
                    pending.appendleft(job_id)
                    slot = max(slot, clock.now() + _seconds(answer) - interval)
                elif status == 401:
                    token = None
                    pending.appendleft(job_id)
                elif status == 200 and answer in FINAL_STATUSES:
                    on_final(job_id, answer)
                else:
                    stats.failures += status != 200
                    pending.append(job_id)
            ends.append(clock.now())
            # Never two requests at once: a slow answer pushes the schedule back, no catch-up.
            next_at = max(slot + interval, clock.now())
    return stats


def _seconds(retry_after: str | None) -> float:
    try:
        return max(1.0, float(retry_after or 1))
    except ValueError:
        return 5.0


async def _refresh(session: aiohttp.ClientSession, refresh_token: str, clock: Clock) -> str | None:
    try:
        async with (
            clock.timeout(REQUEST_TIMEOUT),
            session.post(REFRESH_PATH, json={"refreshToken": refresh_token}) as response,
        ):
            body = orjson.loads(await response.read())
            return str(body["accessToken"]) if response.status == 200 else None
    except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError, KeyError, TypeError):
        return None


async def _status(
    session: aiohttp.ClientSession, token: str, job_id: int, clock: Clock
) -> tuple[int, str | None]:
    """(HTTP status, job status) for 200, (429, Retry-After), or (status, None); 0: no answer."""
    headers = {"X-Authtype": "lucidity_access_token", "Authorization": token}
    try:
        async with (
            clock.timeout(REQUEST_TIMEOUT),
            session.get(STATUS_PATH, params={"id": str(job_id)}, headers=headers) as response,
        ):
            raw = await response.read()
            if response.status == 429:
                return 429, response.headers.get("Retry-After")
            if response.status != 200:
                return response.status, None
            return 200, str(orjson.loads(raw)["data"]["status"]).upper()
    except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError, KeyError, TypeError):
        return 0, None
