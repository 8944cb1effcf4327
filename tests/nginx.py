"""A real nginx `limit_req` in front of the simulator, as production deployments put one.

nginx runs as a foreground child (`daemon off; master_process off;`) with every file it
writes (pid, logs, temp directories) under a directory the test owns, so it needs no root
and leaves nothing behind. It cannot report an ephemeral port back, so `running_nginx` picks
a free loopback port, starts nginx on it, and tries another port if nginx could not bind it.

nginx's limiter is a leaky bucket in real time: at `rate=10r/s` with no burst, a request
less than 100 ms after the previous admitted one is refused (503 unless `limit_req_status`
says otherwise, and never with a Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import pytest

__all__ = [
    "Logged",
    "Nginx",
    "NginxLimit",
    "find_nginx",
    "free_port",
    "in_ci",
    "required",
    "running_nginx",
]

PROBE_PATH: Final = "/_nginx/ready"
"""Answered by nginx itself with a secret, so that a probe cannot mistake another server on
the same port for ours."""
_START_ATTEMPTS: Final = 5
_READY_WITHIN_S: Final = 15.0
"""nginx retries a failed bind for about 2.5 s before it gives up."""
_STOP_WITHIN_S: Final = 5.0
_TEMP_MODULES: Final = ("fastcgi", "uwsgi", "scgi")
"""Modules with a temp path of their own, to move under the work directory if built in."""


@dataclass(frozen=True, kw_only=True)
class NginxLimit:
    """One `limit_req` setup: `rate` in nginx's syntax (`10r/s`, `50r/m`), `burst` requests
    of queue (0: a strict leaky bucket), `nodelay` to pass the burst at once, and the status
    of a refusal (nginx's default is 503)."""

    rate: str = "10r/s"
    burst: int = 0
    nodelay: bool = False
    status: int = 503


@dataclass(frozen=True, slots=True)
class Logged:
    """One request in nginx's access log."""

    at: float
    """When nginx logged it (the end of the request), in Unix seconds."""
    status: int
    proxied: bool
    """Whether nginx passed it on to the simulator (False: nginx answered it itself)."""
    path: str


class Nginx:
    """A running nginx in front of the simulator, and what its access log says."""

    def __init__(self, port: int, workdir: Path, limit: NginxLimit) -> None:
        self.port = port
        self.limit = limit
        self.access_log_path = workdir / "access.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[Logged]:
        """Every API request nginx saw (the simulator's `/_sim` ground truth left out)."""
        logged: list[Logged] = []
        for line in self.access_log_path.read_text(encoding="utf-8").splitlines():
            at, status, upstream, path = line.split(" ", 3)
            if not path.startswith("/_sim/"):
                logged.append(Logged(float(at), int(status), upstream != "-", path))
        return logged

    async def logged(self, count: int) -> list[Logged]:
        """The API requests in the access log once it holds `count` of them (or after 5 s).

        nginx writes a request's line after it has sent the response, so a client that has
        just read its answer may look before the line is there.
        """
        for _ in range(500):
            if len(logged := self.requests()) >= count:
                break
            await asyncio.sleep(0.01)
        return logged

    def refused(self) -> list[Logged]:
        """The requests nginx's limiter refused."""
        return [r for r in self.requests() if not r.proxied and r.status == self.limit.status]

    def refusals(self) -> str:
        """`refused N of M requests (P%)`, for assertion messages and reports."""
        total, refused = len(self.requests()), len(self.refused())
        return f"nginx refused {refused} of {total} requests ({refused / max(total, 1):.1%})"

    def refused_share(self) -> float:
        """The share of requests nginx's limiter refused (0 when there were none)."""
        return len(self.refused()) / max(len(self.requests()), 1)

    def __repr__(self) -> str:
        return f"Nginx({self.base_url}, {self.limit})"


def find_nginx() -> str | None:
    """The nginx binary: on PATH, or where Debian puts it (/usr/sbin is not on every PATH)."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def in_ci() -> bool:
    """True on a CI machine (CI=true), where a missing nginx is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def required(binary: str | None, package: str) -> str:
    """`binary`, found; without it, skip the test, but fail it in CI, where `.ci/run` must
    have installed `package`."""
    if binary is None:
        message = f"no {package} binary: apt-get install {package} (.ci/run installs it)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return binary


@contextlib.asynccontextmanager
async def running_nginx(
    binary: str,
    upstream_url: str,
    limit: NginxLimit,
    workdir: Path,
    *,
    pick_port: Callable[[], int] | None = None,
) -> AsyncIterator[Nginx]:
    """nginx on a loopback port from `pick_port` (default `free_port`), passing every path
    on to `upstream_url`; another port if nginx could not bind that one."""
    upstream = urlsplit(upstream_url)
    secret = secrets.token_hex(8)
    failures: list[str] = []
    for _ in range(_START_ATTEMPTS):
        port = (pick_port or free_port)()
        config = _write_config(
            workdir,
            port,
            binary=binary,
            upstream=f"{upstream.hostname}:{upstream.port}",
            limit=limit,
            secret=secret,
        )
        process = await asyncio.create_subprocess_exec(
            binary,
            "-p",
            f"{workdir}/",
            "-c",
            str(config),
            "-e",
            str(workdir / "error.log"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            if await _ready(process, port, secret):
                yield Nginx(port, workdir, limit)
                return
        finally:
            await _stop(process)
        errors = _read(workdir / "error.log")
        if "Address already in use" not in errors:
            raise RuntimeError(f"nginx did not start:\n{errors}")
        failures.append(f"port {port} was taken")
    raise RuntimeError(f"nginx found no free port: {'; '.join(failures)}")


def _write_config(
    workdir: Path, port: int, *, binary: str, upstream: str, limit: NginxLimit, secret: str
) -> Path:
    """Write nginx.conf for this attempt into `workdir`; return its path."""
    # nginx refuses `burst=0`: no burst is said by leaving it out.
    burst = f" burst={limit.burst}" if limit.burst else ""
    nodelay = " nodelay" if limit.nodelay else ""
    temp_paths = "\n".join(
        f"    {module}_temp_path {workdir / module};" for module in _built_in(binary)
    )
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "error.log").unlink(missing_ok=True)  # so that it tells of this attempt only
    config = workdir / "nginx.conf"
    config.write_text(f"""\
daemon off;
master_process off;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} notice;
events {{
    worker_connections 256;
}}
http {{
    client_body_temp_path {workdir / "client_body"};
    proxy_temp_path {workdir / "proxy"};
{temp_paths}
    log_format limiter '$msec $status $upstream_status $uri';
    access_log {workdir / "access.log"} limiter;
    limit_req_zone $binary_remote_addr zone=api:1m rate={limit.rate};
    limit_req_status {limit.status};
    upstream simulator {{
        server {upstream};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location = {PROBE_PATH} {{
            access_log off;
            return 200 "{secret}";
        }}
        location / {{
            limit_req zone=api{burst}{nodelay};
            proxy_pass http://simulator;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }}
        location /_sim/ {{
            proxy_pass http://simulator;
        }}
    }}
}}
""")
    return config


@cache
def _built_in(binary: str) -> tuple[str, ...]:
    """The temp-path modules compiled into `binary` (`nginx -V` lists the left-out ones)."""
    configure = subprocess.run(
        [binary, "-V"], capture_output=True, text=True, timeout=10, check=False
    ).stderr
    return tuple(m for m in _TEMP_MODULES if f"--without-http_{m}_module" not in configure)


def free_port() -> int:
    """A loopback port nobody listens on now (nginx binds it a moment later, or retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _ready(process: asyncio.subprocess.Process, port: int, secret: str) -> bool:
    """Wait until nginx answers the probe (True) or exits (False); raise if it does neither."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + _READY_WITHIN_S
    while loop.time() < give_up:
        if process.returncode is not None:
            return False
        if await _answers(port, secret):
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 0.05)
    raise RuntimeError(f"nginx neither answered on port {port} nor exited within 15 s")


async def _answers(port: int, secret: str) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(f"GET {PROBE_PATH} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        reply = await asyncio.wait_for(reader.read(), 2.0)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return re.search(rb"\r\n\r\n" + secret.encode() + rb"$", reply) is not None


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), _STOP_WITHIN_S)
    except TimeoutError:
        process.kill()
        await process.wait()
    except BaseException:  # cancelled while stopping: still leave no process behind
        process.kill()
        await process.wait()
        raise


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no error log)"
