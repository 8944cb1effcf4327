"""async-poller: poll many Lucidity agent-install jobs at once and stream JSON-lines events.

    async for event in poll_jobs(ids, Config(credentials=Credentials(refresh_token=...))):
        ...

`poll_jobs` is imported on first use, so `import async_poller` (and the CLI's `--help`)
stays fast.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from .clock import Clock, SystemClock
from .config import Config, Credentials, Rate, parse_duration, parse_rate
from .errors import AsyncPollerError, AuthError, ConfigError, FatalResponseError, InputError
from .events import (
    Event,
    InvalidInput,
    PollError,
    Result,
    Start,
    Summary,
    Throttled,
    Transition,
    event_schema,
)
from .ids import InvalidLine, JobIds, read_ids
from .outcome import ExitCode, FinalStatus
from .redact import Secret

if TYPE_CHECKING:
    from ._engine.poll import poll_jobs

__all__ = [
    "AsyncPollerError",
    "AuthError",
    "Clock",
    "Config",
    "ConfigError",
    "Credentials",
    "Event",
    "ExitCode",
    "FatalResponseError",
    "FinalStatus",
    "InputError",
    "InvalidInput",
    "InvalidLine",
    "JobIds",
    "PollError",
    "Rate",
    "Result",
    "Secret",
    "Start",
    "Summary",
    "SystemClock",
    "Throttled",
    "Transition",
    "__version__",
    "event_schema",
    "parse_duration",
    "parse_rate",
    "poll_jobs",
    "read_ids",
]

__version__ = version("async-poller")


def __getattr__(name: str) -> Any:
    if name == "poll_jobs":
        from ._engine.poll import poll_jobs

        return poll_jobs
    raise AttributeError(f"module 'async_poller' has no attribute {name!r}")
