"""SqlitePacer: one budget shared through a SQLite file, in virtual time.

Each `RateBudget` over its own `SqlitePacer` plays one process; several of them on one
file are processes of one tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import sqlite3
from pathlib import Path

import pytest

from async_poller._pacing.budget import RateBudget
from async_poller._pacing.tenant import default_store_path, tenant_key
from async_poller._pacing.tenant_sqlite import SqlitePacer
from async_poller.config import Credentials, Rate
from async_poller.redact import Secret
from async_poller.testing import VirtualClock

from .tenant_checks import RATE, assert_paced_together, spend


def shared_pacer(
    path: Path, clock: VirtualClock, *, rate: Rate = RATE, failures: list[str] | None = None
) -> SqlitePacer:
    """One process's pacer over the shared file."""
    return SqlitePacer(
        path, "tenant", rate, clock, timeline=clock.wall, max_request_s=30.0,
        on_failure=(failures if failures is not None else []).append, rng=random.Random(1),
    )  # fmt: skip


def sharer(
    path: Path, clock: VirtualClock, *, rate: Rate = RATE, failures: list[str] | None = None
) -> RateBudget:
    """One process's budget over the shared file."""
    pacer = shared_pacer(path, clock, rate=rate, failures=failures)
    return RateBudget(rate, clock, max_in_flight=8, pacer=pacer)


async def test_sharers_are_paced_together(tmp_path: Path) -> None:
    """Two processes of one tenant get one request out every 10 s between them, not each;
    each gets a fair share."""
    clock = VirtualClock()
    path = tmp_path / "budget.db"
    await assert_paced_together(sharer(path, clock), sharer(path, clock), clock)


async def test_a_restart_honours_what_its_predecessor_spent(tmp_path: Path) -> None:
    """A process killed mid-run (its requests never marked ended) and a new one started at
    once: the newcomer waits its turn and the window never holds more than the limit."""
    clock = VirtualClock()
    path = tmp_path / "budget.db"
    log: list[tuple[float, str]] = []
    victim = sharer(path, clock)
    await spend(victim, clock, 6, "victim", log, latency=0.0)  # a whole window's allowance
    # kill -9: nothing is closed or flushed; the newcomer opens the same file.
    newcomer = sharer(path, clock)
    await spend(newcomer, clock, 6, "newcomer", log)
    starts = sorted(at for at, _ in log)
    assert all(later - earlier >= 10.0 - 1e-6 for earlier, later in itertools.pairwise(starts))
    in_window = [sum(1 for t in starts if t0 <= t < t0 + 60.0) for t0 in starts]
    assert max(in_window) <= RATE.limit
    await newcomer.aclose()


async def test_a_pause_one_sharer_was_told_holds_every_sharer(tmp_path: Path) -> None:
    """A 429 with Retry-After: 60 received by one process pauses the other, and the cut
    rate is the other's too."""
    clock = VirtualClock()
    path = tmp_path / "budget.db"
    told, other = sharer(path, clock), sharer(path, clock)
    log: list[tuple[float, str]] = []
    await spend(told, clock, 1, "told", log)
    told.throttle(60.0, sent_at=clock.now())
    await spend(other, clock, 1, "other", log)
    assert log[-1][0] >= 60.0
    assert str(other.rate) == str(told.rate) != str(RATE)
    for budget in (told, other):
        await budget.aclose()


async def test_a_dead_process_holds_nothing_for_long(tmp_path: Path) -> None:
    """Requests of a process that died under way count only until their latest possible end
    plus a window; then the budget is whole again."""
    clock = VirtualClock()
    path = tmp_path / "budget.db"
    log: list[tuple[float, str]] = []
    burst = Rate(3, 60.0)
    dead = sharer(path, clock, rate=burst)
    tasks = [asyncio.create_task(spend(dead, clock, 1, "dead", log, latency=1e9)) for _ in "abc"]
    await clock.sleep(45.0)  # three requests under way, never to end
    for task in tasks:
        task.cancel()
    survivor = sharer(path, clock, rate=burst)
    await spend(survivor, clock, 1, "survivor", log)
    assert log[-1][0] == pytest.approx(log[0][0] + 30.0 + 60.0, abs=1.0)
    await survivor.aclose()


async def test_an_unusable_store_means_a_warning_and_half_the_rate(tmp_path: Path) -> None:
    """A store that cannot be opened: one failure report, and pacing at half the rate."""
    clock = VirtualClock()
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    failures: list[str] = []
    budget = sharer(blocker / "budget.db", clock, failures=failures)
    log: list[tuple[float, str]] = []
    await spend(budget, clock, 3, "alone", log)
    assert [at for at, _ in log] == [0.0, 20.0, 40.0]
    [failure] = failures
    assert "going on alone at 3/min" in failure
    await budget.aclose()


async def test_a_store_lost_mid_run_keeps_its_pause_and_goes_on_alone(tmp_path: Path) -> None:
    """A sharer that has read a pause from the file, and then cannot use the file (here its
    tables are dropped), goes on alone with one failure report and still holds the pause."""
    clock = VirtualClock()
    path = tmp_path / "budget.db"
    told = sharer(path, clock)
    await spend(told, clock, 1, "told", [])
    told.throttle(100.0, sent_at=clock.now())
    failures: list[str] = []
    other = shared_pacer(path, clock, failures=failures)
    assert (await other.try_pass() or 0.0) >= 100.0 - clock.now()
    with contextlib.closing(sqlite3.connect(path)) as vandal:
        vandal.executescript("DROP TABLE pace; DROP TABLE flight; DROP TABLE sharer;")
    await clock.sleep(10.0)
    wait = await other.try_pass()
    [failure] = failures
    assert "going on alone at 3/min" in failure
    assert wait is not None, "the pause was dropped"
    assert wait >= 100.0 - clock.now() - 1e-6
    assert other.paused_for() >= 100.0 - clock.now() - 1e-6
    for pacer in (told, other):
        await pacer.aclose()


def test_the_tenant_is_the_host_and_the_credential_never_the_credential_itself() -> None:
    """Same host and token: one tenant; another token or host: another; no token text."""
    token = Credentials(refresh_token=Secret("refresh-token-canary"))
    key = tenant_key("https://api.example", token)
    assert key == tenant_key("https://api.example", token)
    assert key != tenant_key("https://other.example", token)
    assert key != tenant_key("https://api.example", Credentials(token_command="get-token"))
    assert "canary" not in key


def test_the_default_store_follows_xdg_state_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """$XDG_STATE_HOME/async-poller/budget.db, or under ~/.local/state without it."""
    monkeypatch.setenv("XDG_STATE_HOME", "/srv/state")
    assert Path("/srv/state/async-poller/budget.db") == default_store_path()
    monkeypatch.delenv("XDG_STATE_HOME")
    expected = Path(os.path.expanduser("~/.local/state/async-poller/budget.db"))
    assert expected == default_store_path()


async def test_at_high_rates_slots_are_reserved_in_batches_and_pacing_holds(
    tmp_path: Path,
) -> None:
    """At 60/s one transaction reserves the slots due within 50 ms (three); requests still
    leave one interval apart across both sharers, and no second holds more than 60."""
    clock = VirtualClock()
    path = tmp_path / "budget.db"
    fast = Rate(60, 1.0)
    first, second = sharer(path, clock, rate=fast), sharer(path, clock, rate=fast)
    log: list[tuple[float, str]] = []
    await asyncio.gather(
        spend(first, clock, 100, "first", log, latency=0.01),
        spend(second, clock, 100, "second", log, latency=0.01),
    )
    starts = sorted(at for at, _ in log)
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 1 / 60 - 1e-6
    assert max(sum(1 for t in starts if t0 <= t < t0 + 1.0) for t0 in starts) <= 60
    assert "lease" not in repr(first)
    for budget in (first, second):
        await budget.aclose()
