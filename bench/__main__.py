"""`python -m bench`: run the benchmarks and write bench/results/latest.{json,md}."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from async_poller.logs import configure_logging

from . import efficiency, headroom, limiters, overhead, report, scale, startup
from .common import REPO, Settings, load_average, machine_notes

BENCHMARKS: dict[str, Callable[[Settings, Callable[[str], None]], dict[str, Any]]] = {
    # The short, timing-sensitive ones first; the long efficiency comparison last.
    "startup": startup.run,
    "overhead": overhead.run,
    "scale": scale.run,
    "limiters": limiters.run,
    "headroom": headroom.run,
    "efficiency": efficiency.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks asked for; return the exit code."""
    args = _parser().parse_args(argv)
    settings = Settings(
        quick=args.quick,
        seeds=tuple(args.seeds) if args.seeds else ((1,) if args.quick else (1, 2, 3)),
        time_scale=args.time_scale or (300.0 if args.quick else 120.0),
        scale_check=not args.no_scale_check,
        shapes=tuple(args.shapes or ()),
        poll_million=not args.no_million,
        workers=args.workers or (1 if args.quick else 2),
    )
    configure_logging(log_format="console", level="error")
    chosen = args.only or list(BENCHMARKS)
    results: dict[str, Any] = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "settings": {
            "quick": settings.quick,
            "seeds": list(settings.seeds),
            "time_scale": settings.time_scale,
            "workers": settings.workers,
        },
        "machine": machine_notes(),
        "load_before": {},
    }
    started = time.perf_counter()
    for name, benchmark in BENCHMARKS.items():
        if name in chosen:
            results["load_before"][name] = load_average()
            results[name] = benchmark(settings, _log)
    results["total_s"] = round(time.perf_counter() - started, 1)
    _write(results, args.out)
    _log(f"bench: done in {results['total_s']:.0f} s; results in {args.out}/latest.md")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run async-poller's benchmarks (efficiency, headroom, overhead, scale, "
        "start-up, behind limiters) and write bench/results/latest.json and latest.md (plus "
        "a timestamped copy of each).",
        epilog="examples:\n"
        "  python -m bench                      # everything (about 17 minutes)\n"
        "  python -m bench --quick              # a smoke run with tiny sizes (seconds)\n"
        "  python -m bench --only efficiency --shapes burst-5m --seeds 1\n"
        "  python -m bench --only limiters      # behind six server limiters (about 3 minutes)\n"
        "  python -m bench --only headroom      # lag with headroom (about 2 minutes)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one seed")
    parser.add_argument(
        "--only",
        type=_names,
        metavar="NAMES",
        help=f"comma-separated subset of: {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--seeds", type=int, nargs="+", metavar="N", help="default: 1 2 3")
    parser.add_argument(
        "--time-scale", type=float, metavar="X", help="efficiency time scale (default: 120)"
    )
    parser.add_argument(
        "--shapes",
        nargs="+",
        choices=[s.name for s in efficiency.SHAPES + efficiency.QUICK_SHAPES],
        metavar="NAME",
        help="efficiency fleet shapes: "
        + ", ".join(s.name for s in efficiency.SHAPES + efficiency.QUICK_SHAPES),
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="efficiency comparisons at a time, one process each (default: 2; quick: 1)",
    )
    parser.add_argument(
        "--no-scale-check", action="store_true", help="skip the efficiency run at time scale 30"
    )
    parser.add_argument(
        "--no-million", action="store_true", help="skip trying to poll 1,000,000 ids"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "bench" / "results",
        help="results directory (default: bench/results)",
    )
    return parser


def _names(text: str) -> list[str]:
    names = text.split(",")
    if unknown := [name for name in names if name not in BENCHMARKS]:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    return names


def _write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stamp = results["generated"].replace(":", "").replace("+0000", "Z")
    json_path, md_path = out / f"{stamp}.json", out / f"{stamp}.md"
    json_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    md_path.write_text(report.render(results), encoding="utf-8")
    shutil.copyfile(json_path, out / "latest.json")
    shutil.copyfile(md_path, out / "latest.md")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
