"""Progress and heartbeat end to end: a real process, stderr a pipe or a pseudo-terminal."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import struct
import termios
from typing import Any

import orjson
import pytest

from async_poller.outcome import ExitCode
from async_poller.simulator import Simulator

from .conftest import TIME_SCALE, Poll
from .helpers import CliRun, ids_arg, simulator_env, start_cli, true_exit_code

pytestmark = pytest.mark.e2e

ESC = "\x1b["
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
FRAME_WORDS = ("final", "pending", "in the last minute", "deadline in")


def _drain(controller: int) -> bytes:
    """Everything written to the terminal, until every process has closed it."""
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the last writer closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def run_on_terminal(*args: str, env: dict[str, str], wait_s: float = 90.0) -> CliRun:
    """Run `python -m async_poller ARGS` with stderr on a 120x40 pseudo-terminal."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        process = await start_cli(*args, env=env, stderr=terminal)
    finally:
        os.close(terminal)
    try:
        drained = asyncio.get_running_loop().run_in_executor(None, _drain, controller)
        try:
            stdout, _ = await asyncio.wait_for(process.communicate(), wait_s)
        except BaseException:
            process.kill()
            await process.wait()
            raise
        stderr = await drained
    finally:
        os.close(controller)
    assert process.returncode is not None
    return CliRun(process.returncode, stdout, stderr.decode("utf-8", "replace"))


def log_lines(stderr: str) -> list[dict[str, Any]]:
    """stderr as JSON log lines; fails if any line is something else (a frame, say)."""
    return [orjson.loads(line) for line in stderr.splitlines()]


async def test_no_progress_when_stderr_is_not_a_terminal(simulator: Simulator, poll: Poll) -> None:
    """With stderr a pipe: JSON log lines only (heartbeats), no frame, no escape codes.
    (The jobs outlast the deadline, so the run lasts a minute however slowly it starts.)"""
    ids = simulator.create_jobs(6, processing_s=3600.0)
    run = await poll("--heartbeat", "20s", "--deadline", "1m", *ids_arg(ids))
    assert run.code == ExitCode.INCOMPLETE, run.stderr
    assert ESC not in run.stderr
    assert not any(word in run.stderr for word in ("━", "in the last minute"))
    assert {"heartbeat"} <= {line["event"] for line in log_lines(run.stderr)}
    assert len(run.results) == 6


async def test_progress_on_a_terminal(simulator: Simulator) -> None:
    """With stderr a terminal, the frame is drawn there; stdout still carries only events."""
    ids = simulator.create_jobs(6, processing_s=300.0)  # outlives a slow start-up
    run = await run_on_terminal(
        "poll",
        "--time-scale",
        str(TIME_SCALE),
        *ids_arg(ids),
        env=simulator_env(simulator, TERM="xterm-256color"),
    )
    assert run.code == true_exit_code(simulator, ids), run.stderr
    for word in FRAME_WORDS:
        assert word in run.stderr
    assert "6/6 final" in ANSI.sub("", run.stderr)
    assert "heartbeat" not in run.stderr, "the frame replaces the heartbeat"
    assert len(run.results) == 6
    assert run.summary["total"] == 6


async def test_progress_never_on_a_terminal(simulator: Simulator) -> None:
    """--progress never keeps the terminal free of frames (console logs only)."""
    ids = simulator.create_jobs(3)
    run = await run_on_terminal(
        "poll",
        "--time-scale",
        str(TIME_SCALE),
        "--progress",
        "never",
        "--heartbeat",
        "0",
        *ids_arg(ids),
        env=simulator_env(simulator, TERM="xterm-256color"),
    )
    assert run.code == true_exit_code(simulator, ids), run.stderr
    assert not any(word in run.stderr for word in FRAME_WORDS)
    assert len(run.results) == 3


async def test_progress_always_into_a_pipe(simulator: Simulator, poll: Poll) -> None:
    """--progress always draws the frame even when stderr is not a terminal."""
    ids = simulator.create_jobs(3)
    run = await poll("--progress", "always", *ids_arg(ids))
    assert run.code == true_exit_code(simulator, ids), run.stderr
    assert "3/3 final" in ANSI.sub("", run.stderr)
    assert len(run.results) == 3


@pytest.mark.simulator(processing_s=3600.0, time_scale=30.0)
async def test_heartbeat_cadence_in_scaled_time(simulator: Simulator, poll: Poll) -> None:
    """--heartbeat 20s over a 2-minute run: the k-th line at 20k clock seconds, never
    earlier; the later ones within half an interval (the first may wait for a slow start)."""
    ids = simulator.create_jobs(4)
    run = await poll("--heartbeat", "20s", "--deadline", "2m", *ids_arg(ids))
    assert run.code == 3, run.stderr
    beats = [line for line in log_lines(run.stderr) if line["event"] == "heartbeat"]
    assert len(beats) in (5, 6)
    elapsed = [beat["elapsed_s"] for beat in beats]  # rounded to 0.1
    assert all(20.0 * k - 0.05 <= at for k, at in enumerate(elapsed, 1)), elapsed
    assert all(at < 20.0 * k + 10.0 for k, at in enumerate(elapsed, 1) if k > 1), elapsed
    assert all(beat["total"] == 4 and beat["pending"] == 4 for beat in beats)


async def test_quiet_silences_the_heartbeat(simulator: Simulator, poll: Poll) -> None:
    """-q keeps errors only: no heartbeat either."""
    ids = simulator.create_jobs(2)
    run = await poll("-q", "--heartbeat", "10s", *ids_arg(ids))
    assert run.code == true_exit_code(simulator, ids), run.stderr
    assert "" == run.stderr
