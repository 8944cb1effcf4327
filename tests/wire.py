"""A fake wire beneath the real client stack, in virtual time.

`wire_connect(answer)` is a `Connect` for `stream_events`: the real `client.connect`, so the
real `Transport` (budget slots, timeouts, 429/503 pauses), token provider (refresh, renewal
after a 401) and `StatusClient` (the 401 replay), over `FakeSession`, which stands in for the
aiohttp session. Every request that reaches the wire is handed to `answer` as a `Request`;
what it returns goes back through the transport's own reading of status, headers and body.
To fail like the network, `answer` raises what aiohttp raises (`ServerDisconnectedError`,
say) or sleeps past the request timeout, which the transport measures on the clock.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from async_poller._engine.run import Connect
from async_poller._lucidity import client
from async_poller._lucidity.transport import RawResponse

__all__ = ["Answerer", "FakeSession", "Request", "job_body", "token_body", "wire_connect"]


@dataclass(frozen=True)
class Request:
    """One request as it reached the wire."""

    method: str
    path: str
    headers: Mapping[str, str]
    params: Mapping[str, str] | None
    json: Any

    @property
    def job_id(self) -> int | None:
        """The job a status request asks about (None for a token refresh)."""
        return int(self.params["id"]) if self.params and "id" in self.params else None

    @property
    def token(self) -> str | None:
        return self.headers.get("Authorization")


Answerer = Callable[[Request], Awaitable[RawResponse]]


def job_body(job_id: int, status: str, reason: str | None = None) -> bytes:
    """A status answer's body (envelope A of docs/api-contract.md)."""
    data: dict[str, object] = {"id": job_id, "status": status}
    if reason is not None:
        data["failureReason"] = reason
    return orjson.dumps({"data": data})


def token_body(token: str) -> bytes:
    """The token-refresh endpoint's answer."""
    return orjson.dumps({"accessToken": token})


class FakeSession:
    """As much of `aiohttp.ClientSession` as `Transport` uses, answered by `answer`."""

    def __init__(self, answer: Answerer) -> None:
        self._answer = answer

    async def __aenter__(self) -> FakeSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        json: Any,
        allow_redirects: bool,
    ) -> AbstractAsyncContextManager[_Response]:
        assert not allow_redirects, "the transport never follows a redirect"
        request = Request(method, urlsplit(url).path, dict(headers), params, json)
        return self._exchange(request)

    @asynccontextmanager
    async def _exchange(self, request: Request) -> AsyncIterator[_Response]:
        yield _Response(await self._answer(request))


class _Response:
    """An answer as aiohttp hands it over: status, case-insensitive headers, a body stream."""

    def __init__(self, raw: RawResponse) -> None:
        self.status = raw.status
        self.headers = CIMultiDictProxy(CIMultiDict(raw.headers))
        self.content = _Body(raw.body)


class _Body:
    def __init__(self, body: bytes) -> None:
        self._left = body

    async def read(self, n: int = -1) -> bytes:
        size = len(self._left) if n < 0 else n
        chunk, self._left = self._left[:size], self._left[size:]
        return chunk

    def at_eof(self) -> bool:
        return not self._left


def wire_connect(answer: Answerer) -> Connect:
    """The real `client.connect`, with `answer` on the far side of the wire."""

    def new_session(concurrency: int, ca_bundle: str | None) -> aiohttp.ClientSession:
        return cast(aiohttp.ClientSession, FakeSession(answer))

    return functools.partial(client.connect, new_session=new_session)
