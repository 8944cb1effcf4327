"""Events: encoding, the shipped JSON Schema, and stable event ids."""

from __future__ import annotations

import io

import jsonschema
import orjson

from async_poller.events import (
    Event,
    InvalidInput,
    JsonLinesSink,
    PollError,
    Result,
    RunWarning,
    Start,
    Summary,
    Throttled,
    Transition,
    encode,
    event_id,
    event_schema,
)

TS = "2026-11-29T08:00:00.000Z"

ONE_OF_EACH: list[Event] = [
    Start(
        ts=TS,
        jobs=3,
        invalid=1,
        duplicates=0,
        base_url="http://127.0.0.1:1",
        concurrency=8,
        rate="45/min",
    ),
    Transition(ts=TS, job_id=1, from_=None, to="QUEUED", polls=1, elapsed_s=0.5),
    Result(
        ts=TS,
        job_id=1,
        status="FAILED",
        last_status="FAILED",
        polls=4,
        elapsed_s=80.0,
        event_id=event_id(1, "FAILED"),
        reason="SSM agent unreachable",
        details=[{"instanceId": "i-1", "status": "FAILED"}],
    ),
    InvalidInput(ts=TS, source="ids.txt", line=3, preview="12a", reason="inline text after id"),
    PollError(ts=TS, job_id=1, kind="timeout", http_status=None, attempt=1),
    Throttled(ts=TS, retry_after_s=7.0, rate="22/min"),
    RunWarning(
        ts=TS,
        code="budget_short",
        message="the budget (45/min) cannot poll 300 jobs once per --max-delay (2m)",
        details={"jobs": 300, "budget_per_min": 45.0},
    ),
    Summary(
        ts=TS,
        total=3,
        counts={"COMPLETED": 2, "FAILED": 1, "pending": 0},
        requests=12,
        retries=1,
        throttled=1,
        rate="31.5/min",
        duration_s=95.2,
        exit_code=1,
    ),
]


def test_every_event_type_is_valid_against_the_schema() -> None:
    """One of each event, encoded, passes the shipped schema."""
    validator = jsonschema.Draft202012Validator(event_schema())
    for event in ONE_OF_EACH:
        validator.validate(orjson.loads(encode(event)))


def test_encoding_is_one_line_with_common_fields() -> None:
    """Each event is one JSON object on one line with v, event and ts first."""
    line = encode(ONE_OF_EACH[1])
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    record = orjson.loads(line)
    assert list(record)[:3] == ["v", "event", "ts"]
    assert record["from"] is None
    assert "from_" not in record


def test_optional_fields_are_left_out_when_absent() -> None:
    """reason, details and message appear only when they carry something."""
    result = Result(
        ts=TS,
        job_id=2,
        status="COMPLETED",
        last_status="COMPLETED",
        polls=1,
        elapsed_s=1.0,
        event_id="x",
    )
    assert "reason" not in orjson.loads(encode(result))
    assert "message" not in orjson.loads(encode(ONE_OF_EACH[4]))


def test_schema_rejects_unknown_fields_and_statuses() -> None:
    """The schema is strict: a misspelt field or an unknown status fails."""
    validator = jsonschema.Draft202012Validator(event_schema())
    record = orjson.loads(encode(ONE_OF_EACH[2]))
    assert validator.is_valid(record)
    assert not validator.is_valid({**record, "status": "DONE"})
    assert not validator.is_valid({**record, "extra": 1})


def test_event_id_is_stable_per_job_and_status() -> None:
    """The same job and status always give the same id; anything else differs."""
    assert event_id(4711, "COMPLETED") == event_id(4711, "COMPLETED")
    assert (
        len({event_id(4711, "COMPLETED"), event_id(4711, "FAILED"), event_id(4712, "COMPLETED")})
        == 3
    )


def test_sink_writes_and_flushes_each_line() -> None:
    """The sink writes exactly the encoded lines, in order."""
    stream = io.BytesIO()
    sink = JsonLinesSink(stream)
    for event in ONE_OF_EACH:
        sink.write(event)
    assert stream.getvalue() == b"".join(encode(event) for event in ONE_OF_EACH)
