"""The rate in force: lowered on every overload signal, regained along a cubic curve.

CUBIC's shape (RFC 9438), as the AWS SDKs' adaptive retry mode uses it for request rates:
a refusal cuts the rate to `beta` times what it was, then the rate grows back along a cubic
that is steep at first, flat around the rate that was refused (so it lingers just below the
server's limit instead of hammering it), and steep again beyond it, up to the configured
rate. Recovery is a curve in time, never a step: pacing spreads it over every request.

Pure: times are passed in, so the curve is tested without a clock.
"""

from __future__ import annotations

import math

__all__ = ["AdaptiveRate"]


class AdaptiveRate:
    """A request rate (per second) between `floor` and `ceiling`, cut on overload.

    `recovery` is how long the curve takes to climb back to the rate that was refused;
    about one rate-limit window lets a sliding-window server forget the overload first.
    `refused_at`, `cut_at` and `signalled_at` are the whole state, so that processes that
    share a budget can share the curve too.
    """

    def __init__(
        self,
        ceiling: float,
        *,
        recovery: float,
        beta: float = 0.7,
        floor_share: float = 0.05,
    ) -> None:
        self.ceiling = ceiling
        self.floor = ceiling * floor_share
        self._recovery = recovery
        self._beta = beta
        self.refused_at = ceiling  # the rate in force when last refused (CUBIC's W_max)
        self.cut_at = -math.inf  # when the curve starts (the end of any pause)
        self.signalled_at = -math.inf  # when the last cut was decided

    def at(self, now: float) -> float:
        """The rate in force at `now`."""
        since = max(0.0, now - self.cut_at)  # infinite before the first cut: the ceiling
        scale = (1 - self._beta) * self.refused_at / self._recovery**3
        rate = self.refused_at + scale * (since - self._recovery) ** 3
        return max(self.floor, min(self.ceiling, rate))

    def cut(self, now: float, *, sent_at: float, resume_at: float) -> bool:
        """A request sent at `sent_at` was refused at `now`: lower the rate, once per episode.

        Requests sent before the last cut were paced by the old rate, so their refusals say
        nothing new: they are ignored (one cut per round trip, as TCP does). The curve starts
        at `resume_at`, when any pause the server asked for ends. False when ignored.
        """
        if sent_at <= self.signalled_at:
            return False
        self.refused_at = self.at(now)
        self.signalled_at = now
        self.cut_at = max(now, resume_at)
        return True

    def __repr__(self) -> str:
        return (
            f"AdaptiveRate(ceiling={self.ceiling:g}/s, refused_at={self.refused_at:g}/s, "
            f"cut_at={self.cut_at:g})"
        )
