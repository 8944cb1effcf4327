"""The request log: what arrived, when, and how it was answered (ground truth for tests)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RequestLog", "RequestRecord", "max_in_window"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRecord:
    """One API request as the simulator saw it.

    `http_status` is None when no status line was sent (`hang`, `reset_before`);
    `retry_after` is the delay announced in seconds, when a 429/503 carried a valid one;
    `refused` is True when the rate limiter turned the request away (with
    `SimulatorConfig.throttle_status`), and `fault` names the injected fault, if any: a
    request is never both.
    """

    at: float
    method: str
    path: str
    job_id: int | None
    http_status: int | None = None
    retry_after: float | None = None
    refused: bool = False
    fault: str | None = None


class RequestLog:
    """Records in arrival order; a record is written on arrival and completed on answer."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def arrive(self, at: float, method: str, path: str, job_id: int | None) -> int:
        """Log an arrival; returns the index to `answer` later."""
        self.records.append(RequestRecord(at=at, method=method, path=path, job_id=job_id))
        return len(self.records) - 1

    def answer(
        self,
        index: int,
        http_status: int | None,
        *,
        retry_after: float | None = None,
        refused: bool = False,
        fault: str | None = None,
    ) -> None:
        """Record how the request at `index` is answered."""
        self.records[index] = dataclasses.replace(
            self.records[index],
            http_status=http_status,
            retry_after=retry_after,
            refused=refused,
            fault=fault,
        )

    def counts_by_status(self) -> dict[str, int]:
        """How many requests got each HTTP status; `none` counts those that got no answer."""
        counts = Counter(str(r.http_status or "none") for r in self.records)
        return dict(sorted(counts.items()))

    def counts_by_fault(self) -> dict[str, int]:
        return dict(sorted(Counter(r.fault for r in self.records if r.fault).items()))

    def refusals(self) -> int:
        """How many requests the rate limiter refused."""
        return sum(r.refused for r in self.records)

    def max_in_window(self, window: float, *, admitted_only: bool = False) -> int:
        """The most requests that arrived in any window of `window` seconds.

        Every request counts, those the rate limiter refused included, as a client's rate
        promise covers everything it sends; `admitted_only` leaves the refusals out (and
        keeps injected faults, which the limiter admitted).
        """
        arrivals = [r.at for r in self.records if not (admitted_only and r.refused)]
        return max_in_window(arrivals, window)

    def __repr__(self) -> str:
        return f"RequestLog(records={len(self.records)})"


def max_in_window(arrivals: Sequence[float], window: float) -> int:
    """The most arrivals within any window of `window` seconds, from sorted arrival times.

    A window is half-open like the rate limiter's: arrivals `window` apart are in different
    windows.
    """
    most = 0
    first = 0
    for last, at in enumerate(arrivals):
        while arrivals[first] <= at - window:
            first += 1
        most = max(most, last - first + 1)
    return most
