"""Where the events go: stdout or an appended file, with a status display that steps aside.

`relay` is the one loop that writes events for the CLI commands (poll and demo): each event
is written and flushed, the progress display (if any) is told, and a reader that went away
(`| head`) ends the writing quietly instead of with a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import ConfigError
from .events import Event, JsonLinesSink
from .progress import RunStatus

__all__ = ["open_output", "relay"]


@contextmanager
def open_output(output: Path | None) -> Iterator[BinaryIO]:
    """stdout, or `output` opened for appending (so cron runs add to one log)."""
    if output is None:
        yield sys.stdout.buffer
        return
    try:
        stream = output.open("ab")
    except OSError as error:
        raise ConfigError(f"cannot open --output {output}: {error.strerror}") from None
    with stream:
        yield stream


async def relay(
    events: AsyncIterator[Event],
    stream: BinaryIO,
    status: RunStatus | None,
    *,
    on_reader_gone: Callable[[], None],
) -> AsyncIterator[Event]:
    """Write each event to `stream` and pass it on; call `on_reader_gone` once if the reader
    closes the pipe (later events are then dropped, and still passed on)."""
    sink = JsonLinesSink(stream)
    shared_terminal = stream.isatty()  # a person reads the events where the progress is
    reader_gone = False
    async for event in events:
        if status and shared_terminal:
            status.clear()
        if not reader_gone:
            try:
                sink.write(event)
            except BrokenPipeError:
                # Point the stream at /dev/null so the interpreter's final flush is quiet too.
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
                reader_gone = True
                on_reader_gone()
        if status:
            status.observe(event)
        yield event
