"""Start-up: `--version` and `--help` against `python -c pass`, and `poll --once` of 10 ids.

Every command runs as a fresh process, several times; wall time is from spawn to exit.
`poll --once` runs against a simulator in its own process with its rate limit raised, and
with `--rate 100/s`: at the default 45/min the 11 requests of a run (a token, 10 polls) are
paced 1.3 s apart (burst 1), which would measure the budget (about 13.7 s), not the start-up.
The runs share the default tenant-wide budget store, in a scratch state home.
"""

from __future__ import annotations

import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

from .common import Settings, markdown_table, percentile, run_measured, simulator_process

__all__ = ["render", "run"]

Json = dict[str, Any]

TARGET_VERSION_MS: Final = 150.0


def _cli() -> list[str]:
    """The installed `async-poller` script next to this interpreter, else `python -m`."""
    script = Path(sys.executable).with_name("async-poller")
    if script.exists():
        return [str(script)]
    found = shutil.which("async-poller")
    return [found] if found else [sys.executable, "-m", "async_poller"]


def run(settings: Settings, log: Any = print) -> Json:
    """The start-up section of the results."""
    repeats = 1 if settings.quick else 20
    cli = _cli()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import aiohttp'": [sys.executable, "-c", "import aiohttp"],
        "async-poller --version": [*cli, "--version"],
        "async-poller --help": [*cli, "--help"],
        "async-poller poll --help": [*cli, "poll", "--help"],
    }
    section: Json = {"repeats": repeats, "cli": " ".join(cli), "commands": {}}
    for name, command in commands.items():
        section["commands"][name] = _timings(
            [_check(run_measured(command)) for _ in range(repeats)]
        )
    once_repeats = 1 if settings.quick else 10
    with tempfile.TemporaryDirectory() as scratch:
        ids = Path(scratch) / "ids.txt"
        options = ("--rate-limit", "100000", "--jobs", "10", "--jobs-file", str(ids))
        with simulator_process(*options) as sim:
            command = [*cli, "poll", "--once", "--rate", "100/s", "--seed", "1", "-q", str(ids)]
            runs = [run_measured(command, env=sim.client_env()) for _ in range(once_repeats)]
        section["commands"]["async-poller poll --once (10 ids, --rate 100/s)"] = _timings(runs) | {
            "exit_codes": sorted({r.code for r in runs}),
            "repeats": once_repeats,
        }
    baseline = section["commands"]["python -c pass"]["median_ms"]
    for figures in section["commands"].values():
        figures["vs_python_c_pass"] = round(figures["median_ms"] / baseline, 1)
    version_ms = section["commands"]["async-poller --version"]["median_ms"]
    section["version_target_met"] = version_ms < TARGET_VERSION_MS
    section["version_imports"] = _slowest_imports([*cli, "--version"])
    log(f"startup: --version {version_ms:.0f} ms (python -c pass {baseline:.0f} ms)")
    return section


def _check(done: Any) -> Any:
    if done.code != 0:
        raise RuntimeError(f"start-up command failed ({done.code}):\n{done.stderr.decode()}")
    return done


def _timings(runs: list[Any]) -> Json:
    walls = [run.wall_s * 1000 for run in runs]
    return {
        "median_ms": round(statistics.median(walls), 1),
        "min_ms": round(min(walls), 1),
        "p90_ms": round(percentile(walls, 90), 1),
        "max_rss_mb": round(max(run.max_rss_kb for run in runs) / 1024, 1),
    }


def _slowest_imports(command: list[str], top: int = 8) -> list[Json]:
    """The top-level imports that cost most (cumulative µs), from `python -X importtime`."""
    if Path(command[0]).name != "async-poller":
        return []
    done = run_measured([sys.executable, "-X", "importtime", *command])
    found: list[Json] = []
    for line in done.stderr.decode().splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        # Depth 0 is the CLI module itself; depth 1 and 2 say what it spends its time on.
        if match and len(match.group(2)) <= 4:
            found.append({"module": match.group(3), "cumulative_ms": int(match.group(1)) / 1000})
    found.sort(key=lambda item: -item["cumulative_ms"])
    return found[:top]


def render(section: Json) -> str:
    """The start-up section as markdown."""
    rows = [
        [
            name,
            figures["median_ms"],
            figures["min_ms"],
            figures["p90_ms"],
            figures["vs_python_c_pass"],
            figures["max_rss_mb"],
        ]
        for name, figures in section["commands"].items()
    ]
    version = section["commands"]["async-poller --version"]["median_ms"]
    verdict = "met" if section["version_target_met"] else "missed"
    imports = ", ".join(
        f"{item['module']} {item['cumulative_ms']:.0f} ms" for item in section["version_imports"]
    )
    return (
        f"Fresh processes, {section['repeats']} runs each (poll --once: "
        f"{section['commands']['async-poller poll --once (10 ids, --rate 100/s)']['repeats']}); "
        f"`{section['cli']}`.\n\n"
        + markdown_table(
            ["command", "median ms", "min ms", "p90 ms", "x python -c pass", "peak RSS MB"], rows
        )
        + f"\n\nTarget `--version` < {TARGET_VERSION_MS:.0f} ms: **{verdict}** ({version:.0f} ms)."
        + (
            f" Costliest imports under `-X importtime` (inflated by it): {imports}."
            if imports
            else ""
        )
    )
