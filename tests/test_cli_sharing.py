"""Several `poll` processes of one tenant share one budget: no window over the limit, no 429.

The simulator's limit is a 50/min sliding window; every process asks for the default
45/min, so two unshared processes would send 90/min and be refused. Processes of one test
share the store under the test's own $XDG_STATE_HOME (`--budget-store auto`).
"""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from async_poller.simulator import Simulator

from .conftest import Poll
from .helpers import ids_arg, run_cli, simulator_env, true_exit_code

pytestmark = pytest.mark.e2e

LONG_JOBS = {"processing_s": 240.0, "spread": 0.5}


@pytest.mark.parametrize("processes", [2, 3])
@pytest.mark.simulator(**LONG_JOBS)
async def test_concurrent_runs_share_the_budget(
    processes: int, simulator: Simulator, poll: Poll
) -> None:
    """Two or three runs started together: together at most 45 requests in any minute,
    none refused, each run a fair share, every job final."""
    fleets = [simulator.create_jobs(12) for _ in range(processes)]
    runs = await asyncio.gather(*(poll(*ids_arg(ids)) for ids in fleets))
    for run, ids in zip(runs, fleets, strict=True):
        assert run.code == true_exit_code(simulator, ids), run.stderr[-2000:]
        assert set(ids) == set(run.results)
    assert 0 == simulator.refusals()
    assert simulator.max_in_window(60.0) <= 45
    spent = [run.summary["requests"] for run in runs]
    assert min(spent) >= 0.5 * max(spent), spent


@pytest.mark.simulator(**LONG_JOBS)
async def test_a_restart_after_kill_9_honours_the_window(simulator: Simulator) -> None:
    """A run allowed a whole window's burst, killed with SIGKILL once it has spent it, and
    restarted at once: the restart waits for what its predecessor spent, so no minute holds
    more than 45 requests (unshared, the restart bursts another 45)."""
    ids = simulator.create_jobs(30)
    env = simulator_env(simulator)
    scale = str(simulator.config.time_scale)
    args = ["poll", "--time-scale", scale, "--burst", "45", *ids_arg(ids)]
    victim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "async_poller", *args, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(600):  # until the simulator has seen 45 requests, 30 s at most
        if len(simulator.requests) >= 45:
            break
        await asyncio.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    assert -signal.SIGKILL == await victim.wait()
    restart = await run_cli(*args, env=env)
    assert restart.code == true_exit_code(simulator, ids), restart.stderr[-2000:]
    assert set(ids) == set(restart.results)
    assert 0 == simulator.refusals()
    assert simulator.max_in_window(60.0) <= 45


@pytest.mark.simulator(**LONG_JOBS)
async def test_an_unusable_store_warns_and_goes_on_at_half_the_rate(
    simulator: Simulator, poll: Poll
) -> None:
    """--budget-store under a path that cannot be a directory: one warning event naming
    the store, then the run goes on alone at half the rate, every job final."""
    ids = simulator.create_jobs(5)
    run = await poll("--budget-store", "/dev/null/budget.db", *ids_arg(ids))
    assert run.code == true_exit_code(simulator, ids), run.stderr[-2000:]
    [warning] = [w for w in run.of("warning") if w["code"] == "budget_store_unavailable"]
    assert "/dev/null/budget.db" in warning["message"]
    assert "22.5/min" in warning["message"]
    assert set(ids) == set(run.results)
