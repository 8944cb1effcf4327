"""The events written to stdout, one JSON object per line (docs/events.md).

Each event is a small frozen dataclass; `encode` turns one into a line with one `orjson.dumps`
call. `event_schema()` returns the JSON Schema shipped in the package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import stat
from dataclasses import dataclass
from typing import IO, Any, ClassVar, Final

import orjson

__all__ = [
    "SCHEMA_VERSION",
    "Event",
    "InvalidInput",
    "JsonLinesSink",
    "PollError",
    "Result",
    "RunWarning",
    "Start",
    "Summary",
    "Throttled",
    "Transition",
    "encode",
    "event_id",
    "event_schema",
]

SCHEMA_VERSION: Final = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Start:
    """Once, first: what this run is about to do."""

    name: ClassVar[str] = "start"
    ts: str
    jobs: int
    invalid: int
    duplicates: int
    base_url: str
    concurrency: int
    rate: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """A job's observed status changed (`from_` is None at the first observation)."""

    name: ClassVar[str] = "transition"
    ts: str
    job_id: int
    from_: str | None
    to: str
    polls: int
    elapsed_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """Once per job, when it is final."""

    name: ClassVar[str] = "result"
    ts: str
    job_id: int
    status: str
    last_status: str | None
    polls: int
    elapsed_s: float
    event_id: str
    reason: str | None = None
    details: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidInput:
    """A bad input line, skipped because of `--skip-invalid`."""

    name: ClassVar[str] = "invalid_input"
    ts: str
    source: str
    line: int
    preview: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PollError:
    """A request failed and will be retried."""

    name: ClassVar[str] = "poll_error"
    ts: str
    job_id: int
    kind: str
    http_status: int | None
    attempt: int
    message: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Throttled:
    """The API said to slow down (429, or 503 with Retry-After)."""

    name: ClassVar[str] = "throttled"
    ts: str
    retry_after_s: float
    rate: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RunWarning:
    """Something the operator should know before trusting the run (e.g. a short budget)."""

    name: ClassVar[str] = "warning"
    ts: str
    code: str
    message: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """Once, last: how the run ended."""

    name: ClassVar[str] = "summary"
    ts: str
    total: int
    counts: dict[str, int]
    requests: int
    retries: int
    throttled: int
    rate: str
    """The request rate in force at the end (lower than configured after throttling)."""
    duration_s: float
    exit_code: int


Event = Start | Transition | Result | InvalidInput | PollError | Throttled | RunWarning | Summary

# Fields left out of the line when they are None; every other field is always present.
_OMIT_WHEN_NONE: Final = frozenset({"reason", "details", "message"})


def _record(event: Event) -> dict[str, Any]:
    record: dict[str, Any] = {"v": SCHEMA_VERSION, "event": event.name}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if value is None and f.name in _OMIT_WHEN_NONE:
            continue
        record[f.name.rstrip("_")] = value
    return record


def encode(event: Event) -> bytes:
    """One event as one JSON line, newline included."""
    return orjson.dumps(_record(event), option=orjson.OPT_APPEND_NEWLINE)


def event_id(job_id: int, status: str) -> str:
    """A stable identifier for "job `job_id` ended `status`", the same in every run."""
    return hashlib.blake2b(f"{job_id}:{status}".encode(), digest_size=8).hexdigest()


def event_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) that every emitted line satisfies."""
    from importlib import resources  # only here: it costs every start-up 10 ms

    text = resources.files(__package__).joinpath("event_schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


class JsonLinesSink:
    """Writes events to a binary stream, one line each, flushed at once.

    A stream with a file descriptor gets whole lines or nothing: a line cut short by a full
    disk is taken back from a regular file before the error is raised, so the file never
    ends in a partial line that would break `jq` for every later run appending to it.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self._fd = None
        self._regular = self._fd is not None and stat.S_ISREG(os.fstat(self._fd).st_mode)

    def write(self, event: Event) -> None:
        line = encode(event)
        if self._fd is None:
            self._stream.write(line)
            self._stream.flush()
            return
        self._stream.flush()  # our lines bypass the buffer: anything in it goes first
        size = os.fstat(self._fd).st_size if self._regular else 0
        written = 0
        try:
            while written < len(line):
                written += os.write(self._fd, line[written:])
        except OSError:
            # Take the partial line back, unless another process appended since.
            if written and self._regular and os.fstat(self._fd).st_size == size + written:
                os.ftruncate(self._fd, size)
            raise
