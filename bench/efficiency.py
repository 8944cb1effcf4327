"""Detection efficiency under a budget: async-poller against a naive round-robin poller.

For each fleet shape and seed, two simulators with the same config and seed get the same
fleet; the round-robin baseline (`bench.roundrobin`) polls one, `poll_jobs` with default
settings polls the other, side by side in one event loop on one `SystemClock(scale)`, both
within 45/min against the simulator's 50/min limit. The lag of a job is the clock time from
its true final transition (`JobTruth.final_at`) to the moment its result reaches us; for a
job already final when polling starts (the backlog shape), from the start of polling.

Fleet durations are drawn here, lognormal around the shape's median, and split into the
QUEUED / PREPARING / PROCESSING phases in the proportions of the simulator's defaults; the
simulator draws the outcomes (85% COMPLETED, 10% FAILED, 5% CANCELLED, half of the
cancellations straight from QUEUED) and the UNKNOWN blips (2% of answers).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from itertools import groupby
from typing import Any, Final

from async_poller._engine.poll import poll_jobs
from async_poller.clock import SystemClock
from async_poller.config import Config, Credentials, Rate
from async_poller.events import Result, Summary
from async_poller.logs import configure_logging
from async_poller.redact import Secret
from async_poller.simulator import Simulator, SimulatorConfig

from .common import LoopMonitor, Settings, markdown_table, summarise
from .roundrobin import round_robin

__all__ = [
    "QUICK_SHAPES",
    "SHAPES",
    "FleetShape",
    "compare",
    "contend",
    "measure",
    "plan_fleet",
    "render",
    "run",
    "submit_fleet",
]

Json = dict[str, Any]

BUDGET: Final = Rate(45, 60.0)
"""Both contenders' budget; the simulator enforces its default 50/min."""
DEADLINE: Final = 6 * 3600.0
"""async-poller's deadline, raised from the default 1 h so that no job of a long fleet times
out (a TIMED_OUT job has no detection lag); nothing else is changed from the defaults."""
PHASES: Final = (20.0 / 290, 30.0 / 290, 240.0 / 290)
"""Shares of QUEUED, PREPARING, PROCESSING in a job's duration (the simulator's medians)."""
TARGET_P95_RATIO: Final = 0.6
CHECK_SCALE: Final = 30.0
"""The lower time scale the scale check compares against."""


@dataclass(frozen=True, slots=True)
class FleetShape:
    """A fleet: how many jobs, how long they take, and when they are submitted."""

    name: str
    about: str
    jobs: int
    median_s: float
    sigma: float
    """Sigma of the lognormal durations (0.8: the middle 90% span 3.7x either side)."""
    waves: int = 1
    wave_gap_s: float = 0.0
    backlog: bool = False
    """Submit the waves over time and start polling after the last one (False: every id is
    known at the start and later waves stay QUEUED until their turn, because `poll_jobs`
    takes a fixed list of ids and an id unknown to the API would end NOT_FOUND)."""


SHAPES: Final = (
    FleetShape(
        "burst-5m", "300 jobs submitted at once, median 5 min, wide spread", 300, 300.0, 0.8
    ),
    FleetShape(
        "waves-5m",
        "300 jobs in 6 waves 5 min apart, all polled from the first wave, median 5 min",
        300,
        300.0,
        0.8,
        waves=6,
        wave_gap_s=300.0,
    ),
    FleetShape(
        "backlog-5m",
        "300 jobs in 6 waves 4 min apart, polling starts at the last wave, median 5 min",
        300,
        300.0,
        0.8,
        waves=6,
        wave_gap_s=240.0,
        backlog=True,
    ),
    FleetShape("burst-short", "300 short jobs at once, median 1 min", 300, 60.0, 0.8),
    FleetShape("burst-long", "300 long jobs at once, median 20 min", 300, 1200.0, 0.5),
)

QUICK_SHAPES: Final = (
    FleetShape("quick-burst", "12 jobs at once, median 30 s", 12, 30.0, 0.5),
    FleetShape("quick-waves", "12 jobs in 2 waves", 12, 30.0, 0.5, waves=2, wave_gap_s=20.0),
    FleetShape(
        "quick-backlog",
        "12 jobs in 2 waves, then polling",
        12,
        30.0,
        0.5,
        waves=2,
        wave_gap_s=20.0,
        backlog=True,
    ),
)


@dataclass(frozen=True, slots=True)
class PlannedJob:
    submit_s: float
    """When the job's wave is submitted, in clock seconds after the fleet's start."""
    duration_s: float


def plan_fleet(shape: FleetShape, seed: int) -> list[PlannedJob]:
    """The fleet for `shape` and `seed`: the same every time, for every contender."""
    rng = random.Random(f"bench/{shape.name}/{seed}")
    return [
        PlannedJob(
            (n * shape.waves // shape.jobs) * shape.wave_gap_s,
            shape.median_s * math.exp(shape.sigma * rng.gauss(0.0, 1.0)),
        )
        for n in range(shape.jobs)
    ]


async def submit_fleet(
    simulator: Simulator, shape: FleetShape, plan: list[PlannedJob], started: float
) -> list[int]:
    """Create the fleet's jobs on `simulator` (a backlog's waves when they are due); their ids."""
    ids: list[int] = []
    for submit_s, wave in groupby(plan, key=lambda job: job.submit_s):
        if shape.backlog:
            await simulator.clock.sleep(started + submit_s - simulator.clock.now())
        waits = 0.0 if shape.backlog else submit_s
        for job in wave:
            queued, preparing, processing = (share * job.duration_s for share in PHASES)
            ids += simulator.create_jobs(
                1, queued_s=waits + queued, preparing_s=preparing, processing_s=processing
            )
    return ids


async def contend(
    contender: str,
    simulator: Simulator,
    shape: FleetShape,
    plan: list[PlannedJob],
    seed: int,
    *,
    submitted: list[int] | None = None,
) -> Json:
    """Submit the fleet (unless it is `submitted` already: its ids) and poll it to the end
    with `round-robin` or `async-poller`."""
    clock = simulator.clock
    ids = submitted or await submit_fleet(simulator, shape, plan, clock.now())
    polling_from = clock.now()
    real_from = time.perf_counter()
    found: dict[int, tuple[str, float]] = {}
    extra: Json = {}
    async with clock.timeout(DEADLINE + 600):
        if contender == "round-robin":
            stats = await round_robin(
                ids,
                base_url=simulator.base_url,
                refresh_token=simulator.refresh_token,
                clock=clock,
                rate=BUDGET,
                on_final=lambda job_id, status: found.__setitem__(job_id, (status, clock.now())),
            )
            extra = {"failed_requests": stats.failures}
        else:
            config = Config(
                credentials=Credentials(refresh_token=Secret(simulator.refresh_token)),
                base_url=simulator.base_url,
                deadline=DEADLINE,
                seed=seed,
            )
            async for event in poll_jobs(ids, config, clock=clock):
                if isinstance(event, Result):
                    found[event.job_id] = (event.status, clock.now())
                elif isinstance(event, Summary):
                    extra = {"summary_requests": event.requests, "retries": event.retries}
    return measure(simulator, ids, found, polling_from, real_from) | extra


def measure(
    simulator: Simulator,
    ids: list[int],
    found: dict[int, tuple[str, float]],
    polling_from: float,
    real_from: float,
) -> Json:
    """A contender's figures from `found` (job id -> final status and when we learnt it)."""
    truth = {job.id: job for job in simulator.truth()}
    lags = [at - max(truth[job_id].final_at, polling_from) for job_id, (_, at) in found.items()]
    wrong = sum(status != truth[job_id].final_status for job_id, (status, _) in found.items())
    requests = simulator.requests
    last = max((at for _, at in found.values()), default=math.nan)
    return {
        "jobs": len(ids),
        "results": len(found),
        "wrong_or_missing": wrong + len(ids) - len(found),
        "lag_s": {k: round(v, 1) for k, v in summarise(lags).items()},
        "requests": len(requests),
        "status_requests": sum(r.method == "GET" for r in requests),
        "http_429": sum(r.http_status == 429 for r in requests),
        "max_in_minute": simulator.max_in_window(60.0),
        "all_final_after_s": round(last - polling_from, 1),
        "fleet_done_after_s": round(
            max(max(job.final_at for job in truth.values()) - polling_from, 0.0), 1
        ),
        "final_before_polling": sum(job.final_at <= polling_from for job in truth.values()),
        "real_s": round(time.perf_counter() - real_from, 1),
    }


async def compare(shape: FleetShape, seed: int, scale: float) -> Json:
    """Run both contenders side by side on the same fleet; their figures and the verdict."""
    clock = SystemClock(scale)
    plan = plan_fleet(shape, seed)
    simulated = SimulatorConfig(seed=seed, time_scale=scale)
    monitor = LoopMonitor()
    async with (
        monitor.running(),
        Simulator(simulated, clock=clock) as baseline_api,
        Simulator(simulated, clock=clock) as poller_api,
    ):
        baseline, poller = await asyncio.gather(
            contend("round-robin", baseline_api, shape, plan, seed),
            contend("async-poller", poller_api, shape, plan, seed),
        )
    ratio = poller["lag_s"]["p95"] / baseline["lag_s"]["p95"]
    durations = [job.duration_s for job in plan]
    return {
        "shape": shape.name,
        "seed": seed,
        "time_scale": scale,
        "fleet_duration_s": {k: round(v, 1) for k, v in summarise(durations).items()},
        "round_robin": baseline,
        "async_poller": poller,
        "p95_ratio": round(ratio, 3),
        "targets": {
            "p95_ratio": ratio <= TARGET_P95_RATIO,
            "requests": poller["requests"] <= baseline["requests"],
            "zero_429": poller["http_429"] == 0,
            "correct": poller["wrong_or_missing"] == 0,
        },
        "loop_lag": monitor.report(),
    }


def run(settings: Settings, log: Any = print) -> Json:
    """Every shape (of the mode) for every seed, plus the scale check; a results section."""
    shapes: tuple[FleetShape, ...] = QUICK_SHAPES if settings.quick else SHAPES
    if settings.shapes:
        shapes = tuple(s for s in SHAPES + QUICK_SHAPES if s.name in settings.shapes)
    section: Json = {
        "time_scale": settings.time_scale,
        "seeds": list(settings.seeds),
        "budget": str(BUDGET),
        "workers": settings.workers,
        "shapes": [asdict(shape) for shape in shapes],
    }
    wanted = [(shape, seed, settings.time_scale) for shape in shapes for seed in settings.seeds]
    check_scale = settings.time_scale / 2 if settings.quick else CHECK_SCALE
    checking = settings.scale_check and bool(shapes)
    # Each comparison runs in a fresh process, so that none inherits another's heap; the
    # long scale check goes first so that it overlaps with the rest.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(settings.workers, mp_context=context) as pool:
        check = (
            pool.submit(_compare, shapes[0], settings.seeds[0], check_scale) if checking else None
        )
        futures = [pool.submit(_compare, *arguments) for arguments in wanted]
        runs: list[Json] = []
        for future in futures:
            outcome = future.result()
            log(
                f"efficiency {outcome['shape']} seed {outcome['seed']}: p95 lag "
                f"{outcome['async_poller']['lag_s']['p95']:.0f}s vs "
                f"{outcome['round_robin']['lag_s']['p95']:.0f}s (ratio {outcome['p95_ratio']})"
            )
            runs.append(outcome)
        section["runs"] = runs
        if check is not None:
            low = check.result()
            high = next(r for r in runs if r["shape"] == shapes[0].name)
            section["scale_check"] = {"shape": shapes[0].name, "seed": settings.seeds[0]} | {
                "runs": [high, low]
            }
            log(f"efficiency scale check at x{check_scale:g}: ratio {low['p95_ratio']}")
    return section


def _compare(shape: FleetShape, seed: int, scale: float) -> Json:
    """`compare` in a worker process of its own."""
    configure_logging(log_format="console", level="error")
    return asyncio.run(compare(shape, seed, scale))


def render(section: Json) -> str:
    """The efficiency section as markdown: a table per shape, then the scale check."""
    parts = [
        f"Budget {section['budget']} for both, simulator limit 50/min, time scale "
        f"x{section['time_scale']:g}, seeds {', '.join(map(str, section['seeds']))}. "
        f"Lags and times in simulated seconds; {section['workers']} comparison(s) at a time, "
        "each in its own process (the loop-lag column shows whether they disturbed each other)."
    ]
    by_shape: dict[str, list[Json]] = {}
    for outcome in section["runs"]:
        by_shape.setdefault(outcome["shape"], []).append(outcome)
    abouts = {shape["name"]: shape["about"] for shape in section["shapes"]}
    for name, outcomes in by_shape.items():
        parts.append(f"#### {name}: {abouts[name]}\n\n{_table(outcomes)}")
    if "scale_check" in section:
        check = section["scale_check"]
        high, low = check["runs"]
        shifts = ", ".join(
            f"{label} p95 lag {_shift(low[key]['lag_s']['p95'], high[key]['lag_s']['p95'])}"
            for label, key in (("round-robin", "round_robin"), ("async-poller", "async_poller"))
        )
        parts.append(
            f"#### Scale check: {check['shape']}, seed {check['seed']}, at two time scales\n\n"
            + _table(check["runs"], by_scale=True)
            + f"\n\nFrom x{low['time_scale']:g} to x{high['time_scale']:g}: {shifts}; p95 "
            f"ratio {low['p95_ratio']} -> {high['p95_ratio']}."
        )
    return "\n\n".join(parts)


def _table(outcomes: list[Json], *, by_scale: bool = False) -> str:
    rows: list[list[object]] = []
    for outcome in outcomes:
        verdict = "met" if all(outcome["targets"].values()) else _missed(outcome["targets"])
        for label, key in (("round-robin", "round_robin"), ("async-poller", "async_poller")):
            figures = outcome[key]
            lag = figures["lag_s"]
            first = f"x{outcome['time_scale']:g}" if by_scale else str(outcome["seed"])
            mine = key == "async_poller"
            rows.append(
                [
                    first,
                    label,
                    lag["p50"],
                    lag["p95"],
                    lag["max"],
                    figures["requests"],
                    figures["http_429"],
                    figures["max_in_minute"],
                    round(figures["all_final_after_s"] / 60, 1),
                    figures["wrong_or_missing"],
                    outcome["p95_ratio"] if mine else "",
                    verdict if mine else "",
                    outcome["loop_lag"]["max_ms"] if mine else "",
                ]
            )
    headers = [
        "scale" if by_scale else "seed",
        "poller",
        "lag p50",
        "lag p95",
        "lag max",
        "requests",
        "429s",
        "max req/min",
        "all final (min)",
        "wrong/missing",
        "p95 ratio",
        "targets",
        "loop lag max (ms)",
    ]
    return markdown_table(headers, rows)


def _shift(before: float, after: float) -> str:
    return f"{before:.0f} s -> {after:.0f} s ({(after - before) / before:+.1%})"


def _missed(targets: dict[str, bool]) -> str:
    return "missed: " + ", ".join(name for name, ok in targets.items() if not ok)
