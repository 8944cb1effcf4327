"""Access tokens: from a refresh token, a ready access token, or a helper command.

A `TokenProvider` hands out a token it believes valid, fetching a new one shortly before the
old one expires, and again once after a 401. However many jobs ask at once, one fetch runs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import shlex
from abc import ABC, abstractmethod
from typing import Final

import orjson
import structlog

from .budget import FIRST
from .clock import Clock, TimerHandle
from .config import Credentials
from .errors import AuthError, FatalResponseError
from .policy import DelayPolicy
from .redact import remember
from .responses import describe_error
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
"""Lifetime assumed for a token that does not say its own (API.md: 15 minutes)."""
REFRESH_MARGIN: Final = 60.0
"""Fetch a new token this long before the current one expires."""
COMMAND_TIMEOUT: Final = 60.0

_log = structlog.get_logger("async_poller")


def auth_headers(token: str) -> dict[str, str]:
    """The two headers every API call carries (the raw token, no `Bearer `)."""
    return {"X-Authtype": "lucidity_access_token", "Authorization": token}


class TokenProvider(ABC):
    """Caches one access token and fetches the next one single-flight.

    A renewable provider also refreshes on a timer shortly before expiry, so requests that
    wait long for their slot find a live token whether or not anyone asked for one lately.
    """

    renewable = True

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = -math.inf
        self._fetching: asyncio.Task[str] | None = None
        self._waiters: set[asyncio.Future[None]] = set()
        self._timer: TimerHandle | None = None

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
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.get_running_loop().create_task(self._fetch_and_keep())
            self._fetching.add_done_callback(self._wake_waiters)
        fetch = self._fetching
        # Each waiter waits on a future of its own, kept in a set: cancelling it neither
        # cancels everyone's fetch nor costs more than O(1), even with 100,000 waiters
        # (asyncio.shield and Event both remove a cancelled waiter from a list).
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)
        return fetch.result()

    def _wake_waiters(self, fetch: asyncio.Task[str]) -> None:
        if not fetch.cancelled():
            fetch.exception()  # retrieved here: every waiter may have been cancelled
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def _fetch_and_keep(self) -> str:
        token = await self._fetch()
        remember(token)
        lifetime = _jwt_expiry(token, self._clock.wall())
        lifetime = ACCESS_TOKEN_TTL if lifetime is None else lifetime
        # A minute before expiry, or halfway for short-lived tokens (no refresh storm).
        refresh_in = max(lifetime - REFRESH_MARGIN, lifetime / 2)
        self._token = token
        self._refresh_at = self._clock.now() + refresh_in
        if self.renewable:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._clock.call_later(refresh_in, self._refresh_in_background)
        return token

    def _refresh_in_background(self) -> None:
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.get_running_loop().create_task(self._fetch_and_keep())
            self._fetching.add_done_callback(self._wake_waiters)
            # A failure surfaces to the next caller, who fetches again; nobody else waits.
            self._fetching.add_done_callback(_note_failure)

    @abstractmethod
    async def _fetch(self) -> str:
        """Obtain a fresh access token, or raise `AuthError`."""


class StaticTokenProvider(TokenProvider):
    """A ready access token: used as is, never refreshed."""

    renewable = False

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
    """Exchanges the refresh token for access tokens (API.md, Authentication)."""

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
                token = _access_token(response.body)
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

    def __init__(self, command: str, clock: Clock) -> None:
        super().__init__(clock)
        self._argv = shlex.split(command)
        if not self._argv:
            raise AuthError("--token-command is empty")

    async def _fetch(self) -> str:
        name = self._argv[0]
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
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


def _access_token(body: bytes) -> str | None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(document, dict) and isinstance(document.get("data"), dict):
        document = document["data"]
    token = document.get("accessToken") if isinstance(document, dict) else None
    return token.strip() if isinstance(token, str) and token.strip() else None


def _jwt_expiry(token: str, now: float) -> float | None:
    """Seconds until a JWT's `exp`, if the token is a JWT that has one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    if isinstance(exp, int | float) and not isinstance(exp, bool) and math.isfinite(exp):
        return float(exp) - now
    return None
