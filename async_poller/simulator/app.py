"""The Lucidity endpoints of docs/api-contract.md, behind the rate limit and the request log.

Every API request goes through `LucidityApi._endpoint`: logged on arrival, rate limited,
answered faithfully, and only then, if the fault plan says so, spoiled by `FaultInjector`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Final

import orjson
from aiohttp import web

from ..clock import Clock
from ..outcome import ACTIVE
from .bodies import JobData, Reply, error_reply, job_data, refusal_reply, success_reply
from .faultplan import FaultPicker, Target
from .faults import FaultInjector
from .jobs import JobBook
from .ratelimit import limiter_for
from .records import RequestLog
from .settings import Envelope, SimulatorConfig
from .tokens import TokenStore
from .validation import parse_install, parse_job_id

__all__ = ["INSTALL_PATH", "REFRESH_PATH", "STATUS_PATH", "LucidityApi"]

REFRESH_PATH: Final = "/external/api/v1/auth/user-token/refresh"
STATUS_PATH: Final = "/external/client/api/v1/agent/install/status"
INSTALL_PATH: Final = "/external/client/api/v1/agent/install"
_AUTH_TYPE: Final = "lucidity_access_token"

Answer = Callable[[web.Request], Awaitable[Reply]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LucidityApi:
    """The simulated API's state (jobs, tokens, rate limit, request log) and its handlers."""

    def __init__(self, config: SimulatorConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.jobs = JobBook(config)
        self.tokens = TokenStore(config.refresh_token, config.token_ttl)
        self.log = RequestLog()
        self.origin = clock.now()
        """When the simulator started: scripted fault windows count from here."""
        self.closing = asyncio.Event()
        """Set while the server stops, so that stalled responses give up at once."""
        self._limiter = limiter_for(config.limiter, config.rate_limit, config.rate_window)
        self._faults = FaultPicker(config.faults, config.seed)
        self._injector = FaultInjector(
            config.faults, clock, self.jobs, config.envelope, self.closing
        )
        self._unknown = random.Random(f"{config.seed}/unknown")
        self.app = web.Application()
        self.app.router.add_post(REFRESH_PATH, self._endpoint("refresh", self._refresh))
        self.app.router.add_get(STATUS_PATH, self._endpoint("status", self._status))
        self.app.router.add_post(INSTALL_PATH, self._endpoint(None, self._install))

    def _endpoint(self, target: Target | None, answer: Answer) -> Handler:
        """Wrap `answer` in what every API request goes through."""

        async def handle(request: web.Request) -> web.StreamResponse:
            now = self.clock.now()
            job_id = parse_job_id(request.query.getall("id", []))
            index = self.log.arrive(now, request.method, request.path, job_id)
            wait = self._limiter.admit(now)
            if wait is not None:
                return self._refuse(index, wait)
            reply = await answer(request)
            kind = self._faults.pick(target, now - self.origin) if target else None
            injection = self._injector.prepare(kind, reply) if kind else None
            if injection is None:
                self.log.answer(index, reply.status)
                return reply.response()
            self.log.answer(
                index, injection.http_status, retry_after=injection.retry_after, fault=kind
            )
            return await injection.deliver(request)

        return handle

    def _refuse(self, index: int, wait: int) -> web.Response:
        """The limiter's answer to the request at `index`, `wait` seconds before a free slot."""
        config = self.config
        retry_after = wait if config.retry_after else None
        self.log.answer(index, config.throttle_status, retry_after=retry_after, refused=True)
        return refusal_reply(config.envelope, config.throttle_status, retry_after).response()

    async def _refresh(self, request: web.Request) -> Reply:
        body = _json(await request.read())
        refresh_token = body.get("refreshToken") if isinstance(body, dict) else None
        if not refresh_token:
            return error_reply("B", 400, "refreshToken is required")
        token = self.tokens.exchange(refresh_token, self.clock.now())
        if token is None:
            return error_reply("B", 400, "Invalid or expired refresh token")
        return Reply(200, {"accessToken": token})

    async def _status(self, request: web.Request) -> Reply:
        envelope = self.config.envelope
        if (denied := self._authorize(request, envelope)) is not None:
            return denied
        job_id = parse_job_id(request.query.getall("id", []))
        if job_id is None:
            return error_reply(envelope, 400, "id must be one positive 64-bit integer")
        job = self.jobs.get(job_id)
        if job is None:
            return error_reply(envelope, 404, f"No agent install job with id {job_id}")
        data = job_data(job, self.clock)
        # Draw for every live job, so the blips depend only on the sequence of such requests.
        if data["status"] in ACTIVE and self._unknown.random() < self.config.unknown_rate:
            data["status"] = "UNKNOWN"
        return success_reply(envelope, data)

    async def _install(self, request: web.Request) -> Reply:
        # docs/api-contract.md shows the install response in envelope A only, so it never varies.
        if (denied := self._authorize(request, "A")) is not None:
            return denied
        try:
            wanted = parse_install(_json(await request.read()))
        except ValueError as error:
            return error_reply("A", 400, str(error))
        created: list[JobData] = []
        for provider, instance_ids in wanted:
            job = self.jobs.create(
                self.clock.now(), cloud_provider=provider, instance_ids=instance_ids
            )
            created.append(
                {
                    "id": job.id,
                    "cloudProvider": provider,
                    "instanceIds": instance_ids,
                    "status": "QUEUED",
                }
            )
        return success_reply("A", created)

    def _authorize(self, request: web.Request, envelope: Envelope) -> Reply | None:
        """None when the request carries a live access token, else the 401 to send."""
        auth_type = request.headers.get("X-Authtype")
        token = request.headers.get("Authorization")
        if auth_type != _AUTH_TYPE or not token:
            message = (
                f"Authentication required: send X-Authtype: {_AUTH_TYPE} "
                "and Authorization: <access token>"
            )
        elif not self.tokens.is_valid(token, self.clock.now()):
            message = "Access token is invalid or expired"
        else:
            return None
        return error_reply(envelope, 401, message)

    def __repr__(self) -> str:
        return f"LucidityApi(jobs={len(self.jobs)}, requests={len(self.log.records)})"


def _json(raw: bytes) -> object:
    """The parsed body, or None when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
