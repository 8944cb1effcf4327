"""Access tokens: from a refresh token, a ready access token, or a helper command.

A `TokenProvider` hands out a token it believes valid, fetching a new one shortly before the
old one expires, and again once after a 401. However many jobs ask at once, one fetch runs.
"""

from __future__ import annotations

import asyncio
import math
import os
import shlex
from abc import ABC, abstractmethod
from typing import Final

from .._pacing.budget import FIRST
from .._pacing.delays import DelayPolicy
from ..clock import Clock, TimerHandle
from ..config import Credentials
from ..errors import AuthError, FatalResponseError
from ..logs import get_logger
from ..redact import remember
from .responses import describe_error
from .tokens import access_token_in, claim_number, jwt_claims, sendable
from .transport import Transport, TransportError

__all__ = [
    "ACCESS_TOKEN_TTL",
    "REFRESH_PATH",
    "CommandTokenProvider",
    "RefreshTokenProvider",
    "StaticTokenProvider",
    "TokenProvider",
    "auth_headers",
    "make_token_provider",
]

REFRESH_PATH: Final = "/external/api/v1/auth/user-token/refresh"
ACCESS_TOKEN_TTL: Final = 900.0
"""Lifetime assumed for a token that does not say its own (docs/api-contract.md: 15 minutes)."""
REFRESH_MARGIN: Final = 60.0
"""Fetch a new token this long before the current one expires."""
MIN_REFRESH_INTERVAL: Final = 10.0
"""Never refresh on a timer more often than this, whatever a token says of its expiry."""
CLOCK_SKEW_TOLERANCE: Final = 60.0
"""A token issued (`iat`) further than this from our clock's now means the clocks disagree."""
COMMAND_TIMEOUT: Final = 60.0

_log = get_logger()


def auth_headers(token: str) -> dict[str, str]:
    """The two headers every API call carries (the raw token, no `Bearer `)."""
    return {"X-Authtype": "lucidity_access_token", "Authorization": token}


class TokenProvider(ABC):
    """Caches one access token and fetches the next one single-flight.

    A renewable provider also refreshes on a timer shortly before expiry, so requests that
    wait long for their slot find a live token whether or not anyone asked for one lately.
    """

    renewable = True
    origin = "the token source"
    """Where tokens come from, as error messages name it."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = -math.inf
        self._fetching: asyncio.Task[str] | None = None
        self._waiters: dict[asyncio.Task[str], dict[asyncio.Future[None], None]] = {}
        """The callers waiting for each fetch, in the order they came: a fetch wakes its
        own waiters, never those of a newer fetch started before its done-callback ran."""
        self._timer: TimerHandle | None = None
        self._skew_warned = False

    async def token(self) -> str:
        """A token that should still be valid for a while (refreshed once near expiry)."""
        if self._token is not None and self._clock.now() < self._refresh_at:
            return self._token
        return await self._fetch_once()

    def newest(self, fallback: str) -> str:
        """The token obtained last, without fetching (`fallback` before the first fetch)."""
        return self._token or fallback

    async def renew(self, rejected: str) -> str:
        """A new token after `rejected` got a 401 (unless another caller renewed it already)."""
        if self._token is not None and self._token != rejected:
            return self._token
        self._refresh_at = -math.inf
        return await self._fetch_once()

    async def aclose(self) -> None:
        """Cancel a fetch still running and the refresh timer (when the run ends)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._fetching is not None:
            self._fetching.cancel()
            await asyncio.gather(self._fetching, return_exceptions=True)

    async def _fetch_once(self) -> str:
        fetch = self._fetching
        if fetch is None or fetch.done():
            fetch = self._start_fetch()
        # Each waiter waits on a future of its own, kept in a dict (an ordered set):
        # cancelling it neither cancels everyone's fetch nor costs more than O(1), even with
        # 100,000 waiters (asyncio.shield and Event both remove a cancelled waiter from a
        # list), and the waiters wake in the order they came, so that the first polls of a
        # run, which wait for its first token, still go in input order.
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._waiters[fetch]
        waiters[waiter] = None
        try:
            await waiter
        finally:
            waiters.pop(waiter, None)
        return fetch.result()

    def _start_fetch(self) -> asyncio.Task[str]:
        fetch = asyncio.get_running_loop().create_task(self._fetch_and_keep())
        self._fetching = fetch
        self._waiters[fetch] = {}
        fetch.add_done_callback(self._wake_waiters)
        return fetch

    def _wake_waiters(self, fetch: asyncio.Task[str]) -> None:
        if not fetch.cancelled():
            fetch.exception()  # retrieved here: every waiter may have been cancelled
        for waiter in self._waiters.pop(fetch, ()):
            if not waiter.done():
                waiter.set_result(None)

    async def _fetch_and_keep(self) -> str:
        token = await self._fetch()
        remember(token)
        if not sendable(token):
            raise AuthError(
                f"{self.origin} gave an access token with spaces, control or non-ASCII "
                "characters, which cannot be sent in a header\n"
                "HINT: check what it prints; a token is one word of visible ASCII"
            )
        self._token = token
        if not self.renewable:
            # Sent until the server rejects it: its expiry, by our clock, is only a guess,
            # and the server's 401 is the word that counts.
            self._refresh_at = math.inf
            return token
        lifetime = self._lifetime(token)
        # A minute before expiry, or halfway for short-lived tokens (no refresh storm), and
        # never sooner than MIN_REFRESH_INTERVAL: a 401 renews a token that expires earlier.
        refresh_in = max(lifetime - REFRESH_MARGIN, lifetime / 2, MIN_REFRESH_INTERVAL)
        self._refresh_at = self._clock.now() + refresh_in
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._clock.call_later(refresh_in, self._refresh_in_background)
        return token

    def _lifetime(self, token: str) -> float:
        """How long `token` should live from now, by its own claims where it has them.

        A JWT issued (`iat`) far from our clock's now, or one already expired by our
        clock, means the clocks disagree: the token's stated lifetime is used instead of
        our clock's reading of `exp`, and a warning says so (once).
        """
        claims = jwt_claims(token)
        exp, iat = claim_number(claims.get("exp")), claim_number(claims.get("iat"))
        if exp is None:
            return ACCESS_TOKEN_TTL
        now = self._clock.wall()
        if iat is not None and exp > iat:
            if abs(now - iat) > CLOCK_SKEW_TOLERANCE:
                self._warn_skew(now - iat, "its issue time (iat)")
                return exp - iat
            return exp - now
        if exp - now <= 0:
            self._warn_skew(now - exp, "its expiry (exp)")
            return ACCESS_TOKEN_TTL
        return exp - now

    def _warn_skew(self, ahead_s: float, claim: str) -> None:
        if self._skew_warned:
            return
        self._skew_warned = True
        _log.warning(
            "clock_skew",
            message=f"this machine's clock is {round(ahead_s)}s past the new access token's "
            f"{claim}: the clocks disagree, or the token is stale; refreshing on the token's "
            "stated lifetime and on 401 instead",
            hint="synchronise the clock (NTP)",
        )

    def _refresh_in_background(self) -> None:
        if self._fetching is None or self._fetching.done():
            # A failure surfaces to the next caller, who fetches again; nobody else waits.
            self._start_fetch().add_done_callback(_note_failure)

    @abstractmethod
    async def _fetch(self) -> str:
        """Obtain a fresh access token, or raise `AuthError`."""


class StaticTokenProvider(TokenProvider):
    """A ready access token: used as is, never refreshed."""

    renewable = False
    origin = "LUCIDITY_ACCESS_TOKEN"

    def __init__(self, token: str, clock: Clock) -> None:
        super().__init__(clock)
        self._given: str | None = token

    async def _fetch(self) -> str:
        if self._given is None:
            raise AuthError(
                "the access token was rejected (HTTP 401) and cannot be refreshed\n"
                "HINT: use a refresh token (LUCIDITY_REFRESH_TOKEN) or --token-command"
            )
        token, self._given = self._given, None
        return token


class RefreshTokenProvider(TokenProvider):
    """Exchanges the refresh token for access tokens (docs/api-contract.md, Authentication)."""

    origin = "the token-refresh endpoint"

    def __init__(
        self, refresh_token: str, transport: Transport, clock: Clock, policy: DelayPolicy
    ) -> None:
        super().__init__(clock)
        self._refresh_token = refresh_token
        self._transport = transport
        self._policy = policy

    async def _fetch(self) -> str:
        for delay in self._policy.retry_delays():
            try:
                response = await self._transport.request(
                    "POST",
                    REFRESH_PATH,
                    priority=FIRST,
                    headers={"Accept": "application/json"},
                    json={"refreshToken": self._refresh_token},
                )
            except TransportError as error:
                if error.kind == "tls":
                    raise FatalResponseError(error.message) from None
                _log.warning(
                    "token_refresh_failed", reason=error.message, retry_in_s=round(delay, 1)
                )
                await self._clock.sleep(delay)
                continue
            if response.status == 200:
                token = access_token_in(response.body)
                if token is not None:
                    return token
                _log.warning("token_refresh_failed", reason="no accessToken in the answer")
            elif response.status == 429:
                continue  # the transport paused the shared budget already
            elif response.status not in (408,) and response.status < 500:
                error_text = describe_error(response.status, response.headers, response.body)
                raise AuthError(
                    f"the refresh token was rejected ({error_text})\n"
                    "HINT: generate a new refresh token in the Lucidity dashboard"
                )
            else:
                _log.warning("token_refresh_failed", reason=f"HTTP {response.status}")
            await self._clock.sleep(delay)
        raise AssertionError("retry_delays() is endless")


class CommandTokenProvider(TokenProvider):
    """Runs a command that prints an access token on stdout (its stderr goes to ours)."""

    origin = "--token-command"

    def __init__(self, command: str, clock: Clock) -> None:
        super().__init__(clock)
        self._argv = shlex.split(command)
        if not self._argv:
            raise AuthError("--token-command is empty")

    async def _fetch(self) -> str:
        name = self._argv[0]
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                env=_command_environment(),
            )
        except OSError as error:
            raise AuthError(f"--token-command: cannot run {name!r}: {error.strerror}") from None
        try:
            async with self._clock.timeout(COMMAND_TIMEOUT):
                stdout, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AuthError(f"--token-command: {name!r} gave no token within 60s") from None
        if process.returncode != 0:
            raise AuthError(f"--token-command: {name!r} exited with status {process.returncode}")
        lines = stdout.decode("utf-8", "replace").strip().splitlines()
        if len(lines) != 1 or not lines[0].strip() or any(c.isspace() for c in lines[0].strip()):
            raise AuthError(
                f"--token-command: {name!r} must print exactly one token on one line "
                f"(it printed {len(lines)} lines)"
            )
        return lines[0].strip()


def _command_environment() -> dict[str, str]:
    """Our environment without the Lucidity token variables: the command needs none of them."""
    return {
        name: value
        for name, value in os.environ.items()
        if not (name.startswith("LUCIDITY_") and "TOKEN" in name)
    }


def _note_failure(fetch: asyncio.Task[str]) -> None:
    if not fetch.cancelled() and (error := fetch.exception()) is not None:
        _log.warning("token_refresh_failed", reason=str(error))


def make_token_provider(
    credentials: Credentials, transport: Transport, clock: Clock, policy: DelayPolicy
) -> TokenProvider:
    """The provider for whichever credential was configured."""
    if credentials.refresh_token is not None:
        return RefreshTokenProvider(credentials.refresh_token.reveal(), transport, clock, policy)
    if credentials.access_token is not None:
        return StaticTokenProvider(credentials.access_token.reveal(), clock)
    assert credentials.token_command is not None
    return CommandTokenProvider(credentials.token_command, clock)
