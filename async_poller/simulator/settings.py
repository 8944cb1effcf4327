"""`SimulatorConfig`: every knob of the simulated Lucidity API, in simulated seconds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final, Literal

from ..errors import ConfigError
from .faultplan import FaultPlan
from .ratelimit import normalise_limiter

__all__ = ["THROTTLE_STATUSES", "Envelope", "SimulatorConfig"]

Envelope = Literal["A", "B", "C"]

THROTTLE_STATUSES: Final = (429, 503)
"""What a rate limiter may answer: 429 like the Lucidity API, or 503 like nginx `limit_req`."""


@dataclass(frozen=True, kw_only=True)
class SimulatorConfig:
    """How the simulated API behaves. Durations are simulated seconds (see `time_scale`)."""

    seed: int = 0
    """Seeds job ids, lifecycles, UNKNOWN blips and faults."""
    time_scale: float = 1.0
    """Simulated seconds per real second (60: a minute per second), unless a clock is given."""
    rate_limit: int = 50
    """Requests allowed per `rate_window` seconds (docs/api-contract.md: 50/min)."""
    rate_window: float = 60.0
    limiter: str = "window"
    """How the rate limit is enforced: `window`, at most `rate_limit` requests in any sliding
    window (the Lucidity API); `bucket:B`, a token bucket holding B requests and refilled at
    the rate limit (an API gateway: `bucket:1` is nginx `limit_req` without burst)."""
    throttle_status: int = 429
    """The status of a request the limiter refuses: 429, or 503 as nginx answers."""
    retry_after: bool = True
    """Whether a refusal says when to come back (Retry-After, whole seconds, at least 1)."""
    token_ttl: float = 900.0
    """Access-token lifetime (docs/api-contract.md: 15 minutes)."""
    refresh_token: str | None = None
    """The one refresh token the API accepts; a random one when None."""
    queued_s: float = 20.0
    """Median time a job spends QUEUED (phase durations are lognormal around their medians)."""
    preparing_s: float = 30.0
    processing_s: float = 240.0
    spread: float = 0.6
    """Sigma of the lognormal phase durations; 0 makes every duration its median."""
    outcomes: tuple[float, float, float] = (0.85, 0.10, 0.05)
    """Relative weights of COMPLETED, FAILED and CANCELLED."""
    unknown_rate: float = 0.02
    """Probability that a status answer for a job still under way says UNKNOWN."""
    envelope: Envelope = "A"
    """Response envelope of the status endpoint (docs/api-contract.md, Response bodies)."""
    faults: FaultPlan = field(default_factory=FaultPlan)

    def __post_init__(self) -> None:
        for name in ("time_scale", "rate_window", "token_ttl"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be positive and finite, got {value!r}")
        for name in ("queued_s", "preparing_s", "processing_s", "spread"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be non-negative and finite, got {value!r}")
        if self.rate_limit < 1:
            raise ConfigError(f"rate_limit must be at least 1, got {self.rate_limit}")
        if len(self.outcomes) != 3 or min(self.outcomes) < 0 or not sum(self.outcomes) > 0:
            raise ConfigError(
                f"outcomes must be three non-negative weights, not all zero: {self.outcomes!r}\n"
                "HINT: weights of COMPLETED, FAILED, CANCELLED, e.g. (0.85, 0.10, 0.05)"
            )
        if not 0.0 <= self.unknown_rate <= 1.0:
            raise ConfigError(f"unknown_rate must be between 0 and 1, got {self.unknown_rate!r}")
        object.__setattr__(self, "limiter", normalise_limiter(self.limiter))
        if self.throttle_status not in THROTTLE_STATUSES:
            raise ConfigError(
                f"throttle_status must be 429 or 503, got {self.throttle_status!r}\n"
                "HINT: 429 Too Many Requests (the API), 503 Service Unavailable (nginx limit_req)"
            )
        if self.envelope not in ("A", "B", "C"):
            raise ConfigError(f"envelope must be A, B or C, got {self.envelope!r}")
        if self.refresh_token is not None and not self.refresh_token.strip():
            raise ConfigError("refresh_token must not be empty")
