"""A hostile Lucidity API for the hardening tests: every answer is the test's to choose.

`HostileServer` serves the token-refresh and status endpoints on an ephemeral loopback
port. The test gives a `StatusHandler` that turns (job id, access token sent, poll number of
that job) into an aiohttp response, and may choose the access token the refresh hands out.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from types import TracebackType

from aiohttp import web

from async_poller._lucidity.auth import REFRESH_PATH
from async_poller._lucidity.client import STATUS_PATH

from .helpers import clean_env

__all__ = ["REFRESH_TOKEN", "HostileServer", "StatusHandler", "job_json"]

REFRESH_TOKEN = "hostile-refresh-token-0123456789"

StatusHandler = Callable[[int, str, int], Awaitable[web.StreamResponse] | web.StreamResponse]


def job_json(job_id: int, status: str, **extra: object) -> web.Response:
    """A well-formed status answer (envelope A)."""
    return web.json_response({"success": True, "data": {"id": job_id, "status": status, **extra}})


class HostileServer:
    """The API as an attacker (or a broken proxy) would play it; use `async with`."""

    def __init__(
        self,
        status: StatusHandler,
        *,
        access_token: str = "hostile-access-0123456789",
        hold_refresh: bool = False,
    ):
        self.status_handler = status
        self.access_token = access_token
        self.hold_refresh = hold_refresh
        """Keep every token refresh waiting until the server closes."""
        self._release = asyncio.Event()
        self.refreshing = asyncio.Event()
        """Set when the first token refresh arrives."""
        self.polls: Counter[int] = Counter()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def __aenter__(self) -> HostileServer:
        app = web.Application()
        app.router.add_post(REFRESH_PATH, self._refresh)
        app.router.add_get(STATUS_PATH, self._status)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._runner is not None
        self._release.set()
        await self._runner.cleanup()

    def env(self) -> dict[str, str]:
        """The environment of a `poll` against this server."""
        return clean_env(LUCIDITY_BASE_URL=self.base_url, LUCIDITY_REFRESH_TOKEN=REFRESH_TOKEN)

    async def _refresh(self, request: web.Request) -> web.StreamResponse:
        self.refreshing.set()
        if self.hold_refresh:
            await self._release.wait()
        return web.json_response({"accessToken": self.access_token})

    async def _status(self, request: web.Request) -> web.StreamResponse:
        job_id = int(request.query["id"])
        self.polls[job_id] += 1
        answer = self.status_handler(
            job_id, request.headers.get("Authorization", ""), self.polls[job_id]
        )
        if isinstance(answer, web.StreamResponse):
            return answer
        return await answer
