"""classify(): turning (HTTP status, headers, body) into what to do next, without a server."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from async_poller._lucidity.responses import (
    Answer,
    Forbidden,
    JobState,
    NotFound,
    Overloaded,
    Redirected,
    Rejected,
    RetryLater,
    Unauthorized,
    classify,
    describe_error,
    parse_retry_after,
)

JOB = 4711
NOW = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT


def answer(status: int, body: Any = b"", **headers: str) -> Answer:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return classify(JOB, status, headers, raw, NOW)


def envelope_a(data: Any) -> dict[str, Any]:
    return {"success": True, "data": data, "error": None, "requestId": "r-1"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (envelope_a({"id": JOB, "status": "PROCESSING"}), JobState("PROCESSING")),
        (envelope_a({"id": JOB, "state": "queued "}), JobState("QUEUED")),
        (envelope_a({"jobStatus": "Preparing"}), JobState("PREPARING")),
        (envelope_a({"installStatus": "COMPLETED"}), JobState("COMPLETED")),
        (envelope_a([{"id": JOB, "status": "FAILED"}]), JobState("FAILED")),
        ({"message": "ok", "status": 200, "data": {"status": "CANCELLED"}}, JobState("CANCELLED")),
        ({"id": str(JOB), "status": "UNKNOWN"}, JobState("UNKNOWN")),
        ({"status": "completed"}, JobState("COMPLETED")),
    ],
)
def test_status_is_found_in_every_known_envelope(body: Any, expected: JobState) -> None:
    """Envelopes A, B and C and every status field name are read, case-insensitively."""
    assert answer(200, body) == expected


def test_failure_reason_and_instances_pass_through() -> None:
    """failureReason and per-instance details are carried to the result."""
    instances = [{"instanceId": "i-1", "status": "FAILED", "failureReason": "no SSM"}]
    body = envelope_a(
        {"id": JOB, "status": "FAILED", "failureReason": "1 of 1 failed", "instances": instances}
    )
    assert answer(200, body) == JobState("FAILED", "1 of 1 failed", instances)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>oops</html>", "body is not JSON"),
        (b'{"success": true, "data": {"status": "PROC', "body is not JSON"),
        (envelope_a({"id": JOB}), "no job status"),
        (envelope_a({"id": JOB + 1, "status": "COMPLETED"}), "answer is for job 4712"),
        (envelope_a({"id": JOB, "status": "REBOOTING"}), "unrecognised status 'REBOOTING'"),
        ({"message": "x", "status": 200, "data": None}, "no job status"),
        ([1, 2], "no job status"),
    ],
)
def test_malformed_answers_are_retried_as_bad_responses(body: Any, message: str) -> None:
    """A 200 that cannot be read is a bad response, retried, never final."""
    result = answer(200, body)
    assert isinstance(result, RetryLater)
    assert (result.kind, result.http_status) == ("bad_response", 200)
    assert message in result.message


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504, 599])
def test_transient_http_errors_are_retried(status: int) -> None:
    """408 and 5xx (without Retry-After) are retried."""
    assert answer(status) == RetryLater("http", status, f"HTTP {status}")


def test_429_and_503_with_retry_after_throttle() -> None:
    """429 (with or without Retry-After) and 503 with Retry-After are throttling."""
    assert answer(429, **{"Retry-After": "7"}) == Overloaded(7.0, 429)
    assert answer(429) == Overloaded(None, 429)
    assert answer(503, **{"Retry-After": "Sun, 06 Nov 1994 08:50:07 GMT"}) == Overloaded(30.0, 503)


def test_auth_and_permission_failures() -> None:
    """401 asks for a renewed token; 403 is fatal for the run."""
    error = {
        "success": False,
        "error": {"code": "UNAUTHORIZED", "message": "expired"},
        "requestId": "r9",
    }
    assert answer(401, error) == Unauthorized("HTTP 401 UNAUTHORIZED expired (request r9)")
    assert isinstance(answer(403), Forbidden)


def test_not_found_rejected_and_redirect() -> None:
    """404 is NotFound, other 4xx reject the id, 3xx is a redirect never followed."""
    body = {"message": "Job not found", "status": 404, "data": None, "trackingCode": "t-1"}
    assert answer(404, body) == NotFound("HTTP 404 Job not found (request t-1)")
    assert answer(400) == Rejected(400, "HTTP 400")
    assert answer(302, Location="https://evil.example/") == Redirected(302, "https://evil.example/")


def test_unexpected_success_codes_are_bad_responses() -> None:
    """A 204 or other non-200 success carries no status: bad response."""
    assert answer(204) == RetryLater("bad_response", 204, "unexpected HTTP 204")


def test_describe_error_names_html_bodies() -> None:
    """Error bodies that are not JSON are described by content type, not echoed."""
    text = describe_error(502, {"Content-Type": "text/html; charset=utf-8"}, b"<html>bad</html>")
    assert text == "HTTP 502 (text/html body)"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("Sun, 06 Nov 1994 08:49:47 GMT", 10.0),
        ("Sunday, 06-Nov-94 08:49:57 GMT", 20.0),
        ("Sun Nov  6 08:50:07 1994", 30.0),
        ("Sun, 06 Nov 1994 08:00:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("١٢", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    """Delay-seconds and all three HTTP-date forms are read; anything else is ignored."""
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize(
    "word", ["fa\u0131led", "COMPLETED\u00a0", "\u00a0FAILED", "\uff23OMPLETED", "\u017ftatus"]
)
def test_status_words_are_ascii_only(word: str) -> None:
    """Unicode look-alikes (a dotless i upper-cases to I) and non-ASCII spaces are not
    statuses: the answer is a bad response, never a final status."""
    body = orjson.dumps({"data": {"id": 7, "status": word}})
    answer = classify(7, 200, {}, body, 0.0)
    assert isinstance(answer, RetryLater)
    assert "bad_response" == answer.kind
