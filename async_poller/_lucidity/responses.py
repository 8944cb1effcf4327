"""Deciding what an answer of the status endpoint means: a pure function, no I/O.

`classify(job_id, http_status, headers, body, now)` returns one `Answer`:

    JobState      the API told the job's status (final or not: see outcome.TERMINAL)
    NotFound      404: the id is unknown (for now)
    Overloaded    429, or 503 with Retry-After: everyone waits, the job is not at fault
    RetryLater    a transient failure or a malformed answer: try again later
    Rejected      the API refuses this id for good (400 and other 4xx)
    Unauthorized  401: renew the token and replay once
    Forbidden     403: the credentials lack permission (fatal for the run)
    Redirected    3xx: never followed (fatal for the run)

Read tolerantly (docs/api-contract.md, Response bodies): envelopes A, B and C, several names
for the status field, and error bodies that may be JSON, HTML or empty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, Final

import orjson

from ..outcome import LIFECYCLE
from ..redact import redact

__all__ = [
    "Answer",
    "Forbidden",
    "JobState",
    "NotFound",
    "Overloaded",
    "Redirected",
    "Rejected",
    "RetryLater",
    "Unauthorized",
    "classify",
    "describe_error",
    "parse_retry_after",
]

_STATUS_KEYS: Final = ("status", "state", "jobStatus", "installStatus")
_DETAIL_KEYS: Final = ("instances", "instanceDetails", "details")
_RETRY_STATUSES: Final = frozenset({408, 500, 502, 503, 504})
_MESSAGE_LIMIT: Final = 200


@dataclass(frozen=True, slots=True)
class JobState:
    status: str
    reason: str | None = None
    details: Any = None


@dataclass(frozen=True, slots=True)
class NotFound:
    message: str


@dataclass(frozen=True, slots=True)
class Overloaded:
    retry_after: float | None
    http_status: int


@dataclass(frozen=True, slots=True)
class RetryLater:
    kind: str  # timeout, connection, http, bad_response
    http_status: int | None
    message: str


@dataclass(frozen=True, slots=True)
class Rejected:
    http_status: int
    message: str


@dataclass(frozen=True, slots=True)
class Unauthorized:
    message: str


@dataclass(frozen=True, slots=True)
class Forbidden:
    message: str


@dataclass(frozen=True, slots=True)
class Redirected:
    http_status: int
    location: str | None


Answer = (
    JobState | NotFound | Overloaded | RetryLater | Rejected | Unauthorized | Forbidden | Redirected
)


def classify(
    job_id: int, http_status: int, headers: Mapping[str, str], body: bytes, now: float
) -> Answer:
    """What the answer `(http_status, headers, body)` to a poll of `job_id` means.

    `now` is the wall-clock time in epoch seconds, for Retry-After given as an HTTP date.
    """
    if http_status == 200:
        return _read_job_state(job_id, body)
    if http_status in (429, 503):
        retry_after = parse_retry_after(headers.get("Retry-After"), now)
        if http_status == 429 or retry_after is not None:
            return Overloaded(retry_after, http_status)
    if 300 <= http_status < 400:
        return Redirected(http_status, headers.get("Location"))
    error = describe_error(http_status, headers, body)
    if http_status in _RETRY_STATUSES or http_status >= 500:
        return RetryLater("http", http_status, error)
    if http_status == 401:
        return Unauthorized(error)
    if http_status == 403:
        return Forbidden(error)
    if http_status == 404:
        return NotFound(error)
    if 400 <= http_status < 500:
        return Rejected(http_status, error)
    return RetryLater("bad_response", http_status, f"unexpected HTTP {http_status}")


def _read_job_state(job_id: int, body: bytes) -> Answer:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return RetryLater("bad_response", 200, f"body is not JSON: {_preview(body)}")
    data = _job_object(document)
    if data is None:
        return RetryLater("bad_response", 200, "no job status in the answer")
    answered_id = data.get("id", data.get("jobId"))
    if answered_id is not None and str(answered_id).strip() != str(job_id):
        return RetryLater("bad_response", 200, f"answer is for job {_clip(str(answered_id))}")
    raw = _status_value(data, document)
    if raw is None:
        return RetryLater("bad_response", 200, "no job status in the answer")
    status = _status_word(raw)
    if status not in LIFECYCLE:
        return RetryLater("bad_response", 200, f"unrecognised status {_clip(raw)!r}")
    reason = data.get("failureReason") or data.get("message")
    details = next((data[key] for key in _DETAIL_KEYS if data.get(key)), None)
    # `details` reach events only through a result, and the ledger redacts them there.
    return JobState(status, _clip(reason) if isinstance(reason, str) else None, details)


def _job_object(document: Any) -> dict[str, Any] | None:
    """The object that describes the job: `data`, `data[0]`, or the document itself."""
    if not isinstance(document, dict):
        return None
    data = document.get("data")
    if isinstance(data, list):
        data = data[0] if data else None
    if isinstance(data, dict):
        return data
    return document if data is None else None


def _status_value(data: dict[str, Any], document: dict[str, Any]) -> str | None:
    for key in _STATUS_KEYS:
        value = data.get(key)
        if isinstance(value, str):
            return value
    # A top-level `status` may be an HTTP code (envelope B): only a lifecycle word counts.
    top = document.get("status")
    if isinstance(top, str) and _status_word(top) in LIFECYCLE:
        return top
    return None


def _status_word(raw: str) -> str:
    """A status as the API's word, compared case-insensitively after trimming ASCII spaces.

    ASCII only: "fa\u0131led" (a dotless i) upper-cases to "FAILED", and `str.strip` eats
    a no-break space, so a look-alike would otherwise pass for a real status.
    """
    return raw.strip(" \t\r\n").upper() if raw.isascii() else raw


def describe_error(http_status: int, headers: Mapping[str, str], body: bytes) -> str:
    """A one-line account of an error answer: status, code, message and request id if any."""
    parts = [f"HTTP {http_status}"]
    try:
        document = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        document = None
        kind = headers.get("Content-Type", "").split(";")[0].strip() or "unknown"
        parts.append(f"({kind} body)")
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict):
            document = {**document, **error}
        for key in ("code", "message"):
            value = document.get(key)
            if isinstance(value, str) and value:
                parts.append(_clip(value))
        tracking = document.get("requestId") or document.get("trackingCode")
        if isinstance(tracking, str) and tracking:
            parts.append(f"(request {_clip(tracking)})")
    return " ".join(parts)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date (any of the
    three RFC 9110 forms). None when absent or unreadable; a date in the past gives 0."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # asctime dates carry no zone; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _clip(text: str) -> str:
    """The server's `text` on one line, tokens masked (before cutting, so no piece is left)."""
    text = " ".join(redact(text).split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def _preview(body: bytes) -> str:
    text = redact(body[: _MESSAGE_LIMIT * 8].decode("utf-8", "backslashreplace"))
    return repr(text[:40])[1:-1] + ("…" if len(text) > 40 else "")
