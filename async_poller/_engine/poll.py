"""`poll_jobs`: the library's entry point and the CLI's engine.

An async iterator of events that starts with `start`, ends with `summary`, and gives every
job exactly one `result` unless the run is cut short. With a state file, jobs final in
earlier runs are counted but not polled, and a result counts as written once the consumer
asks for the next event. The work itself happens in `run.Run`; this module only hands its events on.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Iterable

from .._lucidity.client import connect
from .._state.store import StateStore
from ..clock import Clock, SystemClock
from ..config import Config
from ..errors import AsyncPollerError, ConfigError
from ..events import Event, Result
from ..ids import MAX_ID, JobIds
from .control import Interrupt, TickListener
from .run import Connect, Run

__all__ = ["poll_jobs", "stream_events"]


async def poll_jobs(
    ids: Iterable[int] | JobIds,
    config: Config,
    *,
    clock: Clock | None = None,
    interrupt: Interrupt | None = None,
    on_tick: TickListener | None = None,
    tick_s: float = 1.0,
) -> AsyncGenerator[Event, None]:
    """Poll every job in `ids` until it is final or `config.deadline` passes.

    Yields `start`, then `invalid_input` for skipped lines (when `ids` is a `JobIds`), a
    `warning` if the budget is short, then `transition`, `result`, `poll_error` and
    `throttled` as they happen, and `summary` last. Leaving the loop early cancels the run
    cleanly. Raises `StateLocked` or `StateError` before `start` when `config.state_file`
    cannot be used. `interrupt` stops the run from outside; `on_tick` gets a `Snapshot`
    every `tick_s` clock seconds (`ConfigError` unless positive).
    """
    if on_tick is not None and not (math.isfinite(tick_s) and tick_s > 0):
        raise ConfigError(f"tick_s must be a positive number of seconds, got {tick_s!r}")
    job_ids = ids if isinstance(ids, JobIds) else _distinct(ids)
    ticks = (on_tick, tick_s) if on_tick is not None else None
    events = stream_events(
        job_ids, config, clock or SystemClock(), connect, interrupt=interrupt, ticks=ticks
    )
    async for event in events:
        yield event


async def stream_events(
    job_ids: JobIds,
    config: Config,
    clock: Clock,
    connect: Connect,
    *,
    interrupt: Interrupt | None = None,
    ticks: tuple[TickListener, float] | None = None,
) -> AsyncGenerator[Event, None]:
    """`poll_jobs` with every dependency explicit (tests pass a fake `connect`)."""
    store = StateStore.open(config.state_file) if config.state_file else None
    try:
        events: asyncio.Queue[Event | None] = asyncio.Queue()
        run = Run(
            job_ids, config, clock, events.put_nowait, store=store, interrupt=interrupt, ticks=ticks
        )
        ledger = run.ledger
        yield ledger.start(job_ids, config)
        for invalid in ledger.invalid_inputs(job_ids):
            yield invalid
        if (warning := ledger.budget_warning(run.unfinished(), config)) is not None:
            yield warning
        worker = asyncio.get_running_loop().create_task(run.execute(connect))
        worker.add_done_callback(lambda _: events.put_nowait(None))
        try:
            while (event := await events.get()) is not None:
                yield event
                if isinstance(event, Result):
                    try:
                        ledger.written(event)
                    except AsyncPollerError as error:
                        run.stop(error)
            await worker
        finally:
            if not worker.done():
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
    finally:
        if store is not None:
            store.close()


def _distinct(ids: Iterable[int]) -> JobIds:
    seen: dict[int, None] = {}
    duplicates = 0
    for job_id in ids:
        if not 1 <= job_id <= MAX_ID:
            raise ValueError(f"job id out of range: {job_id}")
        duplicates += job_id in seen
        seen[job_id] = None
    return JobIds(ids=list(seen), invalid=[], duplicates=duplicates)
