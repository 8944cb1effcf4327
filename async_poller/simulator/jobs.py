"""Job lifecycles: each job's whole timeline is drawn when it is created, from a seeded stream.

QUEUED -> PREPARING -> PROCESSING -> COMPLETED | FAILED | CANCELLED, with CANCELLED also
possible straight from QUEUED. Phase durations are lognormal around the configured medians.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from ..errors import ConfigError
from ..outcome import ACTIVE, TERMINAL
from . import fleet
from .settings import SimulatorConfig

__all__ = ["InstanceTruth", "JobBook", "JobTruth"]

_OUTCOMES: Final = ("COMPLETED", "FAILED", "CANCELLED")
_MAX_JOB_ID: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class InstanceTruth:
    """One cloud instance of a job and how its install ends."""

    instance_id: str
    final_status: str
    failure_reason: str | None = None

    def status_at(self, job_status: str) -> str:
        """The instance's status while its job is in `job_status`: the job's until it ends."""
        return job_status if job_status in ACTIVE else self.final_status


@dataclass(frozen=True, slots=True, kw_only=True)
class JobTruth:
    """A job's true timeline: `(status, at)` pairs, `at` in simulated `clock.now()` seconds."""

    id: int
    cloud_provider: str
    created_at: float
    timeline: tuple[tuple[str, float], ...]
    failure_reason: str | None
    """Set when the job ends FAILED or CANCELLED."""
    instances: tuple[InstanceTruth, ...]

    @property
    def final_status(self) -> str:
        return self.timeline[-1][0]

    @property
    def final_at(self) -> float:
        return self.timeline[-1][1]

    def phase_at(self, at: float) -> tuple[str, float]:
        """The status at time `at` and the time it was entered."""
        current = self.timeline[0]
        for entry in self.timeline[1:]:
            if entry[1] > at:
                break
            current = entry
        return current

    def status_at(self, at: float) -> str:
        """The status at time `at`."""
        return self.phase_at(at)[0]


class JobBook:
    """Every job the simulator knows, created reproducibly for a seed and creation order.

    Each job draws its own seed from the book's stream, so a job's lifecycle does not depend
    on how often other jobs were asked about.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self._config = config
        self._rng = random.Random(f"{config.seed}/jobs")
        # Ids look like a real 64-bit key: 19 digits (beyond JavaScript's 2**53), increasing
        # with gaps, so never reused.
        self._last_id = self._rng.randrange(10**18, 2 * 10**18)
        self._jobs: dict[int, JobTruth] = {}

    def create(
        self,
        now: float,
        *,
        cloud_provider: str | None = None,
        instance_ids: Sequence[str] | None = None,
        instances: int | None = None,
        outcome: str | None = None,
        queued_s: float | None = None,
        preparing_s: float | None = None,
        processing_s: float | None = None,
    ) -> JobTruth:
        """Create one job at time `now`; any argument given fixes that part of its fate."""
        if outcome is not None and outcome not in TERMINAL:
            raise ConfigError(f"outcome must be one of {', '.join(_OUTCOMES)}, got {outcome!r}")
        if (instances is not None and instances < 1) or (
            instance_ids is not None and not instance_ids
        ):
            raise ConfigError("a job needs at least one instance")
        self._last_id += self._rng.randrange(1, 5000)
        if self._last_id > _MAX_JOB_ID:
            raise ConfigError("the simulator ran out of 64-bit job ids")
        rng = random.Random(self._rng.getrandbits(64))
        config = self._config
        provider = cloud_provider or fleet.pick_provider(rng)
        if instance_ids is None:
            count = instances if instances is not None else rng.randint(1, 5)
            instance_ids = fleet.instance_ids(rng, provider, count)
        outcome = outcome or rng.choices(_OUTCOMES, weights=config.outcomes)[0]

        queued = self._duration(rng, queued_s, config.queued_s)
        timeline: tuple[tuple[str, float], ...]
        if outcome == "CANCELLED" and rng.random() < 0.5:
            timeline = (("QUEUED", now), ("CANCELLED", now + queued))
        else:
            preparing_at = now + queued
            processing_at = preparing_at + self._duration(rng, preparing_s, config.preparing_s)
            final_at = processing_at + self._duration(rng, processing_s, config.processing_s)
            timeline = (
                ("QUEUED", now),
                ("PREPARING", preparing_at),
                ("PROCESSING", processing_at),
                (outcome, final_at),
            )
        truths, reason = _instances_and_reason(rng, provider, instance_ids, outcome)
        job = JobTruth(
            id=self._last_id,
            cloud_provider=provider,
            created_at=now,
            timeline=timeline,
            failure_reason=reason,
            instances=truths,
        )
        self._jobs[job.id] = job
        return job

    def _duration(self, rng: random.Random, fixed: float | None, median: float) -> float:
        # Draw even when fixed, so that fixing one phase leaves the others' draws unchanged.
        factor = math.exp(self._config.spread * rng.gauss(0.0, 1.0))
        return fixed if fixed is not None else median * factor

    def get(self, job_id: int) -> JobTruth | None:
        return self._jobs.get(job_id)

    def __iter__(self) -> Iterator[JobTruth]:
        return iter(self._jobs.values())

    def __len__(self) -> int:
        return len(self._jobs)

    def __repr__(self) -> str:
        return f"JobBook(jobs={len(self._jobs)}, seed={self._config.seed})"


def _instances_and_reason(
    rng: random.Random, provider: str, instance_ids: Sequence[str], outcome: str
) -> tuple[tuple[InstanceTruth, ...], str | None]:
    if outcome == "CANCELLED":
        return tuple(InstanceTruth(i, "CANCELLED") for i in instance_ids), fleet.cancel_reason(rng)
    if outcome == "COMPLETED":
        return tuple(InstanceTruth(i, "COMPLETED") for i in instance_ids), None
    failed = set(rng.sample(range(len(instance_ids)), rng.randint(1, len(instance_ids))))
    truths = tuple(
        InstanceTruth(i, "FAILED", fleet.failure_reason(rng, provider, i))
        if n in failed
        else InstanceTruth(i, "COMPLETED")
        for n, i in enumerate(instance_ids)
    )
    reasons = [t.failure_reason for t in truths if t.failure_reason]
    if len(reasons) == 1:
        return truths, reasons[0]
    return truths, f"{len(reasons)} of {len(truths)} instances failed; first: {reasons[0]}"
