"""Response bodies as Lucidity writes them: the three envelopes, error bodies and job data."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import orjson
from aiohttp import web

from ..clock import Clock, rfc3339
from .jobs import JobTruth
from .settings import Envelope

__all__ = [
    "ERROR_CODES",
    "JobData",
    "Reply",
    "error_reply",
    "job_data",
    "refusal_reply",
    "success_reply",
]

JobData = dict[str, object]

ERROR_CODES: Final = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
}

_LIMIT_REQ_PAGE: Final = (
    b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    b"<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
    b"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
"""What nginx sends when `limit_req` refuses a request (its default `limit_req_status`)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """The faithful answer to a request, before any fault is applied."""

    status: int
    body: object
    """Encoded as JSON, except bytes (sent as they are) and None (no body)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    data: JobData | None = None
    """The data object of a success answer, kept apart for the faults that rewrite it."""

    def encode(self) -> bytes:
        """The body as sent."""
        if isinstance(self.body, bytes):
            return self.body
        return b"" if self.body is None else orjson.dumps(self.body)

    def response(self, body: bytes | None = None) -> web.Response:
        """This reply as an aiohttp response, optionally with other body bytes."""
        headers = {"Content-Type": "application/json", **self.headers}
        payload = self.encode() if body is None else body
        return web.Response(status=self.status, body=payload, headers=headers)


def success_reply(envelope: Envelope, data: JobData | list[JobData]) -> Reply:
    """A 200 answer carrying `data` in the given envelope."""
    if envelope == "A":
        body: object = {"success": True, "data": data, "error": None, "requestId": _request_id()}
    elif envelope == "B":
        body = {"message": "OK", "status": 200, "data": data, "trackingCode": _tracking_code()}
    else:
        body = data
    return Reply(200, body, data=data if isinstance(data, dict) else None)


def error_reply(
    envelope: Envelope, status: int, message: str, headers: Mapping[str, str] | None = None
) -> Reply:
    """An error answer: envelope B when the API speaks B, otherwise envelope A's error form."""
    if envelope == "B":
        body: object = {
            "message": message,
            "status": status,
            "data": None,
            "trackingCode": _tracking_code(),
        }
    else:
        error = {"code": ERROR_CODES.get(status, "INTERNAL_ERROR"), "message": message}
        body = {"success": False, "data": None, "error": error, "requestId": _request_id()}
    return Reply(status, body, headers or {})


def refusal_reply(envelope: Envelope, status: int, retry_after: int | None) -> Reply:
    """A rate limiter's refusal: a 429 in the API's error form, or a 503 as nginx's page.

    `retry_after` (whole seconds) goes into a Retry-After header when given.
    """
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    if status == 503:
        return Reply(503, _LIMIT_REQ_PAGE, {"Content-Type": "text/html", **headers})
    when = "" if retry_after is None else f": retry in {retry_after}s"
    return error_reply(envelope, status, f"Rate limit exceeded{when}", headers)


def job_data(job: JobTruth, clock: Clock) -> JobData:
    """What the status endpoint says about `job` now; timestamps on the simulated wall clock."""
    now, wall = clock.now(), clock.wall()
    status, since = job.phase_at(now)
    data: JobData = {
        "id": job.id,
        "status": status,
        "cloudProvider": job.cloud_provider,
        "createdAt": rfc3339(wall - (now - job.created_at)),
        "updatedAt": rfc3339(wall - (now - since)),
    }
    if status in ("FAILED", "CANCELLED"):
        data["failureReason"] = job.failure_reason
    instances: list[dict[str, object]] = []
    for instance in job.instances:
        entry: dict[str, object] = {
            "instanceId": instance.instance_id,
            "status": instance.status_at(status),
        }
        if entry["status"] == "FAILED":
            entry["failureReason"] = instance.failure_reason
        instances.append(entry)
    data["instances"] = instances
    return data


def _request_id() -> str:
    return str(uuid.uuid4())


def _tracking_code() -> str:
    return uuid.uuid4().hex[:16]
