"""`poll` processes of one tenant share one budget through Redis (`--budget-store redis://`),
as pollers on several machines would: no window over the limit, no 429, and no password
shown anywhere.

The simulator's limit is a 50/min sliding window; every process asks for the default
45/min, so two unshared processes would send 90/min and be refused.
"""

from __future__ import annotations

import asyncio

import pytest

from async_poller.simulator import Simulator

from .conftest import Poll
from .helpers import CliRun, clean_env, ids_arg, run_cli, simulator_env, true_exit_code
from .nginx import free_port
from .redis_server import RedisServer

pytestmark = pytest.mark.e2e

LONG_JOBS = {"processing_s": 240.0, "spread": 0.5}


def assert_no_password(run: CliRun, password: str) -> None:
    """Neither the events nor the logs show the store's password."""
    assert password not in run.stdout.decode() + run.stderr


@pytest.mark.simulator(**LONG_JOBS)
async def test_concurrent_runs_share_the_budget_through_redis(
    simulator: Simulator, poll: Poll, redis_store: RedisServer
) -> None:
    """Two runs started together on one Redis store: together at most 45 requests in any
    minute, none refused, each run a fair share, every job final."""
    fleets = [simulator.create_jobs(12) for _ in range(2)]
    store = ("--budget-store", redis_store.url(3))
    runs = await asyncio.gather(*(poll(*store, *ids_arg(ids)) for ids in fleets))
    for run, ids in zip(runs, fleets, strict=True):
        assert run.code == true_exit_code(simulator, ids), run.stderr[-2000:]
        assert set(ids) == set(run.results)
        assert [] == run.of("warning")
        assert_no_password(run, redis_store.password)
    assert 0 == simulator.refusals()
    assert simulator.max_in_window(60.0) <= 45
    spent = [run.summary["requests"] for run in runs]
    assert min(spent) >= 0.5 * max(spent), spent
    with redis_store.client(db=3) as client:
        assert 3 == len(client.keys("async-poller:budget:*"))


async def test_the_store_may_come_from_the_environment_where_ps_cannot_show_it(
    simulator: Simulator, poll: Poll, redis_store: RedisServer
) -> None:
    """ASYNC_POLLER_BUDGET_STORE names the store when --budget-store does not, so that its
    password stays off the command line (which ps shows every user); the flag wins."""
    ids = simulator.create_jobs(3)
    env = simulator_env(simulator, ASYNC_POLLER_BUDGET_STORE=redis_store.url(5))
    run = await poll(*ids_arg(ids), env=env)
    assert run.code == true_exit_code(simulator, ids), run.stderr[-2000:]
    assert [] == run.of("warning")
    assert_no_password(run, redis_store.password)
    with redis_store.client(db=5) as client:
        assert client.keys("async-poller:budget:*"), "the run did not use the store"
        client.flushdb()
    again = await poll("--budget-store", "none", *ids_arg(ids), env=env)
    assert again.code == true_exit_code(simulator, ids), again.stderr[-2000:]
    with redis_store.client(db=5) as client:
        assert [] == client.keys("async-poller:budget:*"), "the flag did not win"


@pytest.mark.simulator(**LONG_JOBS)
async def test_an_unreachable_redis_store_warns_and_goes_on_at_half_the_rate(
    simulator: Simulator, poll: Poll
) -> None:
    """Nobody listens on the store's port: one warning event naming the store without its
    password, then the run goes on alone at half the rate, every job final, no traceback."""
    ids = simulator.create_jobs(5)
    store = f"redis://:hunter2-canary@127.0.0.1:{free_port()}/0"
    run = await poll("--budget-store", store, *ids_arg(ids))
    assert run.code == true_exit_code(simulator, ids), run.stderr[-2000:]
    [warning] = run.of("warning")
    assert "budget_store_unavailable" == warning["code"]
    assert "redis://***@127.0.0.1" in warning["message"]
    assert "going on alone at 22.5/min" in warning["message"]
    assert set(ids) == set(run.results)
    assert simulator.max_in_window(60.0) <= 23
    assert "Traceback" not in run.stderr
    assert_no_password(run, "hunter2-canary")


async def test_a_malformed_redis_store_is_a_usage_error_without_its_password() -> None:
    """A Redis store URL without a host: exit 2 before anything is polled, the reason on
    stderr with the password masked."""
    env = clean_env(LUCIDITY_ACCESS_TOKEN="access-token", LUCIDITY_BASE_URL="http://127.0.0.1:9")
    run = await run_cli(
        "poll", "--budget-store", "redis://:hunter2-canary@/0", "--id", "1", env=env
    )
    assert 2 == run.code
    assert b"" == run.stdout
    assert "HINT: write redis://" in run.stderr
    assert_no_password(run, "hunter2-canary")
