"""Prometheus metrics of a run, written at its end for node_exporter's textfile collector.

Every value describes the last run, so every metric is a gauge, as Prometheus advises for
batch jobs. `write_to_textfile` writes a temporary file beside `path` and renames it over
`path`, so the collector never reads half a file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

from ..events import Summary
from ..logs import get_logger

__all__ = ["LAST_SUCCESS", "write_metrics", "write_metrics_file"]

_log = get_logger()

NAMESPACE: Final = "async_poller"
LAST_SUCCESS: Final = f"{NAMESPACE}_last_success_timestamp_seconds"


def write_metrics_file(
    path: Path, summary: Summary, requests_by_outcome: Mapping[str, int], now: float
) -> None:
    """`write_metrics`, with a failure logged rather than raised: the run's events are
    written already, and a metrics file must not change its outcome."""
    try:
        write_metrics(path, summary, requests_by_outcome=dict(requests_by_outcome), now=now)
    except OSError as error:
        _log.error("metrics_not_written", path=str(path), reason=error.strerror)


def write_metrics(
    path: Path, summary: Summary, *, requests_by_outcome: Mapping[str, int], now: float
) -> None:
    """Write the metrics of the run that `summary` describes to `path`, atomically.

    `requests_by_outcome` counts HTTP requests by outcome (ok, http_429, timeout, ...);
    `now` is the wall-clock time in epoch seconds. The last-success timestamp is `now` when
    every job completed (exit code 0), and otherwise carried over from the file at `path`.
    """
    registry = CollectorRegistry()

    def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, documentation, labels, namespace=NAMESPACE, registry=registry)

    jobs = gauge("jobs", "Jobs of the last run by result status (pending: no result)", ["status"])
    for status, count in summary.counts.items():
        jobs.labels(status=status).set(count)
    requests = gauge("requests", "HTTP requests of the last run by outcome", ["outcome"])
    for outcome, count in requests_by_outcome.items():
        requests.labels(outcome=outcome).set(count)
    gauge("retries", "Failed requests retried in the last run").set(summary.retries)
    gauge("throttles", "429 or 503 Retry-After answers in the last run").set(summary.throttled)
    gauge("run_duration_seconds", "Duration of the last run").set(summary.duration_s)
    gauge("exit_code", "Exit code of the last run").set(summary.exit_code)
    gauge("last_run_timestamp_seconds", "When the last run ended").set(now)
    last_success = now if summary.exit_code == 0 else _previous_last_success(path)
    if last_success is not None:
        gauge("last_success_timestamp_seconds", "When a run last completed every job").set(
            last_success
        )
    write_to_textfile(str(path), registry)


def _previous_last_success(path: Path) -> float | None:
    """The last-success timestamp in an earlier metrics file, if there is one."""
    try:
        text = path.read_text("utf-8")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS:
                    return sample.value
    # No file yet, or one we cannot parse: the metric then starts afresh rather than failing
    # a run whose events are already written.
    except (OSError, ValueError):
        return None
    return None
