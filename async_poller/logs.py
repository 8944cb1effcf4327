"""Human diagnostics: structlog on stderr, console or JSON, with secrets scrubbed.

stdout belongs to the events; nothing here ever writes there.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Literal, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from .redact import redact

__all__ = ["LogFormat", "configure_logging"]

LogFormat = Literal["auto", "console", "json"]


def configure_logging(
    *,
    log_format: LogFormat = "auto",
    level: str = "info",
    quiet: bool = False,
    stream: TextIO | None = None,
) -> None:
    """Route structlog to `stream` (stderr): console on a terminal, JSON lines otherwise."""
    stream = stream or sys.stderr
    threshold = logging.ERROR if quiet else logging.getLevelNamesMapping()[level.upper()]
    if log_format == "auto":
        log_format = "console" if stream.isatty() else "json"
    renderer: Processor
    if log_format == "console":
        colors = stream.isatty() and "NO_COLOR" not in os.environ
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _scrub_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def _scrub_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask every known token in every string value (defence in depth: none should be there)."""
    return {
        key: redact(value) if isinstance(value, str) else value for key, value in event_dict.items()
    }


def _dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()
