"""Sending one HTTP request within the shared limits, and nothing else.

Every request, token refreshes included, takes a slot from the shared `RateBudget` (which
holds the concurrency limit too), runs under a clock-measured timeout, never follows a
redirect, and reads at most `body_limit` bytes. Overload answers (429, 503) lower the budget's
rate and pause it here, so every caller benefits.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from .. import __version__
from .._pacing.budget import RateBudget
from ..clock import Clock
from ..config import Rate
from ..logs import get_logger
from ..redact import redact
from .responses import parse_retry_after

__all__ = ["BODY_LIMIT", "RawResponse", "Transport", "TransportError", "open_session"]

BODY_LIMIT: Final = 64 * 1024
DEFAULT_THROTTLE_PAUSE: Final = 5.0
"""How long everyone waits after a 429 without a usable Retry-After (a 503 without one only
lowers the rate)."""
EMFILE_HINT: Final = (
    "HINT: too many open files: raise the limit (ulimit -n, or LimitNOFILE= in a systemd "
    "unit) or lower --concurrency"
)
MAX_THROTTLE_PAUSE: Final = 600.0
"""A longer Retry-After is clamped to this (and reported) rather than stalling the run."""

_log = get_logger()


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


class TransportError(Exception):
    """A request got no usable HTTP answer; `kind` is timeout, connection or bad_response."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


ThrottleListener = Callable[[float, Rate], None]


class Transport:
    """Sends requests to one API origin under the shared budget and concurrency limit."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        budget: RateBudget,
        clock: Clock,
        timeout: float,
        on_throttle: ThrottleListener,
        body_limit: int = BODY_LIMIT,
    ) -> None:
        self._session = session
        self._base_url = base_url
        self._budget = budget
        self._clock = clock
        self._timeout = timeout
        self._on_throttle = on_throttle
        self._body_limit = body_limit
        # Bound once, and only if debug is on: a lazy logger rebinds on every call, and this
        # line would otherwise cost every request some microseconds for nothing.
        logger = _log.bind()
        self._request_log = logger if logger.is_enabled_for(logging.DEBUG) else None
        self._emfile_warned = False
        self.outcomes: Counter[str] = Counter()
        """Requests sent so far by outcome: ok, http_4xx, http_429, http_5xx, timeout, ..."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        priority: float,
        headers: Mapping[str, str] | Callable[[], Mapping[str, str]],
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> RawResponse:
        """Send one request; raise `TransportError` when no usable answer arrives.

        `headers` may be a function: it is called when the request goes out, so that a token
        read there is the newest, however long the request waited for its slot.
        """
        async with self._budget.slot(priority):
            # A 429 may have come in between the grant and this task running: it holds too.
            while (pause := self._budget.paused_for()) > 0:
                await self._clock.sleep(pause)
            if callable(headers):
                headers = headers()
            sent = self._clock.now()
            status: int | None = None
            failure: str | None = None
            try:
                response = await self._send(method, path, headers, params, json)
            except TransportError as error:
                failure = error.kind
                raise
            except asyncio.CancelledError:  # the run ended with this request under way
                failure = "cancelled"
                raise
            else:
                status = response.status
            finally:
                self.outcomes[failure or _outcome(status or 0)] += 1
                if self._request_log is not None:  # --log-level debug; never the token
                    self._request_log.debug(
                        "request",
                        method=method,
                        path=path,
                        job_id=(params or {}).get("id"),
                        status=status,
                        error=failure,
                        elapsed_ms=round((self._clock.now() - sent) * 1000),
                    )
        self._note_overload(response, sent)
        return response

    async def _send(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        json: Any,
    ) -> RawResponse:
        try:
            async with (
                self._clock.timeout(self._timeout),
                self._session.request(
                    method,
                    self._base_url + path,
                    headers=headers,
                    params=params,
                    json=json,
                    allow_redirects=False,
                ) as response,
            ):
                body = await self._read_body(response)
                return RawResponse(response.status, response.headers, body)
        except TimeoutError:
            raise TransportError("timeout", "no answer within the request timeout") from None
        except aiohttp.ClientSSLError as error:
            raise TransportError("tls", redact(f"TLS failure: {error}")) from None
        except aiohttp.ClientResponseError:
            # An answer that is not HTTP as aiohttp reads it: a 100 KB header, a garbled status
            # line. Not a broken connection but a bad answer, given up on like one. Its text
            # quotes the server's bytes (cut short, so a token in them could not be masked).
            raise TransportError(
                "bad_response", "malformed HTTP answer (unreadable status line or headers)"
            ) from None
        except (aiohttp.ClientError, OSError) as error:
            message = redact(f"{type(error).__name__}: {error}".rstrip(": "))
            if getattr(error, "errno", None) == errno.EMFILE:  # ClientOSError is an OSError
                message = f"{message}; {EMFILE_HINT}"
                if not self._emfile_warned:
                    self._emfile_warned = True
                    _log.warning("too_many_open_files", hint=EMFILE_HINT)
            raise TransportError("connection", message) from None

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        first = await response.content.read(self._body_limit + 1)
        if response.content.at_eof() and len(first) <= self._body_limit:
            return first  # the usual small body, read in one go
        chunks, size = [first], len(first)
        if size > self._body_limit:
            raise TransportError("bad_response", f"body over {self._body_limit} bytes")
        while chunk := await response.content.read(self._body_limit + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > self._body_limit:
                raise TransportError("bad_response", f"body over {self._body_limit} bytes")
        return b"".join(chunks)

    def _note_overload(self, response: RawResponse, sent_at: float) -> None:
        """A 429 or a 503 is the server's limiter speaking (nginx's `limit_req` answers 503
        by default): lower the rate in force, and pause everyone as long as it asks."""
        if response.status not in (429, 503):
            return
        pause = parse_retry_after(response.headers.get("Retry-After"), self._clock.wall())
        if pause is None:  # a 503 alone may be a failing backend: slow down, no pause
            pause = DEFAULT_THROTTLE_PAUSE if response.status == 429 else 0.0
        if pause > MAX_THROTTLE_PAUSE:
            _log.warning(
                "retry_after_clamped",
                message="the server asked for a longer pause than async-poller waits at once",
                retry_after_s=pause,
                used_s=MAX_THROTTLE_PAUSE,
            )
            pause = MAX_THROTTLE_PAUSE
        rate = self._budget.throttle(pause, sent_at=sent_at)
        self._on_throttle(pause, rate)


def _outcome(status: int) -> str:
    if status < 300:
        return "ok"
    return "http_429" if status == 429 else f"http_{status // 100}xx"


def open_session(concurrency: int, ca_bundle: str | None) -> aiohttp.ClientSession:
    """A client session with TLS verification on (plus `ca_bundle`, if given)."""
    context = ssl.create_default_context(cafile=ca_bundle)
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context)
    session = aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": f"async-poller/{__version__}"},
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    # aiohttp silently resends a GET once when a kept-alive connection drops; that would put
    # two requests on the wire for one budget slot. No public switch exists (aiohttp 3.14);
    # tests/test_transport.py fails if this attribute stops having its effect.
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session
