"""The benchmarks (`make bench`) run end to end in quick mode, so that their code cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from .redis_server import redis_binary

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent


def test_quick_benchmarks_write_results(tmp_path: Path) -> None:
    """`python -m bench --quick` runs all five benchmarks and writes JSON and markdown results."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )

    assert 0 == done.returncode, done.stderr
    results = orjson.loads((tmp_path / "latest.json").read_bytes())
    assert {"efficiency", "headroom", "limiters", "overhead", "scale", "startup"} <= results.keys()
    for comparison in results["efficiency"]["runs"]:
        for poller in ("round_robin", "async_poller"):
            assert comparison[poller]["jobs"] == comparison[poller]["results"]
    for comparison in results["headroom"]["runs"]:
        for figures in [comparison["round_robin"], *comparison["clients"].values()]:
            assert figures["jobs"] == figures["results"]
    assert results["scale"]["read"]
    assert all(read["valid"] for read in results["scale"]["read"])
    servers = results["limiters"]["rows"]
    assert [(row["limiter"], row["refusal"][:3]) for row in servers] == [
        (limiter, status)
        for limiter in ("window", "bucket:1", "bucket:5")
        for status in ("429", "503")
    ]
    assert servers[0]["refused"] == 0  # the client's 45/min never trips the API's own 50/min
    assert "## Targets" in (tmp_path / "latest.md").read_text(encoding="utf-8")


def test_the_store_cost_benchmark_measures_every_store(tmp_path: Path) -> None:
    """`python -m bench.store_cost` prints a cost per request for no store, SQLite and Redis."""
    redis_binary()  # or skip (fail in CI)
    done = subprocess.run(
        [sys.executable, "-m", "bench.store_cost", "--cycles", "20", "--rounds", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert 0 == done.returncode, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "µs" not in line]
    assert ["none", "SQLite", "Redis,"] == [row.split()[1] for row in rows]
    assert all(float(row.split("|")[2]) > 0 for row in rows), done.stdout
