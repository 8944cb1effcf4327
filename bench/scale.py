"""Scale: 100,000 job ids polled by the CLI, and 1,000,000 ids read and validated.

- Poll: `async-poller poll` on 100k ids the simulator knows, in real time (time scale 1:
  scaled time would squeeze the 10 s spread of the first polls into a fraction of a second),
  with `--deadline 30s`: by then every job has been due for a while, so the run is in its
  steady state (all jobs waiting for the budget) before every job ends TIMED_OUT. Peak RSS
  of the poller's process comes from `wait4`; the time to its first request is the
  simulator's record of that request (`/_sim/stats`, on the monotonic clock every process
  shares) minus the moment the process was spawned.
- Read: `async_poller.ids.read_ids` alone, in a child process, on 100k and 1M ids as text
  and as a JSON array: time, and peak RSS above what the process held before reading.
- Poll 1M (informational): the same CLI run on 1M ids (unknown to the simulator, which
  would need minutes to create them; only a handful are polled in the time anyway), with a
  time limit, to say whether polling that many works at all.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import orjson

from .common import (
    Settings,
    TimedOut,
    markdown_table,
    run_measured,
    simulator_process,
)

__all__ = ["render", "run"]

Json = dict[str, Any]

TIME_SCALE: Final = 1.0
TARGET_RSS_MB: Final = 250.0
TARGET_FIRST_REQUEST_S: Final = 1.5
MILLION_TIME_LIMIT_S: Final = 180.0


def run(settings: Settings, log: Any = print) -> Json:
    """The scale section of the results."""
    polled = 2_000 if settings.quick else 100_000
    read_sizes = (2_000, 20_000) if settings.quick else (100_000, 1_000_000)
    section: Json = {"time_scale": TIME_SCALE, "poll": [], "read": []}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        deadline = "1s" if settings.quick else "30s"
        section["deadline"] = deadline
        outcome = _poll(scratch, polled, deadline, known=True, time_limit=600.0)
        section["poll"].append(outcome)
        log(
            f"scale: {polled} ids, peak RSS {outcome.get('max_rss_mb')} MB, first request "
            f"after {outcome.get('first_request_s')} s"
        )
        for count in read_sizes:
            for form in ("text", "json"):
                path = _write_ids(scratch, count, form)
                section["read"].append(_read(path, count, form))
        if settings.poll_million and not settings.quick:
            outcome = _poll(
                scratch, 1_000_000, deadline, known=False, time_limit=MILLION_TIME_LIMIT_S
            )
            section["poll"].append(outcome)
            log(f"scale: 1M ids polled: {outcome['outcome']}")
    return section


def _poll(scratch: Path, count: int, deadline: str, *, known: bool, time_limit: float) -> Json:
    ids = scratch / f"poll-{count}.txt"
    jobs = ("--jobs", str(count), "--jobs-file", str(ids)) if known else ()
    if not known:
        _write_ids(scratch, count, "text", ids)
    with simulator_process("--time-scale", str(TIME_SCALE), *jobs) as sim:
        command = [sys.executable, "-m", "async_poller", "poll", "--time-scale", str(TIME_SCALE)]
        command += ["--deadline", deadline, "--seed", "1", "-q", str(ids)]
        figures: Json = {"ids": count, "known_to_simulator": known}
        spawned = time.monotonic()
        try:
            done = run_measured(command, env=sim.client_env(), timeout=time_limit)
            spawned = done.spawned
        except TimedOut as error:
            done = None
            figures["outcome"] = f"killed after {error.after_s:g} s (time limit)"
            figures["max_rss_mb"] = _mb(error.max_rss_kb)
        records = sim.stats()["requests"]
    if records:
        figures["first_request_s"] = round(records[0]["at"] / TIME_SCALE - spawned, 3)
        first_status = next((r for r in records if r["method"] == "GET"), None)
        if first_status is not None:
            figures["first_status_request_s"] = round(first_status["at"] / TIME_SCALE - spawned, 3)
        figures["requests"] = len(records)
    if done is not None:
        events = [orjson.loads(line) for line in done.stdout.splitlines()]
        summary = events[-1] if events else {}
        results = [event["job_id"] for event in events if event["event"] == "result"]
        complete = summary.get("event") == "summary" and len(set(results)) == len(results) == count
        figures |= {
            "outcome": "one result per job, summary last" if complete else "INCOMPLETE",
            "exit_code": done.code,
            "results": len(results),
            "max_rss_mb": _mb(done.max_rss_kb),
            "wall_s": round(done.wall_s, 2),
            "cpu_s": round(done.cpu_s, 2),
        }
    figures["targets"] = {
        "max_rss": figures.get("max_rss_mb", float("inf")) <= TARGET_RSS_MB,
        "first_request": figures.get("first_request_s", float("inf")) <= TARGET_FIRST_REQUEST_S,
    }
    return figures


def _write_ids(scratch: Path, count: int, form: str, path: Path | None = None) -> Path:
    """`count` distinct 19-digit ids, the same for every run, as text lines or a JSON array."""
    rng = random.Random(count)
    ids = rng.sample(range(10**18, 2 * 10**18), count)
    path = path or scratch / f"ids-{count}.{'json' if form == 'json' else 'txt'}"
    if form == "json":
        path.write_bytes(orjson.dumps(ids))
    else:
        path.write_text("".join(f"{job_id}\n" for job_id in ids), encoding="ascii")
    return path


def _read(path: Path, count: int, form: str) -> Json:
    done = run_measured([sys.executable, "-m", "bench.child", "read-ids", str(path)])
    if done.code != 0:
        raise RuntimeError(f"bench.child read-ids failed:\n{done.stderr.decode()}")
    found: Json = orjson.loads(done.stdout)
    return {
        "ids": count,
        "format": form,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "valid": found["ids"] == count and found["invalid"] == 0,
        "seconds": round(found["wall_s"], 3),
        "ids_per_s": round(count / found["wall_s"]),
        "memory_mb": _mb(found["max_rss_kb"] - found["rss_before_kb"]),
        "bytes_per_id": round((found["max_rss_kb"] - found["rss_before_kb"]) * 1024 / count),
    }


def _mb(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def render(section: Json) -> str:
    """The scale section as markdown."""
    poll_rows = [
        [
            f"{p['ids']:,}",
            p.get("max_rss_mb", "-"),
            p.get("first_request_s", "-"),
            p.get("first_status_request_s", "-"),
            p.get("wall_s", "-"),
            p["outcome"],
            "met" if all(p["targets"].values()) else _missed(p["targets"]),
        ]
        for p in section["poll"]
    ]
    read_rows = [
        [
            f"{r['ids']:,}",
            r["format"],
            r["file_mb"],
            r["seconds"],
            f"{r['ids_per_s']:,}",
            r["memory_mb"],
            r["bytes_per_id"],
            "yes" if r["valid"] else "NO",
        ]
        for r in section["read"]
    ]
    return (
        f"`async-poller poll --deadline {section['deadline']}` against the simulator, in real "
        "time. Times in seconds from spawning the process.\n\n"
        + markdown_table(
            [
                "ids",
                "peak RSS (MB)",
                "first request (s)",
                "first status request (s)",
                "process wall (s)",
                "outcome",
                "targets (RSS <= 250 MB, first request <= 1.5 s)",
            ],
            poll_rows,
        )
        + "\n\n`read_ids` alone (reading and validating, duplicates dropped), in a fresh process:"
        "\n\n"
        + markdown_table(
            [
                "ids",
                "format",
                "file (MB)",
                "seconds",
                "ids/s",
                "memory (MB)",
                "bytes/id",
                "all valid",
            ],
            read_rows,
        )
    )


def _missed(targets: dict[str, bool]) -> str:
    return "missed: " + ", ".join(name for name, ok in targets.items() if not ok)
