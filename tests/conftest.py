"""Shared fixtures: the simulator on an ephemeral loopback port, and `poll` against it; and
hypothesis's profiles."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, Protocol

import pytest
from hypothesis import settings

from async_poller.simulator import Simulator, SimulatorConfig

from .helpers import UNSET, CliRun, run_cli, simulator_env
from .nginx import in_ci
from .redis_server import RedisServer, redis_binary, running_redis

# hypothesis's profiles. "dev" (the default) draws fresh examples on each run; "ci" (CI=true)
# draws the same ones every time, so a failure in CI is one a rerun shows, and prints the
# blob to reproduce it with `@reproduce_failure`; "thorough" (HYPOTHESIS_PROFILE=thorough,
# or `make test-thorough`) draws ten times as many. A test that sets its own number scales
# it with `helpers.examples(N)`, so that the profile reaches it too. HYPOTHESIS_PROFILE
# names the profile in any case.
# Each from hypothesis's defaults: with CI in the environment, hypothesis has already loaded
# a "ci" profile of its own, which a profile without a parent would inherit from.
_DEFAULTS = settings.get_profile("default")
settings.register_profile("dev", _DEFAULTS, deadline=None)
settings.register_profile("ci", _DEFAULTS, derandomize=True, print_blob=True, deadline=None)
settings.register_profile("thorough", _DEFAULTS, max_examples=1_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if in_ci() else "dev"))

TIME_SCALE = 60.0
"""Simulated seconds per real second in end-to-end tests: a 1-hour deadline is 1 minute."""

QUICK_JOBS: dict[str, Any] = {
    "queued_s": 5.0,
    "preparing_s": 5.0,
    "processing_s": 30.0,
    "spread": 0.3,
}
"""Job lifecycles of about 40 simulated seconds, so a scenario takes a few real seconds."""


@pytest.fixture(autouse=True)
def private_state_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test's CLI runs share their budget (`--budget-store auto`) in a store of the
    test's own: a port reused by a later test's simulator must not inherit a pause."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(autouse=True)
def environment_as_under_cron(monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes the tests start inherit no `UNSET` variable (PYTHONUNBUFFERED), even those
    started without `clean_env()`."""
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def simulator(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    """A running simulator; `@pytest.mark.simulator(**settings)` overrides its config."""
    marker = request.node.get_closest_marker("simulator")
    overrides = marker.kwargs if marker else {}
    settings = {"time_scale": TIME_SCALE, "seed": 1, **QUICK_JOBS, **overrides}
    async with Simulator(SimulatorConfig(**settings)) as running:
        yield running


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real Redis server for the session (tests/redis_server.py); the tests skip
    without a redis-server binary, but fail in CI, where there must be one."""
    with running_redis(redis_binary(), tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_store(redis_server: RedisServer) -> RedisServer:
    """The session's Redis server, emptied for this test."""
    with redis_server.client() as client:
        client.flushall()
    return redis_server


class Poll(Protocol):
    def __call__(
        self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
    ) -> Coroutine[None, None, CliRun]: ...


@pytest.fixture
def poll(simulator: Simulator) -> Poll:
    """`async-poller poll ARGS` against the simulator, with its refresh token in the env."""

    def run(
        *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
    ) -> Coroutine[None, None, CliRun]:
        if env is None:
            env = simulator_env(simulator)
        scale = str(simulator.config.time_scale)
        return run_cli("poll", "--time-scale", scale, "--seed", "1", *args, env=env, stdin=stdin)

    return run
