#!/usr/bin/env bash
# A scheduled job with run_at.
#
# Shows: `run_at` as an ISO time (without a zone it is local time) and
# `delay` in seconds; `list` shows when each will run, and neither starts
# before its time even with idle workers.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
at=$(date -d '+3 seconds' +%Y-%m-%dT%H:%M:%S)
step queuectl worker start --count 1 --detach
enqueue "{\"command\": \"echo report generated at \$(date +%T)\", \"run_at\": \"$at\"}"
a=$id
enqueue '{"command": "echo reminder sent at $(date +%T)", "delay": 2}'
b=$id
echo "now $(date +%T)"
step queuectl list --state pending
step queuectl wait "$a" "$b" --timeout 30
step queuectl logs "$a" --stdout
step queuectl logs "$b" --stdout
