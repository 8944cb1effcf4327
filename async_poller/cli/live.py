"""The live progress display: a frame at the bottom of the terminal, redrawn every tick.

Imported only when the display is on, so runs without a terminal never load rich. The frame
appears with the run's `start` event (an error before it leaves no empty frame), and its last
state stays on screen. It is drawn with rich's renderables and a `LiveRender` (which measures
the frame, so it can be erased) rather than `rich.live.Live`: no refresh thread, no swapping
of `sys.stderr`, and the same terminal can be shared with stdout when a person reads events
there. Log lines print above the frame; events written to the same terminal are preceded by
`clear()`, and the frame returns with the next event or tick.
"""

from __future__ import annotations

from contextlib import ExitStack
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from rich.console import Console, Group, RenderableType
from rich.live_render import LiveRender
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..config import format_duration
from ..events import Event, Start
from ..logs import divert_logs, no_color
from ..outcome import FinalStatus
from .progress import RunView

if TYPE_CHECKING:
    from .._engine.control import Snapshot

__all__ = ["LiveProgress", "render"]

BAR_WIDTH = 30
STATUS_ORDER: dict[str, int] = {status.value: n for n, status in enumerate(FinalStatus)}
STATUS_STYLES = {
    "COMPLETED": "green",
    "FAILED": "red",
    "CANCELLED": "yellow",
    "TIMED_OUT": "magenta",
    "NOT_FOUND": "red",
    "UNKNOWN": "red",
    "ERROR": "red",
}


class LiveProgress:
    """A `RunStatus` that keeps a progress frame at the bottom of the terminal `stream`."""

    def __init__(self, view: RunView, stream: TextIO, *, tick_s: float) -> None:
        self.view = view
        self.tick_s = tick_s
        # The caller decided this is a terminal (or was told to pretend): rich must not
        # second-guess it from FORCE_COLOR or TTY_COMPATIBLE.
        self.console = Console(
            file=stream, force_terminal=True, no_color=no_color(), highlight=False
        )
        self._frame = LiveRender(Text())
        self._on_screen = False
        self._started = False
        self._cleanup = ExitStack()

    def __enter__(self) -> LiveProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._cleanup:
            if self._started:
                self._draw()
                self.console.line()

    def on_tick(self, snapshot: Snapshot) -> None:
        self.view.update(snapshot)
        if self._started:
            self._draw()

    def observe(self, event: Event) -> None:
        self.view.observe(event)
        if isinstance(event, Start) and not self._started:
            self._started = True
            self.console.show_cursor(False)
            self._cleanup.callback(self.console.show_cursor, True)
            self._cleanup.enter_context(divert_logs(self._print_above))
        if self._started:
            self._draw()

    def clear(self) -> None:
        """Take the frame off the screen: something else is about to write to this terminal."""
        if self._on_screen:
            self.console.control(self._frame.position_cursor())
            self._on_screen = False

    def _draw(self) -> None:
        self._frame.set_renderable(render(self.view))
        erase = [self._frame.position_cursor()] if self._on_screen else []
        self.console.print(*erase, self._frame)
        self._on_screen = True

    def _print_above(self, line: str) -> None:
        self.clear()
        # soft_wrap: a long line is wrapped by the terminal, never cut or broken by rich.
        self.console.print(Text.from_ansi(line), soft_wrap=True)
        self._draw()


def render(view: RunView) -> RenderableType:
    """One frame: the bar and jobs by status; then requests, the budget and throttling, time."""
    jobs = Table.grid(padding=(0, 1))
    jobs.add_row(
        ProgressBar(total=max(view.total, 1), completed=view.final, width=BAR_WIDTH),
        Text.assemble(
            (f"{view.final}/{view.total}", "bold"),
            " final  ",
            _statuses(view),
            "  ",
            (f"{view.pending} pending", "cyan" if view.pending else "dim"),
        ),
    )
    parts = [_requests(view), _budget(view), _time(view)]
    if view.waiting and not view.done:
        parts.insert(2, Text(f"{view.waiting} waiting", "dim"))
    return Group(jobs, Text(" · ").join(parts))


def _statuses(view: RunView) -> Text:
    if not view.counts:
        return Text("none yet", "dim")
    return Text("  ").join(
        Text.assemble((status, STATUS_STYLES.get(status, "")), f" {n}")
        for status, n in sorted(view.counts.items(), key=lambda item: STATUS_ORDER.get(item[0], 99))
    )


def _requests(view: RunView) -> Text:
    last_minute = view.last_minute()
    if last_minute is None or view.done:
        return Text(f"requests {view.requests}")
    return Text(f"requests {view.requests}, {last_minute:.0f} in the last minute")


def _budget(view: RunView) -> Text:
    if view.paused_for_s > 0:
        return Text(
            f"throttled: paused {format_duration(round(view.paused_for_s))}, budget {view.rate}",
            "bold red",
        )
    if view.throttled:
        return Text(f"budget {view.rate} (lowered from {view.configured_rate})", "yellow")
    return Text(f"budget {view.rate}, not throttled")


def _time(view: RunView) -> Text:
    if view.done:
        return Text(f"done in {format_duration(round(view.elapsed_s))}", "bold")
    if view.deadline_in_s is None:
        return Text("starting", "dim")
    return Text(f"deadline in {format_duration(round(view.deadline_in_s))}")
