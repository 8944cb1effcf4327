"""Logs on stderr: console on a terminal, JSON otherwise, NO_COLOR, -q, levels, no secrets."""

from __future__ import annotations

import io
import os
import pty
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog

from async_poller.logs import configure_logging, divert_logs
from async_poller.redact import Secret
from async_poller.simulator import Simulator

from .conftest import Poll
from .helpers import ids_arg

ESC = "\x1b["


@pytest.fixture(autouse=True)
def _pristine_structlog() -> Iterator[None]:
    """Each test configures structlog globally; put it back as it was found."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def terminal() -> Iterator[tuple[io.TextIOWrapper, int]]:
    """The writing end of a pseudo-terminal as a text stream, and the reading end's fd."""
    controller, follower = pty.openpty()
    stream = os.fdopen(follower, "w")
    try:
        yield stream, controller
    finally:
        stream.close()
        os.close(controller)


def read_terminal(controller: int) -> str:
    return os.read(controller, 65536).decode()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines()]


def test_json_lines_when_not_a_terminal() -> None:
    """auto renders one JSON object per line when the stream is not a terminal."""
    stream = io.StringIO()
    configure_logging(stream=stream)
    structlog.get_logger().info("hello", jobs=3)
    [line] = json_lines(stream.getvalue())
    assert ("hello", "info", 3) == (line["event"], line["level"], line["jobs"])
    assert line["timestamp"].endswith("Z")


def test_console_with_colours_on_a_terminal(
    terminal: tuple[io.TextIOWrapper, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """auto renders for people on a terminal, in colour when NO_COLOR is not set."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    stream, controller = terminal
    configure_logging(stream=stream)
    structlog.get_logger().warning("budget_short", jobs=3)
    text = read_terminal(controller)
    assert "budget_short" in text
    assert ESC in text
    assert not text.lstrip().startswith("{")


def test_no_color_is_respected(
    terminal: tuple[io.TextIOWrapper, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_COLOR set (to anything but empty) turns colours off, even on a terminal."""
    monkeypatch.setenv("NO_COLOR", "1")
    stream, controller = terminal
    configure_logging(stream=stream)
    structlog.get_logger().warning("budget_short", jobs=3)
    text = read_terminal(controller)
    assert "budget_short" in text
    assert ESC not in text


def test_log_format_console_forced_without_a_terminal() -> None:
    """--log-format console renders for people even into a pipe, without colours."""
    stream = io.StringIO()
    configure_logging(log_format="console", stream=stream)
    structlog.get_logger().info("hello", jobs=3)
    assert "hello" in stream.getvalue()
    assert "jobs=3" in stream.getvalue()
    assert ESC not in stream.getvalue()


def test_quiet_keeps_errors_only() -> None:
    """-q drops info and warnings whatever --log-level says, and keeps errors."""
    stream = io.StringIO()
    configure_logging(level="debug", quiet=True, stream=stream)
    log = structlog.get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert ["e"] == [line["event"] for line in json_lines(stream.getvalue())]


@pytest.mark.parametrize(
    ("level", "shown"),
    [("debug", ["d", "i", "w"]), ("info", ["i", "w"]), ("warning", ["w"])],
)
def test_log_level_threshold(level: str, shown: list[str]) -> None:
    """--log-level shows that level and above."""
    stream = io.StringIO()
    configure_logging(level=level, stream=stream)
    log = structlog.get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    assert shown == [line["event"] for line in json_lines(stream.getvalue())]


def test_known_secrets_are_masked() -> None:
    """A token that slipped into a log value is replaced by ***."""
    token = Secret("tok-very-secret-0123456789")
    stream = io.StringIO()
    configure_logging(stream=stream)
    structlog.get_logger().error("oops", message=f"the API said no to {token.reveal()}")
    assert token.reveal() not in stream.getvalue()
    assert "***" in stream.getvalue()


def test_logs_never_touch_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """With the default stream, log lines go to stderr and stdout stays empty."""
    configure_logging()
    structlog.get_logger().warning("w")
    captured = capsys.readouterr()
    assert "" == captured.out
    assert '"event":"w"' in captured.err


def test_divert_hands_lines_over_and_restores() -> None:
    """Inside divert_logs each rendered line goes to the callback; after it, to the stream."""
    stream = io.StringIO()
    diverted: list[str] = []
    configure_logging(stream=stream)
    with divert_logs(diverted.append):
        structlog.get_logger().info("inside")
    structlog.get_logger().info("outside")
    assert ["inside"] == [orjson.loads(line)["event"] for line in diverted]
    assert ["outside"] == [line["event"] for line in json_lines(stream.getvalue())]


async def test_debug_logs_every_request_without_the_token(simulator: Simulator, poll: Poll) -> None:
    """--log-level debug logs each request (method, path, status), never a token."""
    ids = simulator.create_jobs(3)
    run = await poll("--log-level", "debug", "--log-format", "json", *ids_arg(ids))
    requests = [line for line in json_lines(run.stderr) if line["event"] == "request"]
    assert requests
    assert run.summary["requests"] == len(requests)
    assert {"GET", "POST"} >= {line["method"] for line in requests}
    assert all(line["path"].startswith("/external/") for line in requests)
    assert all(isinstance(line["status"], int) for line in requests)
    for secret in (simulator.refresh_token, *simulator.issued_tokens):
        assert secret not in run.stderr
