"""Poll Lucidity agent-install jobs from Python with `poll_jobs`, and act on each event.

    export LUCIDITY_REFRESH_TOKEN=...          # and LUCIDITY_BASE_URL for another region
    python examples/library.py 4711 4712

Against the simulator (`async-poller simulate --time-scale 60 --jobs 5 --jobs-file ids.txt`,
then export the two lines it prints): `python examples/library.py --time-scale 60 $(cat ids.txt)`.
The exit status follows the CLI's exit codes (0 all COMPLETED, 1 some FAILED or CANCELLED, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from async_poller import (
    Config,
    ConfigError,
    Credentials,
    PollError,
    Result,
    Secret,
    Summary,
    SystemClock,
    Transition,
    parse_duration,
    poll_jobs,
)
from async_poller.logs import configure_logging

DEFAULT_BASE_URL = "https://app.lucidity.cloud"


async def wait_for_installs(job_ids: list[int], config: Config, clock: SystemClock) -> int:
    """Poll `job_ids` to the end; print what happens; return the run's exit code."""
    exit_code = 3
    async for event in poll_jobs(job_ids, config, clock=clock):
        match event:
            case Transition(job_id=job_id, from_=before, to=after):
                print(f"{job_id}: {before or 'new'} -> {after}")
            case Result(job_id=job_id, status=status, reason=reason):
                print(f"{job_id}: ended {status}" + (f" ({reason})" if reason else ""))
            case PollError(job_id=job_id, kind=kind, http_status=http_status):
                print(f"{job_id}: request failed ({kind}, HTTP {http_status}), will retry")
            case Summary(counts=counts, exit_code=code):
                print("done:", ", ".join(f"{n} {s}" for s, n in counts.items() if n))
                exit_code = code
    return exit_code


def main() -> int:
    parser = argparse.ArgumentParser(description="Poll Lucidity agent-install jobs.")
    parser.add_argument("job_ids", nargs="+", type=int, metavar="JOB_ID")
    parser.add_argument("--deadline", type=parse_duration, default=parse_duration("45m"))
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="only for the simulator's --time-scale"
    )
    args = parser.parse_args()
    configure_logging(level="warning")  # the library's logs to stderr, tokens masked
    refresh_token = os.environ.get("LUCIDITY_REFRESH_TOKEN")
    if not refresh_token:
        print("set LUCIDITY_REFRESH_TOKEN (and LUCIDITY_BASE_URL if needed)", file=sys.stderr)
        return 2
    try:
        config = Config(
            credentials=Credentials(refresh_token=Secret(refresh_token)),
            base_url=os.environ.get("LUCIDITY_BASE_URL", DEFAULT_BASE_URL),
            deadline=args.deadline,
        )
    except ConfigError as error:  # e.g. plain http:// to a remote host
        print(error, file=sys.stderr)
        return 2
    return asyncio.run(wait_for_installs(args.job_ids, config, SystemClock(args.time_scale)))


if __name__ == "__main__":
    sys.exit(main())
