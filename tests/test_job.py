"""One job's state machine: how long malformed answers may last before the job ends ERROR."""

from __future__ import annotations

from async_poller._engine.job import GiveUpLimits, JobTracker, Wait
from async_poller._lucidity.responses import JobState, RetryLater
from async_poller.outcome import FinalStatus

MAINTENANCE = RetryLater("bad_response", 200, "body is not JSON: <html>maintenance")


def test_malformed_answers_end_the_job_only_after_the_window() -> None:
    """Ten malformed answers within the window keep the job going; one past it ends ERROR."""
    job = JobTracker(1, GiveUpLimits(bad_response_window=120.0))
    for second in range(0, 100, 10):
        assert job.observe(MAINTENANCE, float(second)).ending is None
    step = job.observe(MAINTENANCE, 120.0)
    assert step.ending is not None
    assert (FinalStatus.ERROR, MAINTENANCE.message) == (step.ending.status, step.ending.reason)


def test_a_good_answer_starts_the_window_over() -> None:
    """A status answer between two runs of malformed answers resets the clock on them."""
    job = JobTracker(1, GiveUpLimits(bad_response_window=120.0))
    job.observe(MAINTENANCE, 0.0)
    job.observe(MAINTENANCE, 100.0)
    assert Wait.RESTART == job.observe(JobState("QUEUED"), 110.0).wait
    assert job.observe(MAINTENANCE, 130.0).ending is None
    assert job.observe(MAINTENANCE, 249.0).ending is None
    assert job.observe(MAINTENANCE, 250.0).ending is not None


def test_other_failures_neither_count_nor_break_the_window() -> None:
    """A 503 in the middle of a maintenance window does not start it over."""
    job = JobTracker(1, GiveUpLimits(bad_response_window=120.0))
    job.observe(MAINTENANCE, 0.0)
    assert job.observe(RetryLater("http", 503, "HTTP 503"), 60.0).ending is None
    assert job.observe(MAINTENANCE, 120.0).ending is not None


def test_bad_and_good_answers_in_turn_never_end_the_job() -> None:
    """Malformed answers, then a good one, again and again for ten windows: every good
    answer starts the window over, also one that repeats the status (no transition), so
    the job never ends ERROR however long the flapping lasts."""
    job = JobTracker(1, GiveUpLimits(bad_response_window=120.0))
    job.observe(JobState("PROCESSING"), 0.0)
    for start in range(10, 1200, 100):
        assert job.observe(MAINTENANCE, float(start)).ending is None
        assert job.observe(MAINTENANCE, start + 80.0).ending is None
        step = job.observe(JobState("PROCESSING"), start + 90.0)
        assert (step.transition, step.ending) == (None, None)
    assert not job.done
