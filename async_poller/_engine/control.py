"""What a caller holds of a running `poll_jobs`: a way to stop it, and a look at it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Interrupt", "Snapshot", "TickListener"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The run at a glance, for progress displays and heartbeats."""

    elapsed_s: float
    deadline_in_s: float
    total: int
    counts: Mapping[str, int]
    """Jobs final so far, by final status."""
    pending: int
    requests: int
    rate: str
    """The request budget in force (lower than configured after throttling)."""
    paused_for_s: float
    """Seconds until a throttling pause ends; 0 when not throttled."""
    waiting: int
    """Requests waiting for a slot in the budget."""


TickListener = Callable[[Snapshot], None]
"""Called with a `Snapshot` every tick of a run (`poll_jobs(on_tick=...)`)."""


class Interrupt:
    """Stops a running `poll_jobs` from outside, e.g. from a signal handler.

    No new request starts, requests in flight are abandoned, unfinished jobs count as
    `pending`, and the summary carries `exit_code`.
    """

    def __init__(self) -> None:
        self.exit_code: int | None = None
        self.requested = asyncio.Event()

    def stop(self, exit_code: int) -> None:
        """Ask the run to stop (the first call's exit code wins)."""
        if self.exit_code is None:
            self.exit_code = exit_code
        self.requested.set()

    def __repr__(self) -> str:
        return f"Interrupt(exit_code={self.exit_code})"
