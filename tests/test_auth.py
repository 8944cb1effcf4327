"""Token providers: caching, single-flight fetches, expiry, static tokens and token commands."""

from __future__ import annotations

import asyncio
import base64
import sys

import orjson
import pytest
from structlog.testing import capture_logs

from async_poller._lucidity.auth import (
    ACCESS_TOKEN_TTL,
    CommandTokenProvider,
    StaticTokenProvider,
    TokenProvider,
    auth_headers,
)
from async_poller.clock import SystemClock
from async_poller.errors import AuthError
from async_poller.redact import redact
from async_poller.testing import VirtualClock


class CountingProvider(TokenProvider):
    """Hands out token-1, token-2, ... and counts fetches; each fetch takes 1 s."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(clock)
        self.fetches = 0

    async def _fetch(self) -> str:
        self.fetches += 1
        await self._clock.sleep(1.0)
        return f"token-{self.fetches}"


def jwt(exp: float, **claims: float) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'exp': exp, **claims})}.c2ln"


def test_headers_carry_the_raw_token() -> None:
    """Two headers, and the token without a Bearer prefix (docs/api-contract.md)."""
    assert auth_headers("abc") == {"X-Authtype": "lucidity_access_token", "Authorization": "abc"}


async def test_many_waiters_share_one_fetch() -> None:
    """Fifty concurrent callers cause one fetch and all get the same token."""
    provider = CountingProvider(VirtualClock())
    tokens = await asyncio.gather(*(provider.token() for _ in range(50)))
    assert set(tokens) == {"token-1"}
    assert provider.fetches == 1


async def test_token_is_refreshed_before_it_expires() -> None:
    """A token is reused until a minute before its 15-minute expiry, then replaced."""
    clock = VirtualClock()
    provider = CountingProvider(clock)
    assert await provider.token() == "token-1"
    await clock.sleep(ACCESS_TOKEN_TTL - 120)
    assert await provider.token() == "token-1"
    await clock.sleep(90)
    assert await provider.token() == "token-2"


async def test_renew_after_401_is_single_flight() -> None:
    """Many jobs hit by a 401 on the same token cause one renewal."""
    provider = CountingProvider(VirtualClock())
    stale = await provider.token()
    renewed = await asyncio.gather(*(provider.renew(stale) for _ in range(20)))
    assert set(renewed) == {"token-2"}
    assert provider.fetches == 2
    assert await provider.renew(stale) == "token-2", (
        "a late 401 on the old token reuses the new one"
    )


@pytest.mark.parametrize("token", [jwt(exp=1_000_000.0 + 300), "static-token-value"])
async def test_a_ready_access_token_is_sent_until_the_server_rejects_it(token: str) -> None:
    """A ready access token (LUCIDITY_ACCESS_TOKEN) is used past its expected expiry, JWT
    or not: only a 401 ends the run, and the error then says so."""
    clock = VirtualClock(wall_start=1_000_000.0)
    provider = StaticTokenProvider(token, clock)
    assert token == await provider.token()
    await clock.sleep(3600)
    assert token == await provider.token()
    with pytest.raises(AuthError, match="rejected \\(HTTP 401\\)"):
        await provider.renew(token)


async def test_static_token_cannot_be_renewed() -> None:
    """A ready access token rejected with 401 ends the run with a hint."""
    provider = StaticTokenProvider("static-token-value", VirtualClock())
    token = await provider.token()
    with pytest.raises(AuthError, match="HINT"):
        await provider.renew(token)


async def test_token_command_prints_the_token() -> None:
    """--token-command's stdout (one line) is the token, and it is remembered as a secret."""
    command = f"{sys.executable} -c \"print('cmd-token-12345')\""
    provider = CommandTokenProvider(command, SystemClock())
    assert await provider.token() == "cmd-token-12345"
    assert redact("sent cmd-token-12345") == "sent ***"


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("import sys; sys.exit(3)", "exited with status 3"),
        ("print('a'); print('b')", "exactly one token"),
        ("print('two words')", "exactly one token"),
        ("pass", "exactly one token"),
    ],
)
async def test_token_command_failures_are_clear(script: str, message: str) -> None:
    """A failing or chatty token command gives a clear AuthError."""
    provider = CommandTokenProvider(f'{sys.executable} -c "{script}"', SystemClock())
    with pytest.raises(AuthError, match=message):
        await provider.token()


async def test_missing_token_command() -> None:
    """A command that does not exist is reported by name."""
    provider = CommandTokenProvider("/nonexistent/helper --flag", SystemClock())
    with pytest.raises(AuthError, match="cannot run '/nonexistent/helper'"):
        await provider.token()


async def test_a_renewable_token_is_refreshed_on_a_timer_without_callers() -> None:
    """A minute before expiry the provider fetches a new token even if nobody asks."""
    clock = VirtualClock()
    provider = CountingProvider(clock)
    assert await provider.token() == "token-1"
    await clock.sleep(ACCESS_TOKEN_TTL)
    assert provider.fetches == 2
    assert provider.newest("none") == "token-2"
    await provider.aclose()


async def test_short_lived_tokens_are_refreshed_halfway_not_in_a_storm() -> None:
    """A token living 30 s (a JWT exp) is refreshed after 15 s, not continuously."""
    clock = VirtualClock(wall_start=1_000_000.0)

    class ShortLived(CountingProvider):
        async def _fetch(self) -> str:
            self.fetches += 1
            return jwt(exp=self._clock.wall() + 30)

    provider = ShortLived(clock)
    await provider.token()
    await clock.sleep(100)
    assert 6 <= provider.fetches <= 8
    await provider.aclose()


class FixedJwtProvider(CountingProvider):
    """Hands out JWTs whose claims are computed from the issuer's wall clock."""

    def __init__(self, clock: VirtualClock, **offsets: float) -> None:
        super().__init__(clock)
        self.offsets = offsets

    async def _fetch(self) -> str:
        self.fetches += 1
        claims = {name: self._clock.wall() + offset for name, offset in self.offsets.items()}
        return jwt(**claims)


async def test_an_already_expired_jwt_does_not_cause_a_refresh_storm() -> None:
    """A token whose exp is past by our clock is refreshed every ~15 minutes, not
    continuously, and a clock-skew warning is logged once."""
    clock = VirtualClock(wall_start=1_000_000.0)
    provider = FixedJwtProvider(clock, exp=-3600)
    with capture_logs() as logs:
        await provider.token()
        await clock.sleep(3600)
    await provider.aclose()
    assert provider.fetches <= 6
    assert 1 == sum(entry["event"] == "clock_skew" for entry in logs)


async def test_a_clock_ahead_of_the_issuer_uses_the_stated_lifetime() -> None:
    """Our clock two hours ahead of the issuer's: the token's own lifetime (exp - iat = 15 min)
    paces the refreshes."""
    clock = VirtualClock(wall_start=1_000_000.0)
    provider = FixedJwtProvider(clock, iat=-7200, exp=-7200 + 900)
    with capture_logs() as logs:
        await provider.token()
        await clock.sleep(3600)
    await provider.aclose()
    assert 4 <= provider.fetches <= 6
    assert [entry["event"] for entry in logs] == ["clock_skew"]


async def test_a_caller_arriving_between_two_fetches_gets_the_new_token() -> None:
    """A caller who starts a new fetch after the old one finished, before the old one's
    waiters were woken, waits for its own fetch (no InvalidStateError)."""
    gate, fetched = asyncio.Event(), asyncio.Event()

    class Gated(TokenProvider):
        fetches = 0

        async def _fetch(self) -> str:
            await gate.wait()
            await asyncio.sleep(0)
            Gated.fetches += 1
            fetched.set()  # wakes the latecomer before this fetch's done-callbacks run
            return f"gated-token-{Gated.fetches}"

    provider = Gated(VirtualClock())

    async def latecomer() -> str:
        await fetched.wait()
        provider._refresh_at = float("-inf")  # as if the first token had expired already
        return await provider.token()

    first = asyncio.create_task(provider.token())
    late = asyncio.create_task(latecomer())
    await asyncio.sleep(0)
    gate.set()
    assert ("gated-token-1", "gated-token-2") == (await first, await late)


@pytest.mark.parametrize("token", ["abc\r\nX-Injected: 1", "tab\there", "non-ascii-tökén"])
async def test_a_token_that_cannot_go_in_a_header_is_an_auth_error(token: str) -> None:
    """Control characters, spaces or non-ASCII in a token end the run as an authentication
    failure with one clear message (not a ValueError per request)."""
    provider = StaticTokenProvider(token, VirtualClock())
    with pytest.raises(AuthError, match="LUCIDITY_ACCESS_TOKEN gave an access token with"):
        await provider.token()


async def test_the_token_command_does_not_inherit_lucidity_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LUCIDITY_REFRESH_TOKEN and LUCIDITY_ACCESS_TOKEN are not passed on to the command;
    other variables are."""
    monkeypatch.setenv("LUCIDITY_REFRESH_TOKEN", "inherited-refresh")
    monkeypatch.setenv("LUCIDITY_ACCESS_TOKEN", "inherited-access")
    monkeypatch.setenv("HELPER_SETTING", "kept")
    script = (
        "import os; e = os.environ; "
        "print(e.get('LUCIDITY_REFRESH_TOKEN', '-') + e.get('LUCIDITY_ACCESS_TOKEN', '-')"
        " + e['HELPER_SETTING'])"
    )
    provider = CommandTokenProvider(f'{sys.executable} -c "{script}"', SystemClock())
    assert "--kept" == await provider.token()
