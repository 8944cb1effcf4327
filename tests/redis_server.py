"""A real Redis server for the tests of the shared budget in Redis (and bench/store_cost.py).

Debian's `redis-server` runs as a child process on a loopback port, with a password, no
persistence and its working directory under one the caller owns. It cannot report an
ephemeral port back, so `running_redis` picks a free port, starts the server on it, and
tries another if the server could not bind that one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import redis

from .nginx import free_port, required

__all__ = ["RedisServer", "find_redis", "redis_binary", "running_redis"]

_START_ATTEMPTS: Final = 5
_READY_WITHIN_S: Final = 10.0
_STOP_WITHIN_S: Final = 5.0


@dataclass(frozen=True)
class RedisServer:
    """A running Redis server on the loopback interface."""

    port: int
    password: str

    def url(self, db: int = 0) -> str:
        """The server's URL, password included, as `--budget-store` takes it."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        """A plain (blocking) client, for the tests' own checks and cleanup."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, db=db, password=self.password, socket_timeout=5.0
        )


def find_redis() -> str | None:
    """The redis-server binary: on PATH, or where Debian puts it."""
    found = shutil.which("redis-server")
    if found is None and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"
    return found


def redis_binary() -> str:
    """The redis-server binary; skip the test without one, but fail it in CI, where there
    must be one."""
    return required(find_redis(), "redis-server")


@contextlib.contextmanager
def running_redis(binary: str, workdir: Path) -> Iterator[RedisServer]:
    """redis-server on a free loopback port, stopped (and waited for) on the way out."""
    workdir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(12)
    failures: list[str] = []
    for _ in range(_START_ATTEMPTS):
        port = free_port()
        log = workdir / "redis.log"
        log.unlink(missing_ok=True)  # so that it tells of this attempt only
        process = subprocess.Popen(
            [
                binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                "--appendonly", "no", "--dir", str(workdir), "--logfile", str(log),
                "--daemonize", "no", "--requirepass", password,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            server = RedisServer(port, password)
            if _ready(process, server):
                yield server
                return
        finally:
            _stop(process)
        errors = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        if "Address already in use" not in errors:
            raise RuntimeError(f"redis-server did not start:\n{errors}")
        failures.append(f"port {port} was taken")
    raise RuntimeError(f"redis-server found no free port: {'; '.join(failures)}")


def _ready(process: subprocess.Popen[bytes], server: RedisServer) -> bool:
    """Wait until the server answers PING (True) or exits (False); raise if neither."""
    give_up = time.monotonic() + _READY_WITHIN_S
    while time.monotonic() < give_up:
        if process.poll() is not None:
            return False
        with contextlib.suppress(redis.ConnectionError), server.client() as client:
            if client.ping():
                return True
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(0.05)
    raise RuntimeError(f"redis-server neither answered on port {server.port} nor exited")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(_STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
