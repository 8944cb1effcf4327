"""Acting out faults: how each kind of `FaultPlan` spoils a faithful `Reply`.

To add a kind: name it in `faultplan.py`, then give it a case in `FaultInjector.prepare`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import orjson
from aiohttp import web

from ..clock import Clock
from .bodies import Reply, error_reply, job_data, success_reply
from .faultplan import FaultPlan
from .jobs import JobBook
from .settings import Envelope

__all__ = ["FaultInjector", "Injection", "retry_after_value"]

Deliver = Callable[[web.Request], Awaitable[web.StreamResponse]]

_WEEKDAYS: Final = {
    "Mon": "Monday",
    "Tue": "Tuesday",
    "Wed": "Wednesday",
    "Thu": "Thursday",
    "Fri": "Friday",
    "Sat": "Saturday",
    "Sun": "Sunday",
}
_BAD_GATEWAY_PAGE: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)
_OVERSIZE: Final = 1024 * 1024
_SLOW_PIECES: Final = 8
_ODD_STATUS: Final = "REBOOTING"


@dataclass(frozen=True, slots=True)
class Injection:
    """A fault about to be acted out, and what the request log should say about it."""

    kind: str
    http_status: int | None
    """The status line sent, or None when none is (a hang or an early reset)."""
    retry_after: float | None
    deliver: Deliver


class FaultInjector:
    """Turns a fault kind and the faithful reply into the response actually sent.

    Stalls (`hang`, `slow_body`) end early when `closing` is set, so the server stops promptly.
    """

    def __init__(
        self,
        plan: FaultPlan,
        clock: Clock,
        jobs: JobBook,
        envelope: Envelope,
        closing: asyncio.Event,
    ) -> None:
        self._plan = plan
        self._clock = clock
        self._jobs = jobs
        self._envelope = envelope
        self._closing = closing
        self._went_backwards: set[int] = set()

    def prepare(self, kind: str, reply: Reply) -> Injection | None:
        """How `kind` spoils `reply`; None when it cannot apply (a data fault on an error)."""
        match kind:
            case "http_500":
                return self._answer(kind, error_reply(self._envelope, 500, "Internal server error"))
            case "token_500":
                return self._answer(kind, error_reply("B", 500, "Internal server error"))
            case "http_502" | "http_503" | "http_504":
                return self._answer(kind, Reply(int(kind[5:]), None))
            case _ if "_retry_after_" in kind:
                return self._throttle(kind)
            case "hang" | "token_hang":
                return Injection(kind, None, None, self._hang)
            case "reset_before":
                return Injection(kind, None, None, self._reset_before)
            case "reset_mid_body":
                return Injection(kind, reply.status, None, lambda r: self._reset_mid(r, reply))
            case "slow_body":
                return Injection(kind, reply.status, None, lambda r: self._slow(r, reply))
            case "truncated_json":
                body = reply.encode()
                return self._answer(kind, reply, body=body[: len(body) // 2])
            case "html_error":
                html = {"Content-Type": "text/html"}
                return self._answer(kind, Reply(502, None, html), body=_BAD_GATEWAY_PAGE)
            case "oversized_body":
                body = orjson.dumps({"trace": "x" * _OVERSIZE, **_as_object(reply.body)})
                return self._answer(kind, reply, body=body)
        return self._rewrite(kind, reply)

    def _rewrite(self, kind: str, reply: Reply) -> Injection | None:
        """Data faults: a 200 answer that misreports the job."""
        job_id = reply.data.get("id") if reply.data else None
        job = self._jobs.get(job_id) if isinstance(job_id, int) else None
        if reply.data is None or job is None:
            return None
        match kind:
            case "wrong_id":
                other = next((j for j in self._jobs if j.id != job.id), None)
                data = job_data(other, self._clock) if other else {**reply.data, "id": job.id + 1}
            case "unknown_status":
                data = {**reply.data, "status": _ODD_STATUS}
            case "status_backwards":
                statuses = [status for status, _ in job.timeline]
                current = statuses.index(job.status_at(self._clock.now()))
                if current == 0 or job.id in self._went_backwards:
                    return None
                self._went_backwards.add(job.id)
                data = {**reply.data, "status": statuses[current - 1]}
            case _:
                raise AssertionError(f"fault kind {kind!r} has no case in FaultInjector.prepare")
        return self._answer(kind, success_reply(self._envelope, data))

    def _throttle(self, kind: str) -> Injection:
        status = 429 if kind.startswith("http_429") else 503
        form = kind.split("_retry_after_", 1)[1]
        seconds = self._plan.retry_after_s
        headers = {"Retry-After": retry_after_value(form, seconds, self._clock.wall())}
        if status == 429:
            reply = error_reply(self._envelope, 429, "Too many requests", headers)
        else:
            reply = Reply(503, None, headers)
        return self._answer(kind, reply, retry_after=None if form == "invalid" else seconds)

    def _answer(
        self,
        kind: str,
        reply: Reply,
        *,
        body: bytes | None = None,
        retry_after: float | None = None,
    ) -> Injection:
        """An injection that sends an ordinary response: `body`, or the reply's own."""

        async def deliver(request: web.Request) -> web.StreamResponse:
            return reply.response(body)

        return Injection(kind, reply.status, retry_after, deliver)

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        await self._stall(self._plan.hang_s)
        _abort(request)
        return web.Response()  # never sent: the connection is gone

    async def _reset_before(self, request: web.Request) -> web.StreamResponse:
        _abort(request)
        return web.Response()

    async def _reset_mid(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        body = reply.encode()
        response = _stream(reply, len(body))
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        _abort(request)
        return response

    async def _slow(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        body = reply.encode()
        response = _stream(reply, len(body))
        await response.prepare(request)
        piece = math.ceil(len(body) / _SLOW_PIECES)
        for start in range(0, len(body), piece):
            if start:
                await self._stall(self._plan.slow_body_s / _SLOW_PIECES)
            await response.write(body[start : start + piece])
        await response.write_eof()
        return response

    async def _stall(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with self._clock.timeout(seconds):
                await self._closing.wait()


def retry_after_value(form: str, seconds: float, wall: float) -> str:
    """A `Retry-After` header value `seconds` from `wall`, written in the given form."""
    if form == "seconds":
        return str(math.ceil(seconds))
    if form == "invalid":
        return "soon"
    # Dates have whole seconds: round up, so the announced moment is never too early.
    when = math.ceil(wall + seconds)
    # The IMF-fixdate is locale-independent; the two obsolete forms reuse its English names.
    imf = email.utils.formatdate(when, usegmt=True)
    if form == "http_date":
        return imf
    weekday, day, month, year, hms, _ = imf.replace(",", "").split()
    if form == "rfc850_date":
        return f"{_WEEKDAYS[weekday]}, {day}-{month}-{year[2:]} {hms} GMT"
    return f"{weekday} {month} {int(day):2d} {hms} {year}"


def _stream(reply: Reply, length: int) -> web.StreamResponse:
    response = web.StreamResponse(status=reply.status, headers=dict(reply.headers))
    response.content_type = "application/json"
    response.content_length = length
    return response


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


def _as_object(body: object) -> dict[str, object]:
    return body if isinstance(body, dict) else {"data": body}
