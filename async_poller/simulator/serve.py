"""`async-poller simulate`: run the simulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from ..errors import ConfigError
from ..outcome import ExitCode
from .faultplan import FaultPlan
from .options import add_simulate_arguments
from .settings import SimulatorConfig

__all__ = ["add_simulate_arguments", "run_simulate", "simulator_config"]


def run_simulate(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; print the base URL and refresh token as shell assignments."""
    try:
        config = simulator_config(args)
        if args.jobs < 0:
            raise ConfigError("--jobs must not be negative")
    except ConfigError as error:
        print(f"async-poller simulate: {error}", file=sys.stderr)
        return ExitCode.USAGE
    return asyncio.run(_serve(config, args))


def simulator_config(args: argparse.Namespace) -> SimulatorConfig:
    """The simulator settings the `simulate` flags ask for; ConfigError if they clash."""
    return SimulatorConfig(
        seed=args.seed,
        time_scale=args.time_scale,
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
        limiter=args.limiter,
        throttle_status=args.throttle_status,
        retry_after=args.retry_after,
        token_ttl=args.token_ttl,
        envelope=args.envelope,
        faults=FaultPlan(rates=dict(args.fault_rate)),
    )


async def _serve(config: SimulatorConfig, args: argparse.Namespace) -> int:
    from .server import Simulator

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    sim = Simulator(config)
    try:
        base_url = await sim.start(args.host, args.port)
    except OSError as error:
        print(
            f"async-poller simulate: cannot listen on {args.host}:{args.port}: {error}",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    try:
        _announce_jobs(sim.create_jobs(args.jobs), args.jobs_file)
        print(f"LUCIDITY_BASE_URL={base_url}", file=sys.stdout)
        print(f"LUCIDITY_REFRESH_TOKEN={sim.refresh_token}", file=sys.stdout, flush=True)
        print(
            f"simulator listening on {base_url} (time x{config.time_scale:g}); "
            "press Ctrl-C to stop",
            file=sys.stderr,
        )
        await stopping.wait()
    finally:
        await sim.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return ExitCode.OK


def _announce_jobs(ids: list[int], path: Path | None) -> None:
    if not ids:
        return
    lines = "".join(f"{job_id}\n" for job_id in ids)
    if path is None:
        sys.stderr.write(f"created {len(ids)} jobs:\n{lines}")
        return
    # Write then rename, so that a reader never sees half a list.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(lines, encoding="ascii")
    os.replace(partial, path)
