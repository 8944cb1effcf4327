"""How a run ends: every job settled, the deadline, an interrupt, or an error that aborts it;
and the exit code that ending adds up to."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from ..clock import Clock
from ..errors import AsyncPollerError
from ..logs import get_logger
from ..outcome import exit_code_for, exit_code_of
from .control import Interrupt

__all__ = ["RunEnd"]

_log = get_logger()


class RunEnd:
    """Watches for the first end of a run and remembers which it was."""

    def __init__(self, clock: Clock, deadline: float, unsettled: int, interrupt: Interrupt) -> None:
        self._clock = clock
        self._deadline = deadline
        self._unsettled = unsettled
        self._interrupt = interrupt
        self._stopped = asyncio.Event()
        self.error: AsyncPollerError | None = None
        """The error that aborted the run, if one did."""

    @property
    def unsettled(self) -> int:
        """Jobs that still need polls."""
        return self._unsettled

    @property
    def interrupted(self) -> bool:
        return self._interrupt.requested.is_set()

    def settle(self) -> None:
        """One more job needs no more polls."""
        self._unsettled -= 1
        if self._unsettled <= 0:
            self._stopped.set()

    def abort(self, error: AsyncPollerError) -> None:
        """End the run because of `error` (the first one is kept)."""
        if self.error is None:
            self.error = error
            _log.error("run_aborted", reason=str(error))
        self._stopped.set()

    async def wait(self) -> None:
        """Until every job is settled, the deadline passes, or the run is stopped."""
        if self._unsettled <= 0:
            return
        ends = {
            asyncio.create_task(self._clock.sleep(self._deadline)),
            asyncio.create_task(self._stopped.wait()),
            asyncio.create_task(self._interrupt.requested.wait()),
        }
        try:
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for end in ends:
                end.cancel()

    def exit_code(self, counts: Mapping[str, int]) -> int:
        """The run's exit code, given its final `counts` by status."""
        if self._interrupt.exit_code is not None:
            return self._interrupt.exit_code
        if self.error is not None:
            return exit_code_of(self.error, started=True)
        return exit_code_for(counts)
