"""What the overhead and scale benchmarks run in a child process of their own.

`python -m bench.child KIND ...` measures only its own section (imports and set-up excluded)
with `time.perf_counter` and `time.process_time`, and prints one JSON object on stdout. The
API address and refresh token come from `LUCIDITY_BASE_URL` and `LUCIDITY_REFRESH_TOKEN`.

- `plain`: a plain aiohttp loop: one token refresh, then REQUESTS - 1 status requests over
  the ids in turn, CONCURRENCY at a time, each body parsed for its status.
- `poll-jobs`: `poll_jobs` with the budget lifted (a huge `--rate`, delays of at most 1 ms)
  for SECONDS, its events encoded to /dev/null as the CLI would write them; with
  `--budget-store PATH`, the budget shared through that SQLite file as the CLI does.
- `read-ids`: `async_poller.ids.read_ids` on one file.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import itertools
import os
import resource
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, BinaryIO, Final

import orjson

__all__ = ["main"]

STATUS_PATH: Final = "/external/client/api/v1/agent/install/status"
REFRESH_PATH: Final = "/external/api/v1/auth/user-token/refresh"
LIFTED_RATE: Final = "1000000000/s"

Json = dict[str, Any]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.child", description=__doc__)
    kinds = parser.add_subparsers(dest="kind", required=True)
    plain = kinds.add_parser("plain")
    plain.add_argument("--requests", type=int, required=True)
    poll = kinds.add_parser("poll-jobs")
    poll.add_argument("--seconds", type=float, required=True)
    poll.add_argument("--budget-store", help="share the budget through this SQLite file")
    for sub in (plain, poll):
        sub.add_argument("--ids", type=Path, required=True)
        sub.add_argument("--concurrency", type=int, default=8)
        sub.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    read = kinds.add_parser("read-ids")
    read.add_argument("path")
    read.add_argument("--input-format", choices=("auto", "text", "json"), default="auto")
    args = parser.parse_args(argv)
    if args.kind == "read-ids":
        figures = _read_ids(args.path, args.input_format)
    else:
        ids = [int(line) for line in args.ids.read_text().split()]
        base_url, token = os.environ["LUCIDITY_BASE_URL"], os.environ["LUCIDITY_REFRESH_TOKEN"]
        with open(os.devnull, "wb") as devnull:
            if args.kind == "plain":
                work = _plain(base_url, token, ids, args.requests, args.concurrency)
            else:
                work = _poll_jobs(
                    base_url,
                    token,
                    ids,
                    args.seconds,
                    args.concurrency,
                    out=devnull,
                    budget_store=args.budget_store,
                )
            figures = _measure(work, args.loop)
    sys.stdout.write(orjson.dumps(figures).decode() + "\n")
    return 0


def _measure(work: Coroutine[Any, Any, int], loop: str) -> Json:
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop == "uvloop":
        factory = importlib.import_module("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        wall, cpu = time.perf_counter(), time.process_time()
        requests = runner.run(work)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "requests": requests,
        "wall_s": wall,
        "cpu_s": cpu,
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


async def _plain(base_url: str, refresh_token: str, ids: list[int], total: int, limit: int) -> int:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=limit)
    async with aiohttp.ClientSession(base_url, connector=connector) as session:
        async with session.post(REFRESH_PATH, json={"refreshToken": refresh_token}) as response:
            token = orjson.loads(await response.read())["accessToken"]
        headers = {"X-Authtype": "lucidity_access_token", "Authorization": token}
        numbers = itertools.count(1)
        statuses: list[str] = []

        async def worker() -> None:
            while (n := next(numbers)) < total:
                params = {"id": str(ids[n % len(ids)])}
                async with session.get(STATUS_PATH, params=params, headers=headers) as response:
                    body = await response.read()
                statuses.append(orjson.loads(body)["data"]["status"])

        await asyncio.gather(*(worker() for _ in range(limit)))
    return 1 + len(statuses)


async def _poll_jobs(
    base_url: str,
    refresh_token: str,
    ids: list[int],
    seconds: float,
    limit: int,
    *,
    out: BinaryIO,
    budget_store: str | None,
) -> int:
    from async_poller._engine.poll import poll_jobs
    from async_poller.config import Config, Credentials, parse_rate
    from async_poller.events import JsonLinesSink, Summary
    from async_poller.logs import configure_logging
    from async_poller.redact import Secret

    configure_logging(log_format="json", level="warning")
    config = Config(
        credentials=Credentials(refresh_token=Secret(refresh_token)),
        base_url=base_url,
        concurrency=limit,
        rate=parse_rate(LIFTED_RATE),
        min_delay=0.0,
        max_delay=0.001,
        deadline=seconds,
        seed=1,
        budget_store=budget_store,
    )
    requests = 0
    sink = JsonLinesSink(out)
    async for event in poll_jobs(ids, config):
        sink.write(event)
        if isinstance(event, Summary):
            requests = event.requests
    return requests


def _read_ids(path: str, input_format: Any) -> Json:
    from async_poller.ids import read_ids

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall, cpu = time.perf_counter(), time.process_time()
    found = read_ids([path], input_format=input_format)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "ids": len(found.ids),
        "invalid": len(found.invalid),
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_before_kb": before,
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


if __name__ == "__main__":
    sys.exit(main())
