"""Progress on stderr: what the view counts, what a frame shows, and when each one appears."""

from __future__ import annotations

import io
import os
import pty
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager

import orjson
import pytest
import structlog
from rich.console import Console
from structlog.testing import capture_logs

from async_poller._engine.control import Snapshot
from async_poller._engine.poll import stream_events
from async_poller._lucidity.responses import Answer, JobState
from async_poller._lucidity.transport import ThrottleListener
from async_poller._pacing.budget import RateBudget
from async_poller.cli.live import LiveProgress, render
from async_poller.cli.progress import Heartbeat, RunView, open_status, shows_progress
from async_poller.clock import Clock
from async_poller.config import Config, Credentials, parse_rate
from async_poller.events import Result, Start, Summary
from async_poller.ids import JobIds
from async_poller.logs import configure_logging
from async_poller.outcome import FinalStatus
from async_poller.redact import Secret
from async_poller.testing import VirtualClock

BUDGET = parse_rate("45/min")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(autouse=True)
def _pristine_structlog() -> Iterator[None]:
    """Tests here may configure structlog globally; put it back as it was found."""
    yield
    structlog.reset_defaults()


def snapshot(elapsed_s: float, requests: int, **fields: object) -> Snapshot:
    values: dict[str, object] = {
        "elapsed_s": elapsed_s,
        "deadline_in_s": 3600.0 - elapsed_s,
        "total": 50,
        "counts": {},
        "pending": 50,
        "requests": requests,
        "rate": "45/min",
        "paused_for_s": 0.0,
        "waiting": 0,
    }
    return Snapshot(**(values | fields))  # type: ignore[arg-type]


def start(jobs: int) -> Start:
    return Start(
        ts="t", jobs=jobs, invalid=0, duplicates=0, base_url="u", concurrency=8, rate="45/min"
    )


def result(job_id: int, status: str) -> Result:
    return Result(
        ts="t", job_id=job_id, status=status, last_status=status, polls=3, elapsed_s=1.0,
        event_id="e",
    )  # fmt: skip


def test_view_follows_events_between_snapshots() -> None:
    """start sets the total, each result moves a job from pending to its status."""
    view = RunView(BUDGET)
    view.observe(start(3))
    view.observe(result(1, "COMPLETED"))
    view.observe(result(2, "FAILED"))
    assert (3, 2, 1) == (view.total, view.final, view.pending)
    assert Counter({"COMPLETED": 1, "FAILED": 1}) == view.counts


def test_summary_settles_the_view() -> None:
    """The summary's counts, pending jobs and request count are final."""
    view = RunView(BUDGET)
    view.observe(start(3))
    counts = {"COMPLETED": 2, "FAILED": 0, "pending": 1}
    view.observe(
        Summary(ts="t", total=3, counts=counts, requests=9, retries=0, throttled=0,
                rate="45/min", duration_s=61.0, exit_code=3)
    )  # fmt: skip
    assert (2, 1, 9, True) == (view.final, view.pending, view.requests, view.done)


def test_requests_in_the_first_minute_are_all_counted() -> None:
    """Before a minute has passed, the last minute is the run so far."""
    view = RunView(BUDGET)
    assert view.last_minute() is None
    view.update(snapshot(30.0, 20))
    assert 20 == view.last_minute()


def test_requests_in_the_last_minute_only() -> None:
    """Later on, only the requests of the last minute count (never more than the budget)."""
    view = RunView(BUDGET)
    for second in range(0, 181, 5):
        view.update(snapshot(float(second), second // 2))  # 30 requests a minute
    assert 30 == view.last_minute()


def test_ticks_over_a_minute_apart_average_per_minute() -> None:
    """With a heartbeat of 5 minutes, the rate is the average since the last one."""
    view = RunView(BUDGET)
    view.update(snapshot(300.0, 100))
    view.update(snapshot(600.0, 250))
    assert 30 == view.last_minute()


def test_throttled_while_paused_or_on_a_lowered_budget() -> None:
    """A pause, or a budget lowered after a 429, both count as throttled."""
    view = RunView(BUDGET)
    view.update(snapshot(10.0, 5))
    assert not view.throttled
    view.update(snapshot(11.0, 5, paused_for_s=12.0, rate="22/min"))
    assert view.throttled
    view.update(snapshot(30.0, 6, rate="22/min"))
    assert view.throttled
    assert "22/min" == view.rate


def frame_text(view: RunView) -> str:
    console = Console(width=160, record=True, file=io.StringIO(), color_system=None)
    console.print(render(view))
    return console.export_text()


def test_frame_shows_what_a_person_needs() -> None:
    """Jobs final by status, pending, requests against the budget, throttling, deadline."""
    view = RunView(BUDGET)
    view.update(
        snapshot(
            48.0, 41, counts={"COMPLETED": 10, "FAILED": 2}, pending=38, waiting=3,
            paused_for_s=12.0, rate="22/min", deadline_in_s=2832.0,
        )
    )  # fmt: skip
    text = frame_text(view)
    for expected in (
        "12/50 final",
        "COMPLETED 10",
        "FAILED 2",
        "38 pending",
        "requests 41, 41 in the last minute",
        "3 waiting",
        "throttled: paused 12s, budget 22/min",
        "deadline in 47m12s",
    ):
        assert expected in text


def test_frame_without_throttling_and_when_done() -> None:
    """A quiet run says so; a finished one shows its duration instead of the deadline."""
    view = RunView(BUDGET)
    view.update(snapshot(30.0, 10))
    assert "budget 45/min, not throttled" in frame_text(view)
    view.update(snapshot(31.0, 11, rate="22/min"))
    assert "budget 22/min (lowered from 45/min)" in frame_text(view)
    view.observe(
        Summary(ts="t", total=50, counts={"COMPLETED": 50, "pending": 0}, requests=99,
                retries=0, throttled=0, rate="45/min", duration_s=125.0, exit_code=0)
    )  # fmt: skip
    assert "done in 2m5s" in frame_text(view)
    assert "deadline" not in frame_text(view)


def test_live_frame_keeps_log_lines_whole(capsys: pytest.CaptureFixture[str]) -> None:
    """A log line during the display prints above the frame, intact, and nothing on stdout."""
    stream = io.StringIO()
    configure_logging(log_format="json", stream=stream)
    long_value = "x" * 300
    with LiveProgress(RunView(BUDGET), stream, tick_s=1.0) as live:
        live.observe(start(50))
        live.on_tick(snapshot(1.0, 2))
        structlog.get_logger().warning("budget_short", detail=long_value)
        live.on_tick(snapshot(2.0, 4))
    text = ANSI.sub("", stream.getvalue())
    assert f'"detail":"{long_value}"' in text, "the log line was cut or wrapped"
    assert text.index("budget_short") < text.rindex("requests 4,"), "the frame comes back below"
    assert "" == capsys.readouterr().out


def test_no_frame_before_the_run_starts() -> None:
    """An error before `start` (a held lock, say) leaves no empty frame behind."""
    stream = io.StringIO()
    with LiveProgress(RunView(BUDGET), stream, tick_s=1.0):
        pass
    assert "" == stream.getvalue()


def test_progress_mode_decides_the_display(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto shows it only on a capable terminal; always and never are what they say."""
    controller, follower = pty.openpty()
    terminal = os.fdopen(follower, "w")
    try:
        monkeypatch.setenv("TERM", "xterm")
        assert shows_progress("auto", terminal)
        assert not shows_progress("auto", io.StringIO())
        assert shows_progress("always", io.StringIO())
        assert not shows_progress("never", terminal)
        monkeypatch.setenv("TERM", "dumb")
        assert not shows_progress("auto", terminal)
    finally:
        terminal.close()
        os.close(controller)


def test_open_status_picks_heartbeat_without_a_terminal() -> None:
    """Without a terminal a heartbeat ticks every heartbeat_s; 0 means no status at all."""
    with open_status("auto", heartbeat_s=60.0, rate=BUDGET, stream=io.StringIO()) as status:
        assert isinstance(status, Heartbeat)
        assert 60.0 == status.tick_s
    with open_status("auto", heartbeat_s=0, rate=BUDGET, stream=io.StringIO()) as status:
        assert status is None
    with open_status(
        "always", heartbeat_s=60.0, time_scale=60.0, rate=BUDGET, stream=io.StringIO()
    ) as status:
        assert isinstance(status, LiveProgress)
        assert 30.0 == status.tick_s, "frames every half real second, in clock seconds"


def test_heartbeat_is_one_json_line() -> None:
    """A heartbeat renders as one JSON log line, whatever the types of the status keys."""
    stream = io.StringIO()
    configure_logging(stream=stream)
    heartbeat = Heartbeat(RunView(BUDGET), tick_s=60.0)
    heartbeat.on_tick(snapshot(60.0, 30, counts={FinalStatus.FAILED: 2}, pending=48))
    [line] = [orjson.loads(text) for text in stream.getvalue().splitlines()]
    assert {"event": "heartbeat", "final": 2, "total": 50, "pending": 48}.items() <= line.items()
    assert {"FAILED": 2} == line["counts"]
    assert (30, "45/min", 0.0) == (
        line["requests_last_min"],
        line["budget"],
        line["throttled_for_s"],
    )


class SlowApi:
    """Every job is PROCESSING for ever; each check takes 0.2 clock seconds."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.counter: Counter[str] = Counter()

    @property
    def outcomes(self) -> Mapping[str, int]:
        return self.counter

    @asynccontextmanager
    async def connect(
        self, config: Config, clock: Clock, budget: RateBudget, on_throttle: ThrottleListener
    ) -> AsyncIterator[SlowApi]:
        yield self

    async def check(self, job_id: int, *, priority: float) -> Answer:
        await self.clock.sleep(0.2)
        self.counter["ok"] += 1
        return JobState("PROCESSING")


async def test_heartbeat_cadence_in_virtual_time() -> None:
    """A heartbeat every minute of a 5.5-minute run: five lines, one a minute, on time."""
    clock = VirtualClock()
    api = SlowApi(clock)
    config = Config(
        credentials=Credentials(access_token=Secret("fake-token")),
        base_url="http://127.0.0.1:1",
        deadline=330.0,
        seed=1,
    )
    heartbeat = Heartbeat(RunView(config.rate), tick_s=60.0)
    job_ids = JobIds(ids=[1, 2, 3], invalid=[], duplicates=0)
    with capture_logs() as logs:
        async for event in stream_events(
            job_ids, config, clock, api.connect, ticks=(heartbeat.on_tick, heartbeat.tick_s)
        ):
            heartbeat.observe(event)
    beats = [line for line in logs if line["event"] == "heartbeat"]
    assert [60.0, 120.0, 180.0, 240.0, 300.0] == [beat["elapsed_s"] for beat in beats]
    assert all(beat["log_level"] == "info" for beat in beats)
    assert {"final": 0, "total": 3, "pending": 3, "budget": "45/min"}.items() <= beats[0].items()
    assert 30 == beats[-1]["deadline_in_s"]
    assert 0 < beats[-1]["requests"] <= api.counter["ok"]
    assert 0 < beats[-1]["requests_last_min"] <= 45
