"""Human diagnostics: structlog on stderr, console or JSON, with secrets scrubbed.

The library logs through `get_logger`. An application that never configures logging gets
nothing from it, on stdout or anywhere: until structlog is configured (`configure_logging`
does it, and the CLI calls that), lines go to the standard library's `async_poller` logger,
which only has a `NullHandler` unless the application gives it one.

stdout belongs to the events; nothing here ever writes there. While a live progress display
owns the terminal, `divert_logs` hands each rendered line to it, so that the display can
print the line above itself instead of being torn by it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from .redact import redact_value

__all__ = ["LogFormat", "configure_logging", "divert_logs", "get_logger", "no_color"]

LogFormat = Literal["auto", "console", "json"]

_stdlib = logging.getLogger("async_poller")
_stdlib.addHandler(logging.NullHandler())


def get_logger() -> Any:
    """The logger of every library module (a structlog bound logger)."""
    return _library_logger


class _LibraryLogger:
    """structlog's own logger once structlog is configured, the quiet fallback until then
    (structlog's default would print to stdout, which belongs to the events)."""

    def __getattr__(self, name: str) -> Any:
        if structlog.is_configured():
            return getattr(structlog.get_logger("async_poller"), name)
        return getattr(_fallback(), name)

    def __repr__(self) -> str:
        return "<async_poller logger>"


def _fallback() -> Any:
    return structlog.wrap_logger(
        _stdlib,
        processors=[
            structlog.processors.format_exc_info,
            _scrub_secrets,
            structlog.processors.KeyValueRenderer(key_order=["event"], drop_missing=True),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )


_library_logger = _LibraryLogger()


def configure_logging(
    *,
    log_format: LogFormat = "auto",
    level: str = "info",
    quiet: bool = False,
    stream: TextIO | None = None,
) -> None:
    """Route structlog to `stream` (default: stderr): console on a terminal, JSON otherwise.

    `quiet` keeps errors only, whatever `level` says. Console colours follow the terminal and
    are off when `NO_COLOR` is set (https://no-color.org).
    """
    target = stream or sys.stderr
    threshold = logging.ERROR if quiet else logging.getLevelNamesMapping()[level.upper()]
    if log_format == "auto":
        log_format = "console" if target.isatty() else "json"
    renderer: Processor
    if log_format == "console":
        colors = target.isatty() and not no_color()
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    _destination.stream = stream
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _scrub_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=_LineLogger,
        cache_logger_on_first_use=False,
    )


@contextmanager
def divert_logs(write: Callable[[str], None]) -> Iterator[None]:
    """Hand every rendered log line (without its newline) to `write` inside the block."""
    previous = _destination.divert
    _destination.divert = write
    try:
        yield
    finally:
        _destination.divert = previous


def no_color() -> bool:
    """True when the user asked for no colours: `NO_COLOR` set and not empty."""
    return bool(os.environ.get("NO_COLOR"))


class _Destination:
    """Where rendered lines go: the configured stream (stderr by default, looked up at each
    write so that a redirected `sys.stderr` is honoured), unless a display diverts them."""

    def __init__(self) -> None:
        self.stream: TextIO | None = None
        self.divert: Callable[[str], None] | None = None

    def write(self, line: str) -> None:
        if self.divert is not None:
            self.divert(line)
            return
        stream = self.stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()


_destination = _Destination()


class _LineLogger:
    """The end of structlog's chain: one rendered line per call, whatever the level."""

    def __init__(self, *_: Any) -> None:
        pass

    def msg(self, message: str) -> None:
        _destination.write(message)

    log = debug = info = warning = warn = error = err = critical = fatal = exception = msg


def _scrub_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask every known token in every string, nested ones too (defence in depth)."""
    return {key: redact_value(value) for key, value in event_dict.items()}


def _dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
