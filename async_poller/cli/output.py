"""Where the events go: stdout or an appended file, with a status display that steps aside.

`relay` is the one loop that writes events for the CLI commands (poll and demo): each event
is written and flushed, the progress display (if any) is told, and a reader that went away
(`| head`) ends the writing quietly instead of with a traceback.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Final

import orjson

from ..errors import ConfigError, OutputError
from ..events import Event, JsonLinesSink
from ..logs import get_logger
from .progress import RunStatus

__all__ = ["open_output", "relay", "silence"]

_log = get_logger()


@contextmanager
def open_output(output: Path | None) -> Iterator[BinaryIO]:
    """stdout, or `output` opened for appending (so cron runs add to one log).

    A file whose last line was cut short (a run stopped by a full disk before async-poller
    wrote whole lines) is repaired first, so that the new events start on a line of their own.
    """
    if output is None:
        yield sys.stdout.buffer
        return
    try:
        stream = output.open("a+b")
        _repair_last_line(stream, output)
    except OSError as error:
        raise ConfigError(f"cannot open --output {output}: {error.strerror}") from None
    with stream:
        yield stream


REPAIR_WINDOW: Final = 1024 * 1024
"""How far back from the end a partial last line is looked for (events are far shorter)."""


def _repair_last_line(stream: BinaryIO, path: Path) -> None:
    """Drop an unfinished last line that is not JSON; end a complete one with its newline."""
    if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
        return
    size = stream.seek(0, os.SEEK_END)
    if size == 0:
        return
    start = max(0, size - REPAIR_WINDOW)
    stream.seek(start)
    tail = stream.read()
    if tail.endswith(b"\n"):
        return
    cut = tail.rfind(b"\n") + 1
    if cut == 0 and start > 0:  # no line end in sight: just start a fresh line
        stream.write(b"\n")
        return
    try:
        orjson.loads(tail[cut:])
    except orjson.JSONDecodeError:
        stream.truncate(start + cut)
        _log.warning(
            "output_repaired",
            path=str(path),
            dropped_bytes=len(tail) - cut,
            reason="the last line was cut short (an earlier run could not finish writing it)",
        )
    else:
        stream.write(b"\n")
    stream.flush()


async def relay(
    events: AsyncIterator[Event],
    stream: BinaryIO,
    status: RunStatus | None,
    *,
    on_reader_gone: Callable[[], None],
) -> AsyncIterator[Event]:
    """Write each event to `stream` and pass it on; call `on_reader_gone` once if the reader
    closes the pipe (later events are then dropped, and still passed on).

    Raises `OutputError` when an event cannot be written for another reason (a full disk,
    `/dev/full`): the run cannot report, so it stops; no partial line is left behind.
    """
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
                silence(stream)
                reader_gone = True
                on_reader_gone()
            except OSError as error:
                if stream is sys.stdout.buffer:
                    silence(stream)
                where = "stdout" if stream is sys.stdout.buffer else getattr(stream, "name", "?")
                raise OutputError(
                    f"cannot write events to {where}: {error.strerror or error}; run stopped\n"
                    "HINT: free some disk space (or fix the output) and run again; with "
                    "--state, results not written are written by the next run"
                ) from None
        if status:
            status.observe(event)
        yield event


def silence(stream: BinaryIO) -> None:
    """Point the stream at /dev/null so that the interpreter's final flush is quiet too."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
