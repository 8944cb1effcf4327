"""The status request: one poll of one job, with the token and the 401 replay handled."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Final, Protocol

import aiohttp

from .._pacing.budget import FIRST, RateBudget
from .._pacing.delays import DelayPolicy
from ..clock import Clock
from ..config import Config
from ..errors import AuthError, FatalResponseError
from .auth import TokenProvider, auth_headers, make_token_provider
from .responses import (
    Answer,
    Forbidden,
    Redirected,
    RetryLater,
    Unauthorized,
    classify,
)
from .transport import ThrottleListener, Transport, TransportError, open_session

__all__ = ["STATUS_PATH", "StatusChecker", "StatusClient", "connect"]

STATUS_PATH: Final = "/external/client/api/v1/agent/install/status"


class StatusChecker(Protocol):
    """What the scheduler needs from the API: one poll of one job, and a request count."""

    @property
    def outcomes(self) -> Mapping[str, int]:
        """HTTP requests sent so far by outcome, token refreshes included."""
        ...

    async def check(self, job_id: int, *, priority: float) -> Answer:
        """Poll `job_id` once; raise `AsyncPollerError` when the whole run must stop."""
        ...


@asynccontextmanager
async def connect(
    config: Config,
    clock: Clock,
    budget: RateBudget,
    on_throttle: ThrottleListener,
    *,
    new_session: Callable[[int, str | None], aiohttp.ClientSession] = open_session,
) -> AsyncIterator[StatusClient]:
    """A `StatusClient` for `config`, with its session and token provider, closed on exit.

    `new_session(concurrency, ca_bundle)` opens the HTTP session: the engine tests pass a
    fake wire there, beneath the real transport, token provider and client."""
    async with new_session(config.concurrency, config.ca_bundle) as session:
        transport = Transport(
            session,
            config.base_url,
            budget=budget,
            clock=clock,
            timeout=config.request_timeout,
            on_throttle=on_throttle,
        )
        policy = DelayPolicy(config.min_delay, config.max_delay, random.Random(config.seed))
        tokens = make_token_provider(config.credentials, transport, clock, policy)
        try:
            yield StatusClient(transport, tokens, clock)
        finally:
            await tokens.aclose()


class StatusClient:
    """Asks the Agent Install Status API where one job stands."""

    def __init__(self, transport: Transport, tokens: TokenProvider, clock: Clock) -> None:
        self._transport = transport
        self._tokens = tokens
        self._clock = clock

    @property
    def outcomes(self) -> Mapping[str, int]:
        return self._transport.outcomes

    async def check(self, job_id: int, *, priority: float) -> Answer:
        """Poll `job_id` once (twice after a 401). Raises `AuthError` or `FatalResponseError`
        when the whole run must stop; every other outcome is an `Answer`."""
        token = await self._tokens.token()
        answer, token = await self._ask(job_id, token, priority)
        if isinstance(answer, Unauthorized):
            token = await self._tokens.renew(token)
            # The replay already waited its turn once: it goes next, before the token ages.
            answer, _ = await self._ask(job_id, token, FIRST)
            if isinstance(answer, Unauthorized):
                raise AuthError(f"the API rejected a freshly obtained token ({answer.message})")
        if isinstance(answer, Forbidden):
            raise AuthError(f"the credentials lack permission ({answer.message})")
        if isinstance(answer, Redirected):
            raise FatalResponseError(
                f"the API answered with a redirect (HTTP {answer.http_status}), which is never "
                "followed so the token cannot leak to another host\n"
                "HINT: check --base-url; it must be the API host itself"
            )
        return answer

    async def _ask(self, job_id: int, token: str, priority: float) -> tuple[Answer, str]:
        """The answer, and the token sent: the newest one when the request went out, as a
        request may wait for its slot longer than a token lives."""
        sent = token

        def headers() -> dict[str, str]:
            nonlocal sent
            sent = self._tokens.newest(token)
            return {**auth_headers(sent), "Accept": "application/json"}

        try:
            response = await self._transport.request(
                "GET", STATUS_PATH, priority=priority, headers=headers, params={"id": str(job_id)}
            )
        except TransportError as error:
            if error.kind == "tls":
                raise FatalResponseError(error.message) from None
            return RetryLater(error.kind, None, error.message), sent
        answer = classify(
            job_id, response.status, response.headers, response.body, self._clock.wall()
        )
        return answer, sent
