"""Resilience at the process level: TLS, signals, closed pipes, outages and the retry budget."""

from __future__ import annotations

import asyncio
import math
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from async_poller.simulator import FaultPlan, Simulator, SimulatorConfig

from .conftest import QUICK_JOBS, TIME_SCALE, Poll
from .helpers import (
    clean_env,
    early_retries,
    ids_arg,
    run_cli,
    simulator_env,
    start_cli,
    true_exit_code,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_simulator(certificate_authority: trustme.CA) -> AsyncIterator[Simulator]:
    """The simulator behind https with a certificate from a private CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(context)
    config = SimulatorConfig(time_scale=TIME_SCALE, **QUICK_JOBS)
    async with Simulator(config, tls=context) as simulator:
        yield simulator


async def test_tls_to_an_unknown_ca_is_fatal(tls_simulator: Simulator) -> None:
    """A certificate the system does not trust stops the run with a TLS message, no retries,
    and exit 6 (refused for safety), so CI can tell an attack from a deadline (exit 3)."""
    ids = tls_simulator.create_jobs(2)
    env = clean_env(
        LUCIDITY_BASE_URL=tls_simulator.base_url,
        LUCIDITY_REFRESH_TOKEN=tls_simulator.refresh_token,
    )
    run = await run_cli("poll", "--time-scale", str(TIME_SCALE), *ids_arg(ids), env=env)
    assert run.code == 6
    assert run.summary["exit_code"] == 6
    assert "TLS failure" in run.stderr
    assert "certificate verify failed" in run.stderr
    assert run.summary["counts"]["pending"] == 2
    assert tls_simulator.requests == [], "the handshake failed, so no request was made"


async def test_ca_bundle_makes_a_private_ca_trusted(
    tls_simulator: Simulator, certificate_authority: trustme.CA, tmp_path: Path
) -> None:
    """--ca-bundle trusts a private CA; polling over https then works end to end."""
    bundle = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(bundle))
    ids = tls_simulator.create_jobs(3)
    env = clean_env(
        LUCIDITY_BASE_URL=tls_simulator.base_url,
        LUCIDITY_REFRESH_TOKEN=tls_simulator.refresh_token,
    )
    run = await run_cli(
        "poll", "--time-scale", str(TIME_SCALE), "--ca-bundle", str(bundle), *ids_arg(ids), env=env
    )
    assert run.code == true_exit_code(tls_simulator, ids), run.stderr
    assert set(run.results) == set(ids)


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)]
)
async def test_signals_write_a_summary_and_exit_promptly(
    simulator: Simulator, signum: signal.Signals, code: int
) -> None:
    """SIGTERM/SIGINT/SIGHUP stop the run: summary last with pending jobs, exit 143/130/129
    (128 + the signal's number), no traceback."""
    ids = simulator.create_jobs(6, processing_s=3600.0)
    env = simulator_env(simulator)
    args = ("poll", "--time-scale", str(TIME_SCALE), *ids_arg(ids))
    process = await start_cli(*args, env=env, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    first = await asyncio.wait_for(process.stdout.readline(), 30)
    assert b'"event":"start"' in first
    while b'"transition"' not in await asyncio.wait_for(process.stdout.readline(), 30):
        pass
    process.send_signal(signum)
    rest, stderr = await asyncio.wait_for(process.communicate(), 5)
    assert process.returncode == code
    summary = rest.splitlines()[-1]
    assert b'"event":"summary"' in summary
    assert f'"exit_code":{code}'.encode() in summary
    assert b'"pending":6' in summary
    assert b"Traceback" not in stderr


async def test_a_closed_stdout_ends_the_run_quietly(simulator: Simulator) -> None:
    """`poll ... | head -1`: the run stops when the reader goes, with no traceback."""
    ids = simulator.create_jobs(5, processing_s=3600.0)
    env = simulator_env(simulator)
    command = (
        f"{sys.executable} -m async_poller poll --time-scale {TIME_SCALE} "
        f"{' '.join(ids_arg(ids))} | head -1"
    )
    process = await asyncio.create_subprocess_shell(
        f"set -o pipefail; {command}",
        executable="/bin/bash",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert stdout.count(b"\n") == 1
    assert b"Traceback" not in stderr
    assert b"BrokenPipe" not in stderr
    assert process.returncode == 3


@pytest.mark.simulator(faults=FaultPlan(windows=((0.0, 600.0, "http_503"),)))
async def test_an_outage_is_ridden_out_within_the_retry_budget(
    simulator: Simulator, poll: Poll
) -> None:
    """Ten simulated minutes of 503s: nothing ends early, early retries stay within the
    budget, and once the API recovers every job completes."""
    ids = simulator.create_jobs(30)
    run = await poll(*ids_arg(ids))
    assert run.code == true_exit_code(simulator, ids), run.stderr
    assert len(run.results) == 30
    assert run.of("poll_error")
    early, first_tries = early_retries(simulator, min_delay=10.0)
    assert early <= 10 + 0.2 * first_tries
    assert simulator.max_in_window(60.0) <= 45


@pytest.mark.simulator(
    time_scale=600.0,
    rate_limit=10_000,
    unknown_rate=0.0,
    processing_s=300.0,
    faults=FaultPlan(rates={"http_500": 0.5}),
)
async def test_early_retries_stay_within_the_retry_budget(simulator: Simulator, poll: Poll) -> None:
    """Half the polls answered 500, under a rate budget with room to spare: the server sees
    at most 10 early retries plus one per five other requests (the retry budget), not an
    early retry after every failure; every job still ends with its true status."""
    ids = simulator.create_jobs(30)
    run = await poll("--rate", "6000/min", "--min-delay", "60", "--max-delay", "120", *ids_arg(ids))
    assert run.code == true_exit_code(simulator, ids), run.stderr
    early, others = early_retries(simulator, min_delay=60.0)
    failures = sum(r.http_status == 500 for r in simulator.requests)
    assert failures >= 20, "the run met the failures it is about"
    assert early <= 10 + 0.2 * others, f"{early} early retries after {others} other requests"


@pytest.mark.simulator(faults=FaultPlan(windows=((0.0, math.inf, "token_500"),)))
async def test_a_failing_token_endpoint_is_retried_until_the_deadline(
    simulator: Simulator, poll: Poll
) -> None:
    """Refresh answers 500 forever: refreshes are retried with backoff, jobs end TIMED_OUT."""
    ids = simulator.create_jobs(3)
    run = await poll("--deadline", "5m", *ids_arg(ids))
    assert run.code == 3
    assert {r["status"] for r in run.results.values()} == {"TIMED_OUT"}
    refreshes = [r for r in simulator.requests if r.path.endswith("/refresh")]
    assert 3 <= len(refreshes) <= 15, "backoff, not a storm"
