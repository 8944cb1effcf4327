"""`Simulator`: the simulated Lucidity API as a server you start, restart and inspect."""

from __future__ import annotations

import ssl
from types import TracebackType
from typing import Final, Self

from aiohttp import web

from ..clock import Clock, SystemClock
from .app import LucidityApi
from .ground import add_ground_truth_routes
from .jobs import JobTruth
from .records import RequestRecord
from .settings import SimulatorConfig

__all__ = ["DEFAULT_CONFIG", "Simulator"]

DEFAULT_CONFIG: Final = SimulatorConfig()

_SHUTDOWN_GRACE: Final = 1.0
"""Real seconds in-flight requests get to finish when the server stops."""


class Simulator:
    """The Lucidity API simulator (docs/api-contract.md): an aiohttp app plus its ground truth.

    Use it as `async with Simulator(config) as sim:` and point a client at `sim.base_url`
    with `sim.refresh_token`. All times are simulated seconds on `clock` (by default a
    `SystemClock` running `config.time_scale` times faster than real time).
    """

    def __init__(
        self,
        config: SimulatorConfig = DEFAULT_CONFIG,
        *,
        clock: Clock | None = None,
        tls: ssl.SSLContext | None = None,
    ):
        self.config = config
        self._tls = tls
        """Serve https with this server context (for TLS tests); plain http when None."""
        self.clock: Clock = clock if clock is not None else SystemClock(config.time_scale)
        self._api = LucidityApi(config, self.clock)
        add_ground_truth_routes(self._api)
        self.app: web.Application = self._api.app
        self.refresh_token: str = self._api.tokens.refresh_token
        self.requests: list[RequestRecord] = self._api.log.records
        """Every API request received, in arrival order (`/_sim` requests are not API requests)."""
        self.issued_tokens: set[str] = self._api.tokens.issued
        """Every access token ever issued."""
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._address: tuple[str, int] | None = None

    @property
    def base_url(self) -> str:
        """`http://HOST:PORT` (or `https://`) of the listener, once `start()` has run."""
        if self._base_url is None:
            raise RuntimeError("the simulator has no base URL yet\nHINT: await sim.start() first")
        return self._base_url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on `host:port` (port 0: an ephemeral port) and return the base URL."""
        if self._runner is not None:
            raise RuntimeError(f"the simulator is already listening on {self._base_url}")
        if self._address is None:
            self._api.origin = self.clock.now()
        runner = web.AppRunner(
            self.app, handler_cancellation=True, access_log=None, shutdown_timeout=_SHUTDOWN_GRACE
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, ssl_context=self._tls).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self._address = (bound_host, bound_port)
        url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        scheme = "http" if self._tls is None else "https"
        self._base_url = f"{scheme}://{url_host}:{bound_port}"
        return self._base_url

    async def stop(self) -> None:
        """Stop listening and drop every connection; state (jobs, tokens, log) is kept."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._api.closing.set()
        try:
            await runner.cleanup()
        finally:
            self._api.closing.clear()

    async def restart(self, downtime: float = 0.0) -> None:
        """Stop, stay down for `downtime` simulated seconds, and listen again on the same port.

        Like a real server restart: open connections are dropped, but jobs and tokens survive.
        """
        if self._address is None or self._runner is None:
            raise RuntimeError("only a running simulator can restart\nHINT: await sim.start()")
        host, port = self._address
        await self.stop()
        if downtime > 0:
            await self.clock.sleep(downtime)
        await self.start(host, port)

    def create_jobs(
        self,
        count: int,
        *,
        outcome: str | None = None,
        queued_s: float | None = None,
        preparing_s: float | None = None,
        processing_s: float | None = None,
        instances: int | None = None,
        cloud_provider: str | None = None,
    ) -> list[int]:
        """Create `count` jobs now, without HTTP; any argument given fixes that part of each."""
        return [
            self._api.jobs.create(
                self.clock.now(),
                outcome=outcome,
                queued_s=queued_s,
                preparing_s=preparing_s,
                processing_s=processing_s,
                instances=instances,
                cloud_provider=cloud_provider,
            ).id
            for _ in range(count)
        ]

    def issue_access_token(self) -> str:
        """A fresh access token, as a refresh would give, without an HTTP request."""
        return self._api.tokens.issue(self.clock.now())

    def truth(self) -> list[JobTruth]:
        """Every job's true timeline, in creation order."""
        return list(self._api.jobs)

    def max_in_window(self, window: float | None = None, *, admitted_only: bool = False) -> int:
        """The most API requests that arrived in any window (default: the rate window).

        Requests the rate limiter refused count too, unless `admitted_only`: a client's rate
        budget covers everything it sends.
        """
        return self._api.log.max_in_window(
            self.config.rate_window if window is None else window, admitted_only=admitted_only
        )

    def refusals(self) -> int:
        """How many API requests the rate limiter refused (injected faults are not refusals)."""
        return self._api.log.refusals()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        where = self._base_url if self._runner else "stopped"
        return f"Simulator({where}, jobs={len(self._api.jobs)}, requests={len(self.requests)})"
