"""Behind limiters: `async-poller poll` with default flags against six server rate limiters.

Three limiters at the API's 50/min: the Lucidity API's sliding window (`window`), a bucket
of one (`bucket:1`, nginx `limit_req rate=50r/m` with no burst: a request closer than 1.2 s
to the previous admitted one is refused) and a bucket of five (`bucket:5`, `burst=4
nodelay`); each refusing with 429 and Retry-After, or with 503 and no Retry-After (nginx's
default). Every row is a simulator (`async-poller simulate`, seed 1, 100 jobs with its default
lifecycles, about 5 simulated minutes median) and `async-poller poll` with default flags (so a
45/min budget), each in a process of its own; the six rows run side by side.

Time scale 10. The limiter decides on arrival times, so event-loop and scheduling jitter in
either process shows up as requests bunched together: a client pacing one request every
60/45 = 1.33 s has 0.13 s of slack over bucket:1's 1.2 s, 13 ms real at x10 (2 ms at x60,
which a busy 2-core machine eats). Twelve processes at a few requests a second each leave
the machine mostly idle, and x10 keeps the table to about three minutes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from .common import REPO, Settings, markdown_table, simulator_process

__all__ = ["CASES", "Case", "render", "run"]

Json = dict[str, Any]

SEED: Final = 1
JOBS: Final = 100
TIME_SCALE: Final = 10.0
QUICK_JOBS: Final = 10
QUICK_TIME_SCALE: Final = 120.0
"""A smoke run: the figures mean little this fast, the code path is the same."""
CUT_S: Final = 1800.0
"""Simulated seconds after which a run still going is stopped (SIGTERM: it writes its summary
and the jobs not final yet count as pending). Twice the reference run: by then a run has long
missed its time target, and the table stays within about three minutes at x10."""
TARGET_REFUSED: Final = 0.05
TARGET_TIME_RATIO: Final = 1.2
FINAL_STATUSES: Final = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


@dataclass(frozen=True, slots=True)
class Case:
    """One server: its limiter, and how it refuses."""

    limiter: str
    status: int
    retry_after: bool

    @property
    def refusal(self) -> str:
        return f"{self.status} {'with' if self.retry_after else 'without'} Retry-After"

    def simulate_options(self) -> list[str]:
        """The `async-poller simulate` flags for this server."""
        options = ["--limiter", self.limiter, "--throttle-status", str(self.status)]
        return options + ([] if self.retry_after else ["--no-retry-after"])


CASES: Final = tuple(
    Case(limiter, status, status == 429)
    for limiter in ("window", "bucket:1", "bucket:5")
    for status in (429, 503)
)
"""The first is the reference: the Lucidity API itself."""


def run(settings: Settings, log: Any = print) -> Json:
    """Every case side by side; a results section."""
    jobs = QUICK_JOBS if settings.quick else JOBS
    scale = QUICK_TIME_SCALE if settings.quick else TIME_SCALE
    with ThreadPoolExecutor(len(CASES)) as pool:
        rows = list(pool.map(lambda case: _run_case(case, jobs, scale), CASES))
    reference = rows[0]["duration_s"]
    for row in rows:
        row["time_ratio"] = round(row["duration_s"] / reference, 2)
        row["targets"] = {
            "all_final": row["final"] == row["jobs"],
            "refused": row["refused_share"] <= TARGET_REFUSED,
            "time": row["time_ratio"] <= TARGET_TIME_RATIO,
        }
        log(
            f"limiters {row['limiter']} {row['refusal']}: {row['final']}/{row['jobs']} final, "
            f"{row['refused_share']:.1%} of {row['requests']} refused, "
            f"{row['duration_s']:.0f} s ({row['time_ratio']}x)"
        )
    return {"jobs": jobs, "seed": SEED, "time_scale": scale, "rows": rows}


def _run_case(case: Case, jobs: int, scale: float) -> Json:
    with tempfile.TemporaryDirectory(prefix="bench-limiters-") as scratch:
        ids = Path(scratch) / "ids.txt"
        server = ["--time-scale", f"{scale:g}", "--seed", str(SEED), "--jobs", str(jobs)]
        with simulator_process(*server, "--jobs-file", str(ids), *case.simulate_options()) as sim:
            command = [sys.executable, "-m", "async_poller", "poll", "--time-scale", f"{scale:g}"]
            command += ["--seed", str(SEED), "-q", str(ids)]
            # Whatever a run keeps in the user's directories (a local budget store, say) stays
            # with that run, so the six side by side do not share a budget.
            home = dict.fromkeys(("HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"), scratch)
            env = sim.client_env() | home
            code, stdout, cut = _poll(command, env, CUT_S / scale)
            stats = sim.stats()
            truth = {job["id"]: job["final_status"] for job in sim.truth()}
    events = [orjson.loads(line) for line in stdout.splitlines()]
    summary = events[-1] if events and events[-1]["event"] == "summary" else {}
    if not summary:
        raise RuntimeError(f"poll behind {case} wrote no summary (exit {code})")
    results = {e["job_id"]: e["status"] for e in events if e["event"] == "result"}
    requests = len(stats["requests"])
    return {
        "limiter": case.limiter,
        "refusal": case.refusal,
        "jobs": jobs,
        "results": len(results),
        "final": sum(
            status in FINAL_STATUSES and status == truth[job_id]
            for job_id, status in results.items()
        ),
        "exit_code": code,
        "cut": cut,
        "requests": requests,
        "refused": stats["refused"],
        "refused_share": stats["refused"] / requests if requests else 0.0,
        "throttled_events": summary["throttled"],
        "retries": summary["retries"],
        "duration_s": summary["duration_s"],
    }


def _poll(command: list[str], env: dict[str, str], cut_after: float) -> tuple[int, bytes, bool]:
    """Run `poll` to its end, or stop it after `cut_after` real seconds: (exit code, stdout,
    whether it was cut). Its stderr goes to ours."""
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, cwd=REPO
    )
    try:
        try:
            stdout, _ = process.communicate(timeout=cut_after)
            cut = False
        except subprocess.TimeoutExpired:
            process.terminate()
            stdout, _ = process.communicate(timeout=60)
            cut = True
    except BaseException:
        process.kill()
        process.communicate()
        raise
    return process.returncode, stdout, cut


def render(section: Json) -> str:
    """The section as markdown: what ran, then one row per server."""
    rows = [
        [
            f"`{row['limiter']}`",
            row["refusal"],
            _finality(row),
            row["requests"],
            f"{row['refused_share']:.1%} ({row['refused']})",
            f"> {row['duration_s']:.0f} (cut)" if row["cut"] else round(row["duration_s"]),
            f"{'> ' if row['cut'] else ''}{row['time_ratio']:.2f}x",
            _verdict(row["targets"]),
        ]
        for row in section["rows"]
    ]
    headers = [
        "server limiter (50/min)",
        "refusal",
        "every job final",
        "requests",
        "refused by the limiter",
        "run time (sim s)",
        "vs window/429",
        "targets",
    ]
    return (
        f"`async-poller poll` with default flags (45/min), {section['jobs']} jobs (seed "
        f"{section['seed']}), time scale x{section['time_scale']:g}, the six rows side by side; "
        f"a run still going after {CUT_S:g} simulated seconds is cut. "
        f"Targets: every job final, <= {TARGET_REFUSED:.0%} of requests refused, run time <= "
        f"{TARGET_TIME_RATIO:g}x the window/429 run.\n\n" + markdown_table(headers, rows)
    )


def _finality(row: Json) -> str:
    counted = f"{row['final']}/{row['jobs']}" + (" at the cut" if row["cut"] else "")
    return f"{'yes' if row['targets']['all_final'] else 'NO'} ({counted})"


def _verdict(targets: dict[str, bool]) -> str:
    missed = [name for name, ok in targets.items() if not ok]
    return "met" if not missed else "missed: " + ", ".join(missed)


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.limiters [--quick]`: this section alone, as markdown on stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.limiters",
        description="Poll behind six server rate limiters and print the markdown table "
        "(about 3 minutes; --quick: seconds).",
    )
    parser.add_argument("--quick", action="store_true", help="10 jobs at time scale 120")
    args = parser.parse_args(argv)
    section = run(Settings(quick=args.quick), log=lambda line: print(line, file=sys.stderr))
    print(render(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
