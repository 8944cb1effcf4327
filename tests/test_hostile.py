"""Hardening: a hostile API, a shared host, a full disk and a dropped terminal (issue 11).

Each test plays one attack or mishap against the real command line and checks the promise
docs/authentication.md and docs/troubleshooting.md make about it.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import resource
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from aiohttp import web

from async_poller._engine.control import Interrupt
from async_poller._engine.poll import poll_jobs
from async_poller.clock import SystemClock
from async_poller.config import Config, Credentials
from async_poller.events import Summary
from async_poller.redact import Secret

from .helpers import clean_env, ids_arg, run_cli
from .hostile import REFRESH_TOKEN, HostileServer, job_json

pytestmark = pytest.mark.e2e

FAST = ("--time-scale", "60", "--seed", "1", "--min-delay", "10s")


def _forms(secret: str) -> list[str]:
    """The ways a server could echo `secret`: raw, base64 (both alphabets), percent-encoded."""
    raw = secret.encode()
    return [
        secret,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        quote(secret, safe=""),
    ]


def _completes(job_id: int, token: str, poll: int) -> web.StreamResponse:
    return job_json(job_id, "COMPLETED")


async def test_tokens_echoed_by_the_server_never_reach_events_state_or_logs(
    tmp_path: Path,
) -> None:
    """An API that echoes the access and refresh tokens, raw and encoded, in error messages,
    failure reasons, instance details and non-JSON bodies: stdout, the state file and stderr
    show none of them."""
    access = "echoed+access/token=0123456789"

    def status(job_id: int, token: str, poll: int) -> web.StreamResponse:
        b64 = base64.b64encode(token.encode()).decode()
        if poll == 1 and job_id == 1:
            return web.json_response({"message": f"bad token {token}"}, status=500)
        if poll == 1 and job_id == 2:
            return web.Response(text=f"{token} <html>proxy error</html>", status=200)
        if poll == 2 and job_id == 2:
            refresh = base64.urlsafe_b64encode(REFRESH_TOKEN.encode()).decode()
            return web.json_response({"data": {"id": 2, "status": f"QUEUED{refresh}"}})
        details = [{"instanceId": "i-1", "failureReason": f"see ?t={quote(token, safe='')}"}]
        return job_json(job_id, "FAILED", failureReason=f"auth {b64}", instances=details)

    state = tmp_path / "state.db"
    async with HostileServer(status, access_token=access) as server:
        run = await run_cli(
            "poll", *FAST, "--state", str(state), *ids_arg([1, 2]), env=server.env()
        )
    assert 1 == run.code, run.stderr
    assert {1, 2} == set(run.results)
    assert run.of("poll_error"), "the echoing answers were poll errors"
    rows = sqlite3.connect(state).execute("SELECT * FROM jobs").fetchall()
    outputs = {"stdout": run.stdout.decode(), "state": repr(rows), "stderr": run.stderr}
    for secret in (access, REFRESH_TOKEN):
        for form in _forms(secret):
            for name, text in outputs.items():
                assert form not in text, f"{form!r} leaked into {name}"


async def test_a_token_with_control_characters_is_an_authentication_failure() -> None:
    """The refresh endpoint hands out `token\r\nX-Injected: 1`: exit 4 with one clear message,
    a summary, and no traceback (it was exit 3 with an internal error per job)."""
    async with HostileServer(
        _completes,
        access_token="hostile-token\r\nX-Injected: 1",
    ) as server:
        run = await run_cli("poll", *FAST, *ids_arg([1, 2, 3]), env=server.env())
        assert 0 == sum(server.polls.values())
    assert 4 == run.code, run.stderr
    assert 4 == run.summary["exit_code"]
    assert "Traceback" not in run.stderr
    assert 1 == run.stderr.count("token-refresh endpoint gave an access token with")


@pytest.mark.parametrize(
    "maintenance",
    [
        lambda job_id: web.Response(text="<html>down for maintenance</html>", status=200),
        lambda job_id: job_json(job_id, "MAINTENANCE"),
    ],
    ids=["html-as-200", "unknown-status-word"],
)
async def test_a_maintenance_window_served_as_200_is_ridden_out(
    maintenance: Callable[[int], web.StreamResponse],
) -> None:
    """A minute of HTTP 200 with an HTML page (or a status word nobody knows) is transient,
    like a 503: the jobs poll through it and complete (they used to end ERROR after five)."""
    started = math.inf  # from the first poll: a slow start-up must not shorten the window

    def status(job_id: int, token: str, poll: int) -> web.StreamResponse:
        nonlocal started
        started = min(started, time.monotonic())
        if time.monotonic() - started < 60 / 60:  # one simulated minute at --time-scale 60
            return maintenance(job_id)
        return job_json(job_id, "COMPLETED")

    async with HostileServer(status) as server:
        run = await run_cli("poll", *FAST, "--min-delay", "1s", *ids_arg([1, 2]), env=server.env())
        assert {1, 2} == set(server.polls)
        assert all(polls > 5 for polls in server.polls.values()), server.polls
    assert 0 == run.code, run.stderr
    assert {"COMPLETED"} == {result["status"] for result in run.results.values()}


async def test_events_to_a_full_device_stop_the_run_with_a_clear_error() -> None:
    """`poll > /dev/full`: exit 74 with one clear message, no traceback (it was exit 70)."""
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        async with HostileServer(_completes) as server:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "async_poller", "poll", *FAST, *ids_arg([1, 2]),
                stdin=asyncio.subprocess.DEVNULL, stdout=full, stderr=asyncio.subprocess.PIPE,
                env=server.env(),
            )  # fmt: skip
            _, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        os.close(full)
    assert 74 == process.returncode, stderr
    assert b"cannot write events to stdout: No space left on device" in stderr
    assert b"Traceback" not in stderr


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply


async def test_a_full_disk_under_output_never_leaves_a_partial_line(tmp_path: Path) -> None:
    """The disk fills up in the middle of a line (a file size limit plays the full disk):
    exit 74, and the file holds whole JSON lines only."""
    output = tmp_path / "events.jsonl"
    async with HostileServer(_completes) as server:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "async_poller", "poll", *FAST, "--output", str(output),
            *ids_arg(list(range(1, 21))),
            stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env=server.env(), preexec_fn=_limit_file_size(1500),
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert 74 == process.returncode, stderr
    written = output.read_bytes()
    assert 0 < len(written) <= 1500
    assert written.endswith(b"\n")
    assert all(orjson.loads(line) for line in written.splitlines())


async def test_a_partial_last_line_is_repaired_before_appending(tmp_path: Path) -> None:
    """A file an older run left ending in half a line: the half line is dropped, so the file
    is JSON lines again (a complete last line only gets its missing newline)."""
    output = tmp_path / "events.jsonl"
    output.write_bytes(b'{"v":1,"event":"summary"}\n{"v":1,"event":"res')
    async with HostileServer(_completes) as server:
        run = await run_cli("poll", *FAST, "--output", str(output), "--id", "1", env=server.env())
    assert 0 == run.code, run.stderr
    lines = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    assert ["summary", "start", "transition", "result", "summary"] == [e["event"] for e in lines]
    assert "output_repaired" in run.stderr
    output.write_bytes(b'{"v":1,"event":"summary"}')
    async with HostileServer(_completes) as server:
        run = await run_cli("poll", *FAST, "--output", str(output), "--id", "1", env=server.env())
    assert 5 == len([orjson.loads(line) for line in output.read_bytes().splitlines()])


async def test_no_core_dump_can_hold_a_token(tmp_path: Path) -> None:
    """The CLI turns core dumps off for itself and the token command it starts."""
    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if hard == 0:
        pytest.skip("core dumps are off for this process already")
    seen = tmp_path / "core-limit"
    helper = tmp_path / "helper.py"
    helper.write_text(
        "import resource\n"
        f"open({str(seen)!r}, 'w').write(str(resource.getrlimit(resource.RLIMIT_CORE)[0]))\n"
        "print('helper-token-0123456789')\n"
    )

    def allow_core_dumps() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))

    async with HostileServer(_completes) as server:
        env = clean_env(LUCIDITY_BASE_URL=server.base_url)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "async_poller", "poll", *FAST, "--id", "1",
            "--token-command", f"{sys.executable} {helper}",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=env, preexec_fn=allow_core_dumps,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert 0 == process.returncode, stderr
    assert "0" == seen.read_text()


async def test_a_redirect_aborts_with_exit_6_not_3() -> None:
    """A redirect (which would carry the token to another host) is refused: exit 6, the code
    for an answer refused for safety, distinct from a deadline's 3."""

    def status(job_id: int, token: str, poll: int) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "http://evil.example/steal"})

    async with HostileServer(status) as server:
        run = await run_cli("poll", *FAST, *ids_arg([1, 2]), env=server.env())
    assert 6 == run.code, run.stderr
    assert 6 == run.summary["exit_code"]
    assert "redirect" in run.stderr


async def test_a_refresh_cancelled_by_a_signal_is_counted_in_the_summary() -> None:
    """SIGTERM while the token refresh is on the wire: `summary.requests` counts it (1)."""
    async with HostileServer(_completes, hold_refresh=True) as server:
        config = Config(
            credentials=Credentials(refresh_token=Secret(REFRESH_TOKEN)),
            base_url=server.base_url,
            min_delay=1.0,
        )
        interrupt = Interrupt()

        async def stop_once_refreshing() -> None:
            await server.refreshing.wait()
            interrupt.stop(143)

        stopper = asyncio.create_task(stop_once_refreshing())
        events = [
            event
            async for event in poll_jobs([1], config, clock=SystemClock(60.0), interrupt=interrupt)
        ]
        await stopper
    summary = events[-1]
    assert isinstance(summary, Summary)
    assert (1, 143) == (summary.requests, summary.exit_code)
