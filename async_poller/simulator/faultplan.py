"""Which fault, if any, a request gets: the seeded, deterministic plan (pure, no I/O).

A fault kind targets one endpoint: the status endpoint, or (`token_*`) the refresh endpoint.
How each kind is acted out lives in `faults.py`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, NamedTuple

from ..errors import ConfigError

__all__ = ["FAULT_KINDS", "FaultPicker", "FaultPlan", "FaultWindow", "Target", "target_of"]

Target = Literal["status", "refresh"]

RETRY_AFTER_FORMS: Final = ("seconds", "http_date", "rfc850_date", "asctime_date", "invalid")
"""How an injected `Retry-After` is written: delta-seconds, the three HTTP-date forms, junk."""

_STATUS_FAULTS: Final = (
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    *(f"http_{code}_retry_after_{form}" for code in (429, 503) for form in RETRY_AFTER_FORMS),
    "hang",
    "slow_body",
    "reset_before",
    "reset_mid_body",
    "truncated_json",
    "html_error",
    "oversized_body",
    "wrong_id",
    "unknown_status",
    "status_backwards",
)
_REFRESH_FAULTS: Final = ("token_500", "token_hang")

FAULT_KINDS: Final[frozenset[str]] = frozenset(_STATUS_FAULTS + _REFRESH_FAULTS)
"""Every fault kind the simulator can inject."""


def target_of(kind: str) -> Target:
    """The endpoint a fault kind applies to."""
    return "refresh" if kind in _REFRESH_FAULTS else "status"


class FaultWindow(NamedTuple):
    """Every request to the kind's endpoint between `start_s` and `end_s` gets `kind`.

    Times are simulated seconds since the simulator started; `end_s` may be `math.inf`.
    """

    start_s: float
    end_s: float
    kind: str


@dataclass(frozen=True, kw_only=True)
class FaultPlan:
    """What goes wrong, and when: per-request probabilities plus scripted windows.

    `rates` maps a fault kind to the probability that one request gets it; the rates of one
    endpoint's kinds must add up to at most 1. A scripted window wins over the rates.
    """

    rates: Mapping[str, float] = field(default_factory=dict)
    windows: tuple[tuple[float, float, str], ...] = ()
    retry_after_s: float = 5.0
    """The delay an injected 429/503 announces, in simulated seconds."""
    hang_s: float = 3600.0
    """How long `hang` and `token_hang` stall before dropping the connection."""
    slow_body_s: float = 8.0
    """How long `slow_body` takes to trickle out a body."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.rates) - FAULT_KINDS)
        unknown += sorted({w[2] for w in self.windows} - FAULT_KINDS)
        if unknown:
            raise ConfigError(
                f"unknown fault kind(s): {', '.join(unknown)}\n"
                f"HINT: choose from {', '.join(sorted(FAULT_KINDS))}"
            )
        for kind, rate in self.rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"fault rate for {kind} must be between 0 and 1, got {rate!r}")
        for target in ("status", "refresh"):
            total = sum(p for k, p in self.rates.items() if target_of(k) == target)
            if total > 1.0 + 1e-9:
                raise ConfigError(
                    f"fault rates for the {target} endpoint add up to {total:g}, above 1\n"
                    "HINT: each request gets at most one fault; lower some rates"
                )
        windows = tuple(FaultWindow(*w) for w in self.windows)
        for w in windows:
            if not 0.0 <= w.start_s < w.end_s:
                raise ConfigError(f"fault window {tuple(w)} must satisfy 0 <= start_s < end_s")
        for name in ("retry_after_s", "hang_s", "slow_body_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite, non-negative duration, got {value!r}")
        # Freeze a copy, so that a caller mutating their dict cannot change a running plan.
        object.__setattr__(self, "rates", MappingProxyType(dict(self.rates)))
        object.__setattr__(self, "windows", windows)


class FaultPicker:
    """Draws the fault for each request from the plan, reproducibly for a seed.

    Each endpoint has its own random stream, so token refreshes do not shift which status
    requests get faults.
    """

    def __init__(self, plan: FaultPlan, seed: int) -> None:
        self.plan = plan
        self._streams = {t: random.Random(f"{seed}/faults/{t}") for t in ("status", "refresh")}
        self._rates = {
            t: sorted((k, p) for k, p in plan.rates.items() if target_of(k) == t and p > 0)
            for t in ("status", "refresh")
        }

    def pick(self, target: Target, elapsed: float) -> str | None:
        """The fault for a request to `target` arriving `elapsed` seconds after start."""
        for start_s, end_s, kind in self.plan.windows:
            if target_of(kind) == target and start_s <= elapsed < end_s:
                return kind
        rates = self._rates[target]
        if not rates:
            return None
        draw = self._streams[target].random()
        for kind, rate in rates:
            if draw < rate:
                return kind
            draw -= rate
        return None

    def __repr__(self) -> str:
        return f"FaultPicker(rates={dict(self.plan.rates)}, windows={len(self.plan.windows)})"
