"""How a run is going, told to a person on stderr: a live display or a heartbeat log line.

On a terminal (or with `--progress always`) a rich live display shows jobs final by status,
jobs pending, requests per minute against the budget, throttling and the time left to the
deadline. Anywhere else a one-line `heartbeat` log every so often keeps CI systems that kill
silent jobs at bay. Both are fed the same way: the `Snapshot`s that `poll_jobs` hands to
`on_tick`, and the events as they are written. Neither ever writes to stdout.
"""

from __future__ import annotations

import os
import sys
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal, Protocol, TextIO

from ..config import Rate
from ..events import Event, Result, Start, Summary, Throttled
from ..logs import get_logger

if TYPE_CHECKING:
    from .._engine.control import Snapshot

__all__ = ["Heartbeat", "ProgressMode", "RunStatus", "RunView", "open_status", "shows_progress"]

ProgressMode = Literal["auto", "always", "never"]

FRAME_INTERVAL_S = 0.5
"""Real seconds between two frames of the live display."""
RATE_WINDOW_S = 60.0
"""Requests per minute are counted over this much clock time (or the run so far)."""

_log = get_logger()


class RunStatus(Protocol):
    """What the poll loop feeds: a snapshot every `tick_s` clock seconds, and each event."""

    tick_s: float

    def on_tick(self, snapshot: Snapshot) -> None:
        """Take in where the run stands (and show it, if it is time)."""
        ...

    def observe(self, event: Event) -> None:
        """Take in an event just written."""
        ...

    def clear(self) -> None:
        """Get off the terminal: an event is about to be written to it (stdout is a terminal
        too). The next `observe` or `on_tick` comes back."""
        ...


def shows_progress(mode: ProgressMode, stream: TextIO) -> bool:
    """Whether the live display is on: always, never, or auto = on a capable terminal."""
    if mode != "auto":
        return mode == "always"
    return stream.isatty() and os.environ.get("TERM") != "dumb"


@contextmanager
def open_status(
    mode: ProgressMode,
    *,
    heartbeat_s: float,
    time_scale: float = 1.0,
    rate: Rate,
    stream: TextIO | None = None,
) -> Iterator[RunStatus | None]:
    """The live display if `mode` and `stream` (stderr) call for it, else a heartbeat every
    `heartbeat_s` clock seconds, else None (`heartbeat_s` 0). Closes the display on exit."""
    stream = stream or sys.stderr
    if shows_progress(mode, stream):
        from .live import LiveProgress

        with LiveProgress(RunView(rate), stream, tick_s=FRAME_INTERVAL_S * time_scale) as live:
            yield live
    elif heartbeat_s > 0:
        yield Heartbeat(RunView(rate), tick_s=heartbeat_s)
    else:
        yield None


class RunView:
    """What a person wants to know about a run, kept current from snapshots and events."""

    def __init__(self, rate: Rate) -> None:
        self.configured_rate = str(rate)
        self.rate = str(rate)
        """The budget in force (lower than configured after throttling)."""
        self.total = 0
        self.counts: Counter[str] = Counter()
        """Jobs final so far, by final status."""
        self.pending = 0
        self.requests = 0
        self.waiting = 0
        self.paused_for_s = 0.0
        self.deadline_in_s: float | None = None
        self.elapsed_s = 0.0
        self.done = False
        self._samples: deque[tuple[float, int]] = deque([(0.0, 0)])

    @property
    def final(self) -> int:
        return sum(self.counts.values())

    @property
    def throttled(self) -> bool:
        """Paused by a 429 now, or still running on a lowered budget."""
        return self.paused_for_s > 0 or self.rate != self.configured_rate

    def observe(self, event: Event) -> None:
        """Take in an event as it is written, so the view is current between snapshots."""
        if isinstance(event, Start):
            self.total = self.pending = event.jobs
        elif isinstance(event, Result):
            self.counts[event.status] += 1
            self.pending = max(0, self.pending - 1)
        elif isinstance(event, Throttled):
            self.rate = event.rate
        elif isinstance(event, Summary):
            self.rate = event.rate
            self.counts = Counter({s: n for s, n in event.counts.items() if s != "pending" and n})
            self.pending = event.counts.get("pending", 0)
            self.requests = event.requests
            self.elapsed_s = event.duration_s
            self.paused_for_s = 0.0
            self.waiting = 0
            self.done = True

    def update(self, snapshot: Snapshot) -> None:
        """Take in a snapshot: the scheduler's own count of everything."""
        self.total = snapshot.total
        self.counts = Counter({str(s): n for s, n in snapshot.counts.items() if n})
        self.pending = snapshot.pending
        self.requests = snapshot.requests
        self.rate = snapshot.rate
        self.paused_for_s = snapshot.paused_for_s
        self.waiting = snapshot.waiting
        self.deadline_in_s = snapshot.deadline_in_s
        self.elapsed_s = snapshot.elapsed_s
        self._samples.append((snapshot.elapsed_s, snapshot.requests))
        # Keep one sample older than the window, for ticks further apart than the window.
        while len(self._samples) > 2 and self._samples[1][0] < snapshot.elapsed_s - RATE_WINDOW_S:
            self._samples.popleft()

    def last_minute(self) -> float | None:
        """Requests in the last minute (so far, in the first minute); None before a tick.

        Counted, not extrapolated, so it compares directly with a budget of N per minute;
        when ticks are over a minute apart, the average over the last two, per minute.
        """
        now, latest = self._samples[-1]
        if now <= 0:
            return None
        then, before = next(sample for sample in self._samples if sample[0] >= now - RATE_WINDOW_S)
        if then == now and len(self._samples) > 1:  # ticks over a minute apart
            then, before = self._samples[-2]
        if now - then > RATE_WINDOW_S:
            return (latest - before) / (now - then) * RATE_WINDOW_S
        return float(latest - before)


class Heartbeat:
    """One `heartbeat` log line every `tick_s` clock seconds (info level, so `-q` hides it)."""

    def __init__(self, view: RunView, *, tick_s: float) -> None:
        self.view = view
        self.tick_s = tick_s

    def on_tick(self, snapshot: Snapshot) -> None:
        view = self.view
        view.update(snapshot)
        per_minute = view.last_minute()
        _log.info(
            "heartbeat",
            final=view.final,
            total=view.total,
            pending=view.pending,
            counts=dict(sorted(view.counts.items())),
            requests=view.requests,
            requests_last_min=None if per_minute is None else round(per_minute),
            budget=view.rate,
            throttled_for_s=round(view.paused_for_s, 1),
            deadline_in_s=None if view.deadline_in_s is None else round(view.deadline_in_s),
            elapsed_s=round(view.elapsed_s, 1),
        )

    def observe(self, event: Event) -> None:
        self.view.observe(event)

    def clear(self) -> None:
        """Nothing to clear: a log line is never in the way."""
