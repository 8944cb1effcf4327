"""Detection lag with headroom: small fleets, far inside the budget, against round-robin.

10, 20 or 40 jobs of a few simulated minutes, all submitted at once, under the default
45/min: round-robin (`bench.roundrobin`) cycles through them at the full budget, so it
checks every job every 13 to 53 s. A poller with that much headroom has no reason to detect
a final status later than round-robin does, nor to need more requests. The efficiency
benchmark asks how to share a budget that is short; this one asks whether a budget that is
not short gets spent.

async-poller runs as the real command line (`python -m async_poller poll`), once per entry
of `CLIENTS`, each against its own simulator with the same seed and fleet as round-robin's,
side by side on one `SystemClock(scale)`. Its results are timed as their lines arrive on its
stdout. Every simulator gets the fleet at the same moment, and round-robin starts polling
when every client has read its ids (its `start` event), so that start-up favours no one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import orjson

from async_poller.clock import SystemClock
from async_poller.simulator import Simulator, SimulatorConfig

from .common import REPO, LoopMonitor, Settings, markdown_table, python_env
from .efficiency import BUDGET, FleetShape, contend, measure, plan_fleet, submit_fleet

__all__ = ["CLIENTS", "Client", "CommandLine", "compare", "render", "run"]

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Client:
    """async-poller with some flags: one column of the comparison."""

    name: str
    flags: tuple[str, ...] = ()


CLIENTS: Final = (Client("async-poller"), Client("thrifty", ("--thrifty",)))
"""The async-poller command lines to compare with round-robin, the default flags first. Each
entry adds a column to every figure of the table: a flag worth comparing is one more line."""
SIZES: Final = (10, 20, 40)
QUICK_SIZES: Final = (6,)
MEDIAN_S: Final = 180.0
QUICK_MEDIAN_S: Final = 300.0
SIGMA: Final = 0.5
TIME_SCALE: Final = 60.0
"""Fleets last about 10 simulated minutes: 10 real seconds a comparison."""
TARGET_P95_RATIO: Final = 1.5
CLIENT_DEADLINE_S: Final = 3600.0
"""`poll`'s default deadline, which bounds every run."""
STARTUP_WITHIN_S: Final = 60.0
"""Real seconds a client gets to load and read its ids."""


def fleet(jobs: int, median_s: float) -> FleetShape:
    """`jobs` jobs submitted at once, lognormal durations around `median_s`."""
    return FleetShape(
        f"headroom-{jobs}", f"{jobs} jobs at once, median {median_s:g} s", jobs, median_s, SIGMA
    )


class CommandLine:
    """One `async-poller poll` process, the ids of its fleet on its stdin, its results timed
    as their lines arrive on its stdout."""

    def __init__(
        self, client: Client, simulator: Simulator, process: asyncio.subprocess.Process
    ) -> None:
        self.client = client
        self.simulator = simulator
        self.process = process
        self.ids: list[int] = []
        self.polling_from = math.nan
        self.real_from = math.nan
        assert process.stderr is not None
        self._errors = asyncio.ensure_future(process.stderr.read())

    @classmethod
    async def spawn(cls, client: Client, simulator: Simulator, seed: int) -> CommandLine:
        """Start the process; it loads while the fleet is submitted, then waits for ids."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "async_poller",
            "poll",
            "--time-scale",
            f"{simulator.config.time_scale:g}",
            "--seed",
            str(seed),
            "--progress",
            "never",
            "-q",
            *client.flags,
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=python_env(
                LUCIDITY_BASE_URL=simulator.base_url,
                LUCIDITY_REFRESH_TOKEN=simulator.refresh_token,
            ),
            cwd=REPO,
        )
        return cls(client, simulator, process)

    async def start(self, ids: list[int]) -> None:
        """Hand over the ids and wait for the `start` event: polling begins."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        self.ids = ids
        stdin.write("\n".join(map(str, ids)).encode())
        await stdin.drain()
        stdin.close()
        async with asyncio.timeout(STARTUP_WITHIN_S):
            first = await stdout.readline()
        if not first or orjson.loads(first)["event"] != "start":
            await self._fail()
        self.polling_from, self.real_from = self.simulator.clock.now(), time.perf_counter()

    async def finish(self) -> Json:
        """Read events to the end; the client's figures."""
        stdout, clock = self.process.stdout, self.simulator.clock
        assert stdout is not None
        found: dict[int, tuple[str, float]] = {}
        summary: Json = {}
        async with asyncio.timeout(CLIENT_DEADLINE_S / self.simulator.config.time_scale + 60):
            async for line in stdout:
                event = orjson.loads(line)
                if event["event"] == "result":
                    found[event["job_id"]] = (event["status"], clock.now())
                elif event["event"] == "summary":
                    summary = event
            code = await self.process.wait()
        if code not in (0, 1):
            await self._fail()
        figures = measure(self.simulator, self.ids, found, self.polling_from, self.real_from)
        return figures | {"summary_requests": summary["requests"], "retries": summary["retries"]}

    async def _fail(self) -> NoReturn:
        await self.stop()
        stderr = (await self._errors).decode("utf-8", "replace")
        raise RuntimeError(f"{self.client.name} failed (exit {self.process.returncode}):\n{stderr}")

    async def stop(self) -> None:
        """Kill the process unless it has ended (on the way out of a failed comparison)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


async def compare(jobs: int, seed: int, scale: float, median_s: float = MEDIAN_S) -> Json:
    """Round-robin and every client of `CLIENTS` on the same fleet; figures and verdicts.

    Every simulator gets the fleet at the same moment; round-robin starts once every client
    has read its ids, so that none starts polling earlier than the others.
    """
    clock = SystemClock(scale)
    shape = fleet(jobs, median_s)
    plan = plan_fleet(shape, seed)
    simulated = SimulatorConfig(seed=seed, time_scale=scale)
    monitor = LoopMonitor()
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(monitor.running())
        baseline_api = await stack.enter_async_context(Simulator(simulated, clock=clock))
        commands: list[CommandLine] = []
        for client in CLIENTS:
            api = await stack.enter_async_context(Simulator(simulated, clock=clock))
            commands.append(await CommandLine.spawn(client, api, seed))
            stack.push_async_callback(commands[-1].stop)
        submitted = clock.now()
        baseline_ids = await submit_fleet(baseline_api, shape, plan, submitted)
        fleets = [await submit_fleet(c.simulator, shape, plan, submitted) for c in commands]
        await asyncio.gather(*(c.start(ids) for c, ids in zip(commands, fleets, strict=True)))
        baseline, *figures = await asyncio.gather(
            contend("round-robin", baseline_api, shape, plan, seed, submitted=baseline_ids),
            *(command.finish() for command in commands),
        )
    clients: Json = {}
    for client, mine in zip(CLIENTS, figures, strict=True):
        ratio = mine["lag_s"]["p95"] / baseline["lag_s"]["p95"]
        clients[client.name] = mine | {
            "p95_ratio": round(ratio, 2),
            "targets": {
                "p95_ratio": ratio <= TARGET_P95_RATIO,
                "requests": mine["requests"] <= baseline["requests"],
                "correct": mine["wrong_or_missing"] == 0,
            },
        }
    return {
        "jobs": jobs,
        "seed": seed,
        "time_scale": scale,
        "round_robin": baseline,
        "clients": clients,
        "loop_lag": monitor.report(),
    }


def run(settings: Settings, log: Any = print) -> Json:
    """Every fleet size for every seed, one comparison at a time; a results section."""
    sizes = QUICK_SIZES if settings.quick else SIZES
    median_s = QUICK_MEDIAN_S if settings.quick else MEDIAN_S
    scale = settings.time_scale if settings.quick else TIME_SCALE
    runs: list[Json] = []
    for jobs in sizes:
        for seed in settings.seeds:
            outcome = asyncio.run(compare(jobs, seed, scale, median_s))
            ratios = ", ".join(
                f"{name} {figures['p95_ratio']}" for name, figures in outcome["clients"].items()
            )
            log(f"headroom {jobs} jobs seed {seed}: p95 lag ratio {ratios}")
            runs.append(outcome)
    return {
        "time_scale": scale,
        "budget": str(BUDGET),
        "median_s": median_s,
        "sigma": SIGMA,
        "seeds": list(settings.seeds),
        "clients": [{"name": c.name, "flags": list(c.flags)} for c in CLIENTS],
        "runs": runs,
    }


def tail_s(figures: Json) -> float:
    """How long after the last job really ended its result came in (simulated s)."""
    tail: float = figures["all_final_after_s"] - figures["fleet_done_after_s"]
    return round(tail, 1)


def render(section: Json) -> str:
    """The headroom section as markdown: the method in a sentence, then one table."""
    names = [client["name"] for client in section["clients"]]
    flags = "; ".join(
        f"{c['name']}: {' '.join(c['flags']) or 'default flags'}" for c in section["clients"]
    )
    intro = (
        f"Budget {section['budget']} for every poller, simulator limit 50/min, time scale "
        f"x{section['time_scale']:g}; fleets submitted at once, durations lognormal around "
        f"{section['median_s']:g} s (sigma {section['sigma']:g}); {flags}. Lags and times in "
        f'simulated seconds; "tail" is how long after the last job really ended its result '
        f"came in. Targets: p95 lag <= {TARGET_P95_RATIO:g}x round-robin's, no more requests."
    )
    headers = ["jobs", "seed", "p95 lag: round-robin"]
    headers += [f"{name} (ratio)" for name in names]
    headers += ["requests: round-robin", *names, "tail: round-robin", *names, "targets"]
    rows: list[list[object]] = []
    for outcome in section["runs"]:
        baseline, clients = outcome["round_robin"], outcome["clients"]
        row: list[object] = [outcome["jobs"], outcome["seed"], baseline["lag_s"]["p95"]]
        row += [f"{clients[n]['lag_s']['p95']:.0f} ({clients[n]['p95_ratio']:.2f}x)" for n in names]
        row += [baseline["requests"], *(clients[n]["requests"] for n in names)]
        row += [tail_s(baseline), *(tail_s(clients[n]) for n in names)]
        row.append("; ".join(f"{n}: {_verdict(clients[n]['targets'])}" for n in names))
        rows.append(row)
    return f"{intro}\n\n{markdown_table(headers, rows)}\n\n{_medians(section, names)}"


def _medians(section: Json, names: list[str]) -> str:
    parts = []
    for name in names:
        by_size: dict[int, list[float]] = {}
        for outcome in section["runs"]:
            by_size.setdefault(outcome["jobs"], []).append(outcome["clients"][name]["p95_ratio"])
        sizes = ", ".join(f"{n} jobs {statistics.median(r):.2f}x" for n, r in by_size.items())
        parts.append(f"{name}: median p95 ratio {sizes}.")
    return " ".join(parts)


def _verdict(targets: dict[str, bool]) -> str:
    missed = [name for name, ok in targets.items() if not ok]
    return "met" if not missed else "missed " + ", ".join(missed)
