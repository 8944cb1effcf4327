"""How much better than round-robin could any poller be? A model in virtual time.

`python -m bench.bound` replays the simulator's own job timelines (same generator, same
seeds as the efficiency benchmark) against four polling rules under one budget, one request
per slot, no network:

- round-robin: the baseline of the efficiency benchmark (input order, final jobs dropped);
- earliest-overdue: async-poller's rule (jittered exponential delays, first round in input
  order, the most overdue job first);
- informed: knows the true phase-duration distributions *and* each job's exact entry time
  into its current phase, and always polls the due job most likely to have finished since
  it was last seen: the best a non-clairvoyant rule could hope to learn;
- clairvoyant: knows when each job will finish (an upper bound no real poller can reach).

If even "informed" stays near round-robin, the p95 target of 0.6x cannot be met by any
prioritisation: the budget, not the order, bounds the lag.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from async_poller.outcome import TERMINAL
from async_poller.simulator.jobs import JobBook, JobTruth
from async_poller.simulator.settings import SimulatorConfig

PHASES = ("QUEUED", "PREPARING", "PROCESSING")


@dataclass(frozen=True)
class Shape:
    name: str
    description: str
    scale: float = 1.0
    spread: float = 0.6
    waves: int = 1


SHAPES = (
    Shape("burst-5m", "300 jobs at once, median 5 min"),
    Shape("burst-wide", "300 jobs at once, median 5 min, sigma 1.0", spread=1.0),
    Shape("backlog-5m", "6 waves 4 min apart, polling from the last", waves=6),
    Shape("burst-long", "300 jobs at once, median 20 min", scale=4.0),
)


def fleet(shape: Shape, seed: int, size: int = 300) -> tuple[SimulatorConfig, list[JobTruth]]:
    config = SimulatorConfig(
        seed=seed,
        spread=shape.spread,
        queued_s=20 * shape.scale,
        preparing_s=30 * shape.scale,
        processing_s=240 * shape.scale,
    )
    book = JobBook(config)
    per_wave = size // shape.waves
    jobs = [book.create(-240.0 * (shape.waves - 1 - i // per_wave)) for i in range(size)]
    return config, jobs


@dataclass
class Seen:
    job: JobTruth
    status: str | None = None
    asked: float = -math.inf
    due: float = 0.0
    step: int = 0


class Rule:
    """A polling rule: which job gets the next request slot."""

    def __init__(self, jobs: list[JobTruth], config: SimulatorConfig) -> None:
        self.live = {job.id: Seen(job) for job in jobs}
        self.config = config
        self.rng = random.Random(1)
        for index, seen in enumerate(self.live.values()):
            seen.due = index * 60 / 45  # first round in input order at the budget's pace

    def pick(self, now: float) -> Seen | None:
        due = [seen for seen in self.live.values() if seen.due <= now]
        return min(due, key=lambda s: self.key(s, now)) if due else None

    def key(self, seen: Seen, now: float) -> tuple[float, ...]:
        first_round = seen.asked == -math.inf  # as in _engine/turns.py: the first round goes first
        return (seen.due - (1e9 if first_round else 0.0),)

    def observe(self, seen: Seen, now: float, status: str) -> None:
        if status != seen.status:
            seen.status, seen.step = status, 0
        seen.asked = now
        if status in TERMINAL:
            del self.live[seen.job.id]
            return
        raw = min(120.0, 10.0 * 2**seen.step)
        seen.step += 1
        seen.due = now + min(120.0, max(10.0, raw * self.rng.uniform(0.8, 1.2)))


class RoundRobin(Rule):
    def pick(self, now: float) -> Seen | None:
        return min(self.live.values(), key=lambda s: s.asked, default=None)

    def observe(self, seen: Seen, now: float, status: str) -> None:
        seen.asked = now
        if status in TERMINAL:
            del self.live[seen.job.id]


class Informed(Rule):
    def key(self, seen: Seen, now: float) -> tuple[float, ...]:
        return (-self.chance_final(seen, now), seen.due)

    def chance_final(self, seen: Seen, now: float) -> float:
        """P(final by `now` | seen in `seen.status` at `seen.asked`), from the truth's
        distributions and the job's exact phase entry time."""
        if seen.status is None:
            return 1.0
        entered = seen.job.phase_at(seen.asked)[1]
        medians = dict(zip(PHASES, self._medians(), strict=True))
        rng = random.Random(hash((seen.job.id, seen.status, round(seen.asked))))
        hits, samples = 0, 64
        for _ in range(samples):
            at = entered
            for phase in PHASES[PHASES.index(seen.status) :]:
                duration = medians[phase] * math.exp(self.config.spread * rng.gauss(0, 1))
                while phase == seen.status and at + duration < seen.asked:
                    duration = medians[phase] * math.exp(self.config.spread * rng.gauss(0, 1))
                at += duration
            hits += at <= now
        return hits / samples

    def _medians(self) -> tuple[float, float, float]:
        return (self.config.queued_s, self.config.preparing_s, self.config.processing_s)


class Clairvoyant(Rule):
    def key(self, seen: Seen, now: float) -> tuple[float, ...]:
        final_at = seen.job.final_at
        return (0.0 if final_at <= now else 1.0, final_at)


RULES: dict[str, Callable[[list[JobTruth], SimulatorConfig], Rule]] = {
    "round-robin": RoundRobin,
    "earliest-overdue": Rule,
    "informed": Informed,
    "clairvoyant": Clairvoyant,
}


@dataclass
class Outcome:
    lags: list[float] = field(default_factory=list)
    requests: int = 0

    def p95(self) -> float:
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def replay(jobs: list[JobTruth], rule: Rule, budget_per_min: float = 45.0) -> Outcome:
    """One request every 60/budget seconds; lag from max(final, start) to detection."""
    outcome = Outcome()
    now, slot = 0.0, 60.0 / budget_per_min
    while rule.live and now < 6 * 3600:
        seen = rule.pick(now)
        if seen is not None:
            outcome.requests += 1
            status = seen.job.status_at(now)
            if status in TERMINAL:
                outcome.lags.append(now - max(seen.job.final_at, 0.0))
            rule.observe(seen, now, status)
        now += slot
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bound", description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    print("| fleet | seed | " + " | ".join(f"{name} p95 (x RR)" for name in RULES) + " |")
    print("|---|---|" + "---|" * len(RULES))
    for shape in SHAPES:
        for seed in args.seeds:
            config, jobs = fleet(shape, seed)
            results = {name: replay(jobs, make(jobs, config)) for name, make in RULES.items()}
            base = results["round-robin"].p95()
            cells = [f"{r.p95():.0f} s ({r.p95() / base:.2f})" for r in results.values()]
            print(f"| {shape.name} | {seed} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
