#!/usr/bin/env bash
# The queue working on real jobs, in a throwaway home: `make demo` runs this.
#
# It enqueues the jobs in examples/jobs/ before any worker runs (the first
# command starts the daemon on its own), then starts one worker in the
# foreground so the job events show, and finally shows status, list, the
# dead-letter queue and logs, and stops the daemon.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export QUEUECTL_HOME=$(mktemp -d /tmp/queuectl-demo.XXXXXX)
unset QUEUECTL_NO_AUTOSTART

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

daemon_pid() { queuectl status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["daemon"]["pid"])'; }

cleanup() {
    local pid
    if pid=$(QUEUECTL_NO_AUTOSTART=1 daemon_pid 2>/dev/null); then kill -TERM "$pid" 2>/dev/null || true; fi
    rm -rf "$QUEUECTL_HOME"
}
trap cleanup EXIT

echo "queuectl demo, state in $QUEUECTL_HOME"

# Retries wait backoff-base ^ attempts seconds; 1.5 keeps the demo short.
step queuectl config set backoff-base 1.5
step queuectl config list
step queuectl enqueue "$(cat "$here/jobs/hello.json")"
step queuectl enqueue "$(cat "$here/jobs/unreachable.json")"
step queuectl enqueue "$(cat "$here/jobs/later.json")"
step queuectl enqueue --file "$here/jobs/batch.jsonl"
step queuectl enqueue "$(cat "$here/jobs/urgent.json")"
step queuectl list

printf '\n\033[1m$ queuectl worker start --count 1\033[0m   (until every job has settled)\n'
queuectl worker start --count 1 &
worker=$!
settled() {
    queuectl status --json | python3 -c '
import json, sys
jobs = json.load(sys.stdin)["jobs"]
sys.exit(0 if jobs["pending"] + jobs["processing"] + jobs["failed"] == 0 else 1)'
}
for _ in $(seq 300); do settled && break; sleep 0.1; done
queuectl worker stop 2>/dev/null
wait "$worker"

step queuectl status
step queuectl list
step queuectl dlq list
step queuectl show unreachable
step queuectl logs unreachable
step queuectl logs hello
step queuectl logs later
step queuectl dlq retry unreachable
step queuectl list --state pending --json
pid=$(daemon_pid)
printf '\n\033[1m$ kill -TERM %s\033[0m   (the daemon stops gracefully)\n' "$pid"
kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
echo "daemon stopped; the demo's home is removed"
