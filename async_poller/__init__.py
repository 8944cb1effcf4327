"""async-poller: poll many Lucidity agent-install jobs at once and stream JSON-lines events.

    async for event in poll_jobs(ids, Config(credentials=Credentials(refresh_token=...))):
        ...

Everything public is here, listed in `__all__`; the subpackages whose names start with an
underscore are the implementation. `poll_jobs`, `configure_logging`, the clocks and the
run controls (`Interrupt`, `Snapshot`, `TickListener`) are imported on first use, so that
`import async_poller` (and the CLI's `--help`) loads neither aiohttp, structlog nor asyncio.
"""

from __future__ import annotations

import typing as _typing
import warnings as _warnings

from .config import Config, Credentials, Rate, parse_duration, parse_rate
from .errors import (
    AsyncPollerError,
    AuthError,
    ConfigError,
    FatalResponseError,
    InputError,
    OutputError,
    StateError,
    StateLocked,
)
from .events import (
    Event,
    InvalidInput,
    PollError,
    Result,
    RunWarning,
    Start,
    Summary,
    Throttled,
    Transition,
    event_schema,
)
from .ids import InvalidLine, JobIds, read_ids
from .outcome import ExitCode, FinalStatus
from .redact import Secret

if _typing.TYPE_CHECKING:
    from ._engine.control import Interrupt, Snapshot, TickListener
    from ._engine.poll import poll_jobs
    from .clock import Clock, SystemClock
    from .logs import configure_logging

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
    "Interrupt",
    "InvalidInput",
    "InvalidLine",
    "JobIds",
    "OutputError",
    "PollError",
    "Rate",
    "Result",
    "RunWarning",
    "Secret",
    "Snapshot",
    "Start",
    "StateError",
    "StateLocked",
    "Summary",
    "SystemClock",
    "Throttled",
    "TickListener",
    "Transition",
    "__version__",
    "configure_logging",
    "event_schema",
    "parse_duration",
    "parse_rate",
    "poll_jobs",
    "read_ids",
]

__version__ = "0.1.0"

_LAZY = {
    "Clock": "clock",
    "Interrupt": "_engine.control",
    "Snapshot": "_engine.control",
    "SystemClock": "clock",
    "TickListener": "_engine.control",
    "configure_logging": "logs",
    "poll_jobs": "_engine.poll",
}
"""Names imported on first use, and the module of each."""
_RENAMED = {"PollerError": "AsyncPollerError"}


def __getattr__(name: str) -> _typing.Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _RENAMED:
        _warnings.warn(
            f"async_poller.{name} is now {_RENAMED[name]}; the old name will go in 1.0",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module 'async_poller' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
