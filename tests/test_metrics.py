"""Prometheus metrics: the textfile content, atomic writing, and the last-success carry-over."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from async_poller._engine.metrics import LAST_SUCCESS, write_metrics
from async_poller.events import Summary

T0 = 1_800_000_000.0


def summary(exit_code: int, **counts: int) -> Summary:
    """A run summary with these counts by status (COMPLETED, FAILED, pending default to 0)."""
    return Summary(
        ts="2027-01-15T08:00:00.000Z",
        total=sum(counts.values()),
        counts={"COMPLETED": 0, "FAILED": 0, "pending": 0, **counts},
        requests=12,
        retries=2,
        throttled=1,
        rate="45/min",
        duration_s=42.5,
        exit_code=exit_code,
    )


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample in the file, parsed by prometheus_client: (name, labels) -> value."""
    families = text_string_to_metric_families(path.read_text("utf-8"))
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
    }


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where the metrics file goes (named as the textfile collector wants)."""
    return tmp_path / "async_poller.prom"


def test_a_run_writes_every_metric(path: Path) -> None:
    """Jobs by status, requests by outcome, retries, throttles, duration, exit code, times."""
    write_metrics(
        path,
        summary(1, COMPLETED=3, FAILED=1, pending=2),
        requests_by_outcome={"ok": 9, "http_429": 1, "timeout": 2},
        now=T0,
    )
    assert {
        ("async_poller_jobs", (("status", "COMPLETED"),)): 3.0,
        ("async_poller_jobs", (("status", "FAILED"),)): 1.0,
        ("async_poller_jobs", (("status", "pending"),)): 2.0,
        ("async_poller_requests", (("outcome", "ok"),)): 9.0,
        ("async_poller_requests", (("outcome", "http_429"),)): 1.0,
        ("async_poller_requests", (("outcome", "timeout"),)): 2.0,
        ("async_poller_retries", ()): 2.0,
        ("async_poller_throttles", ()): 1.0,
        ("async_poller_run_duration_seconds", ()): 42.5,
        ("async_poller_exit_code", ()): 1.0,
        ("async_poller_last_run_timestamp_seconds", ()): T0,
    } == samples(path)


def test_success_sets_the_last_success_timestamp(path: Path) -> None:
    """A run where every job completed records `now` as the last success."""
    write_metrics(path, summary(0, COMPLETED=2), requests_by_outcome={}, now=T0)
    assert T0 == samples(path)[(LAST_SUCCESS, ())]


def test_a_failed_run_carries_the_last_success_over(path: Path) -> None:
    """A later unsuccessful run keeps the earlier success time, and updates everything else."""
    write_metrics(path, summary(0, COMPLETED=2), requests_by_outcome={}, now=T0)
    write_metrics(path, summary(3, pending=2), requests_by_outcome={}, now=T0 + 600)
    written = samples(path)
    assert (T0, T0 + 600, 3.0) == (
        written[(LAST_SUCCESS, ())],
        written[("async_poller_last_run_timestamp_seconds", ())],
        written[("async_poller_exit_code", ())],
    )


def test_no_success_yet_means_no_last_success_metric(path: Path) -> None:
    """Without any successful run, the metric is absent rather than a fake 1970 date."""
    write_metrics(path, summary(1, FAILED=1), requests_by_outcome={}, now=T0)
    assert (LAST_SUCCESS, ()) not in samples(path)


def test_a_damaged_metrics_file_is_replaced(path: Path) -> None:
    """An unparsable earlier file does not fail the run; it is replaced whole."""
    path.write_text("async_poller_last_success_timestamp_seconds{ garbage\n")
    write_metrics(path, summary(1, FAILED=1), requests_by_outcome={}, now=T0)
    assert (LAST_SUCCESS, ()) not in samples(path)
    assert 1.0 == samples(path)[("async_poller_exit_code", ())]


def test_writing_leaves_no_temporary_file(path: Path) -> None:
    """The file is written beside its target and renamed, leaving only the target."""
    write_metrics(path, summary(0), requests_by_outcome={}, now=T0)
    write_metrics(path, summary(0), requests_by_outcome={}, now=T0 + 1)
    assert [path] == list(path.parent.iterdir())
