"""What every benchmark shares: settings, statistics, machine notes, child processes."""

from __future__ import annotations

import asyncio
import atexit
import functools
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final

__all__ = [
    "REPO",
    "Finished",
    "LoopMonitor",
    "Settings",
    "SimulatorProcess",
    "TimedOut",
    "load_average",
    "machine_notes",
    "markdown_table",
    "percentile",
    "python_env",
    "run_measured",
    "simulator_process",
    "summarise",
    "system_busy_s",
]

REPO: Final = Path(__file__).resolve().parent.parent
"""The repository root: children run from here so that `python -m bench.child` resolves."""

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Settings:
    """What the command line asked for; `quick` shrinks every size for a smoke run."""

    quick: bool = False
    seeds: tuple[int, ...] = (1, 2, 3)
    time_scale: float = 120.0
    """Simulated seconds per real second in the efficiency benchmark."""
    scale_check: bool = True
    """Also run one efficiency comparison at a lower time scale, to show the scale is harmless."""
    shapes: tuple[str, ...] = ()
    """Efficiency fleet shapes to run; empty means all (of the mode)."""
    poll_million: bool = True
    """Try polling 1,000,000 ids in the scale benchmark (several GB of memory)."""
    workers: int = 2
    """Efficiency comparisons run at the same time, each in a process of its own."""


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) with linear interpolation between ranks; NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, max and mean of `values`."""
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values, default=math.nan),
        "mean": sum(values) / len(values) if values else math.nan,
    }


def machine_notes() -> Json:
    """Where the figures come from: CPU, cores, memory, Python, key packages, git commit."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages: dict[str, str | None] = {}
    for name in ("aiohttp", "orjson", "uvloop"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": packages,
        "git": _git_state(),
    }


def _git_state() -> Json:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "async_poller")
    return {"commit": git("rev-parse", "--short", "HEAD"), "async_poller_dirty": bool(dirty)}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; floats get 3 significant decimals at most."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "-"
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def python_env(**extra: str) -> dict[str, str]:
    """This process's environment without Lucidity settings or a budget store of the
    user's, with a scratch state home (`scratch_state_home`), plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LUCIDITY_") and k != "ASYNC_POLLER_BUDGET_STORE"
    }
    return env | {"XDG_STATE_HOME": scratch_state_home()} | extra


@functools.cache
def scratch_state_home() -> str:
    """The XDG_STATE_HOME of the benchmarks' pollers and simulators, removed at exit: their
    tenant-wide budget (`--budget-store auto`) must neither read nor write the user's."""
    path = tempfile.mkdtemp(prefix="async-poller-bench-state-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


class LoopMonitor:
    """How late the event loop wakes a 10 ms sleeper, in real ms: evidence of a light load.

    In scaled time a late wake-up is a simulated delay `scale` times longer, so the lag
    figures only mean something while this stays small.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.lags_ms.append((time.perf_counter() - started - self.interval) * 1000)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[LoopMonitor]:
        """Watch the loop for the duration of the block."""
        self._task = asyncio.get_running_loop().create_task(self._watch())
        try:
            yield self
        finally:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def report(self) -> dict[str, float]:
        return {
            "p99_ms": round(percentile(self.lags_ms, 99), 2),
            "max_ms": round(max(self.lags_ms, default=math.nan), 2),
        }


@dataclass(frozen=True, slots=True)
class Finished:
    """A child process that ran to the end, with its own resource usage."""

    spawned: float
    """`time.monotonic()` when it was spawned (the clock is the same in every process)."""
    code: int
    wall_s: float
    cpu_s: float
    max_rss_kb: int
    stdout: bytes
    stderr: bytes


def run_measured(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 600.0,
) -> Finished:
    """Run `args` to the end: its own wall time, CPU time and peak RSS.

    A small launcher (`python -S`) spawns and `wait4`s it, because a child's `ru_maxrss`
    starts from the RSS of the process that forked it: measured from here, every child
    would seem at least as big as the benchmark itself. The wall time is the launcher's,
    from spawn to exit, so the launcher's own start-up is not counted either.
    """
    with tempfile.NamedTemporaryFile("r", prefix="bench-usage-") as report:
        process = subprocess.Popen(
            [sys.executable, "-S", "-c", _LAUNCHER, report.name, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            lines = Path(report.name).read_text().split()
            peak = _peak_rss_kb(int(lines[0])) if lines else None
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise TimedOut(timeout, peak) from None
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        _, spawned, code, wall, cpu, max_rss = Path(report.name).read_text().split()
    return Finished(
        spawned=float(spawned),
        code=int(code),
        wall_s=float(wall),
        cpu_s=float(cpu),
        max_rss_kb=int(max_rss),
        stdout=stdout,
        stderr=stderr,
    )


_LAUNCHER: Final = """
import os, sys, time
report, args = sys.argv[1], sys.argv[2:]
spawned, started = time.monotonic(), time.perf_counter()
pid = os.posix_spawnp(args[0], args, os.environ)
with open(report, "w") as out:
    out.write(f"{pid} {spawned}\\n")
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(report, "a") as out:
    cpu = usage.ru_utime + usage.ru_stime
    out.write(f"{os.waitstatus_to_exitcode(status)} {wall} {cpu} {usage.ru_maxrss}\\n")
"""


class TimedOut(Exception):
    """A child ran past its time limit and was killed; `max_rss_kb` is its peak until then."""

    def __init__(self, after_s: float, max_rss_kb: int | None) -> None:
        super().__init__(f"killed after {after_s:g}s")
        self.after_s = after_s
        self.max_rss_kb = max_rss_kb


def _peak_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


@dataclass(frozen=True, slots=True)
class SimulatorProcess:
    """`async-poller simulate` running in its own process."""

    process: subprocess.Popen[bytes]
    base_url: str
    refresh_token: str

    def cpu_s(self) -> float:
        """The simulator's CPU time so far (user + system), from /proc."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stats(self) -> Json:
        """The simulator's request log and counts (`GET /_sim/stats`)."""
        stats: Json = self._get("/_sim/stats")
        return stats

    def truth(self) -> list[Json]:
        """Every job's true timeline and final status (`GET /_sim/truth`)."""
        truth: list[Json] = self._get("/_sim/truth")
        return truth

    def _get(self, path: str) -> Any:
        import json
        import urllib.request

        with urllib.request.urlopen(self.base_url + path, timeout=60) as response:
            return json.load(response)

    def client_env(self) -> dict[str, str]:
        """An environment pointing `async-poller poll` at this simulator."""
        return python_env(
            LUCIDITY_BASE_URL=self.base_url, LUCIDITY_REFRESH_TOKEN=self.refresh_token
        )


@contextmanager
def simulator_process(*options: str, startup_timeout: float = 120.0) -> Iterator[SimulatorProcess]:
    """Start `python -m async_poller simulate OPTIONS` on a free loopback port; stop it after."""
    process = subprocess.Popen(
        [sys.executable, "-m", "async_poller", "simulate", "--port", "0", *options],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env=python_env(),
    )
    try:
        found = _read_announcement(process, startup_timeout)
        yield SimulatorProcess(process, found["LUCIDITY_BASE_URL"], found["LUCIDITY_REFRESH_TOKEN"])
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _read_announcement(process: subprocess.Popen[bytes], timeout: float) -> dict[str, str]:
    """The `NAME=value` lines the simulator prints once it listens."""
    assert process.stdout is not None
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(found) < 2:
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the simulator did not start (run `async-poller simulate` by hand)")
        line = process.stdout.readline().decode()
        if match := re.fullmatch(r"(LUCIDITY_[A-Z_]+)=(\S+)\s*", line):
            found[match.group(1)] = match.group(2)
    return found


def system_busy_s() -> float:
    """CPU seconds the whole machine has spent busy since boot, all cores added (/proc/stat).

    Compared with what our own processes used over the same span, it shows whether
    something else was running during a measurement.
    """
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    """The 1-minute load average: above ~0.5 at the start, something else is busy."""
    return float(Path("/proc/loadavg").read_text().split()[0])
