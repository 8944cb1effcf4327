#!/usr/bin/env bash
# Block a CI/CD step until Lucidity agent installs finish; fail the step unless every job
# COMPLETED. The events stay in a file for the CI log and for later steps (artifacts).
#
# usage: ci-wait-for-installs.sh IDS_FILE [POLL_OPTION ...]
#   IDS_FILE      job ids, one per line, or a saved Agent Install response (JSON)
#   POLL_OPTION   passed to `async-poller poll`, e.g. --base-url https://eu.app.lucidity.cloud
# environment:
#   LUCIDITY_REFRESH_TOKEN   a CI secret (or LUCIDITY_ACCESS_TOKEN); never echoed
#   DEADLINE                 how long to wait in all (default 45m); jobs not final end TIMED_OUT
#   EVENTS                   where the JSON-lines events go (default events.jsonl)
# exit status: async-poller's own (0 all COMPLETED, 1 some FAILED/CANCELLED, 2 usage error,
# 3 incomplete, 4 authentication failed, ...), so the CI step fails on anything but 0.
set -euo pipefail

ids_file=${1:?usage: ci-wait-for-installs.sh IDS_FILE [POLL_OPTION ...]}
shift
events=${EVENTS:-events.jsonl}

status=0
async-poller poll --deadline "${DEADLINE:-45m}" "$@" "$ids_file" >"$events" || status=$?

# Usage, input and lock errors (exit 2, 5) and crashes write no summary: say so plainly.
if ! grep -q '"event":"summary"' "$events"; then
    echo "async-poller ended without a summary (exit status $status): see its messages above" >&2
    exit "$((status == 0 ? 1 : status))"
fi

# A short account for the CI log: every job that did not complete, and why.
if command -v jq >/dev/null; then
    jq -r 'select(.event == "result" and .status != "COMPLETED")
           | "  \(.status)\t\(.job_id)\t\(.reason // "")"' "$events"
    jq -r 'select(.event == "summary")
           | "async-poller: \(.total) jobs, \(.counts | to_entries
              | map(select(.value > 0) | "\(.value) \(.key)") | join(", "))"' "$events"
fi
case $status in
    0) echo "every agent install COMPLETED" ;;
    1) echo "some agent installs FAILED or were CANCELLED" >&2 ;;
    3) echo "some agent installs are not finished (deadline ${DEADLINE:-45m}) or unknown" >&2 ;;
    4) echo "authentication failed: check the LUCIDITY_REFRESH_TOKEN secret" >&2 ;;
    *) echo "async-poller exited with status $status" >&2 ;;
esac
exit "$status"
