"""Ground truth over HTTP (`/_sim/...`): no auth, no rate limit, not in the request log."""

from __future__ import annotations

import dataclasses
from typing import Final

import orjson
from aiohttp import web

from .app import LucidityApi
from .jobs import JobTruth

__all__ = ["MAX_JOBS_PER_CALL", "add_ground_truth_routes", "truth_json"]

MAX_JOBS_PER_CALL: Final = 100_000


def add_ground_truth_routes(api: LucidityApi) -> None:
    """Serve `GET /_sim/truth`, `GET /_sim/stats` and `POST /_sim/jobs` on the API's app."""

    async def truth(request: web.Request) -> web.Response:
        return _json([truth_json(job) for job in api.jobs])

    async def stats(request: web.Request) -> web.Response:
        window = api.config.rate_window
        return _json(
            {
                "requests": [dataclasses.asdict(r) for r in api.log.records],
                "counts": api.log.counts_by_status(),
                "faults": api.log.counts_by_fault(),
                "refused": api.log.refusals(),
                "max_in_window": api.log.max_in_window(window),
                "max_in_window_admitted": api.log.max_in_window(window, admitted_only=True),
                "rate_limit": api.config.rate_limit,
                "rate_window": window,
                "limiter": api.config.limiter,
            }
        )

    async def create_jobs(request: web.Request) -> web.Response:
        try:
            count = orjson.loads(await request.read())["count"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            count = None
        if type(count) is not int or not 1 <= count <= MAX_JOBS_PER_CALL:
            message = f'send {{"count": N}} with N from 1 to {MAX_JOBS_PER_CALL}'
            return _json({"error": message}, status=400)
        # A bare array of ids: saved to a file, it is valid input for `async-poller poll`.
        return _json([api.jobs.create(api.clock.now()).id for _ in range(count)])

    api.app.router.add_get("/_sim/truth", truth)
    api.app.router.add_get("/_sim/stats", stats)
    api.app.router.add_post("/_sim/jobs", create_jobs)


def truth_json(job: JobTruth) -> dict[str, object]:
    """A job's truth as JSON: the `JobTruth` fields, plus `final_status` and `final_at`."""
    return {
        **dataclasses.asdict(job),
        "timeline": [{"status": status, "at": at} for status, at in job.timeline],
        "final_status": job.final_status,
        "final_at": job.final_at,
    }


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
