#!/usr/bin/env bash
# The queue working on real jobs, in a throwaway home: `make demo` runs this.
#
# Each example in examples/*/ runs in turn against one daemon (the first
# `queuectl` call starts it); the demo ends with the queue's status, the
# dead-letter queue, a DLQ retry, the stats, metrics and audit trail, and a
# graceful stop of the daemon.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export QUEUECTL_HOME=$(mktemp -d /tmp/queuectl-demo.XXXXXX)
unset QUEUECTL_NO_AUTOSTART
source "$here/lib.sh"

daemon_pid() { queuectl status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["daemon"]["pid"])'; }
cleanup() {
    local pid
    if pid=$(QUEUECTL_NO_AUTOSTART=1 daemon_pid 2>/dev/null); then kill -TERM "$pid" 2>/dev/null || true; fi
    rm -rf "$QUEUECTL_HOME"
}
trap cleanup EXIT

title() { printf '\n\n%s==== %s ====%s\n' "$bold" "$*" "$plain"; sed -n '2s/^# //p' "$here/$1"; }

echo "queuectl demo, state in $QUEUECTL_HOME"
# Retries wait backoff-base ^ attempts seconds; 1.5 keeps the demo short.
step queuectl config set backoff-base 1.5
step queuectl config list

title convert/run.sh;    bash "$here/convert/run.sh"
title fetch/run.sh;      bash "$here/fetch/run.sh"
title backup/run.sh;     bash "$here/backup/run.sh"
title priorities/run.sh; bash "$here/priorities/run.sh"
title groups/run.sh;     bash "$here/groups/run.sh"
title scheduled/run.sh;  bash "$here/scheduled/run.sh"
title pipeline/run.sh;   bash "$here/pipeline/run.sh"
printf '\n\n%s==== python_api/enqueue_and_wait.py ====%s\n' "$bold" "$plain"
sed -n '1s/^"""//p' "$here/python_api/enqueue_and_wait.py"
step python "$here/python_api/enqueue_and_wait.py"

printf '\n\n%s==== the queue afterwards ====%s\n' "$bold" "$plain"
step queuectl status
step queuectl list --limit 12
step queuectl dlq list
dead=$(queuectl dlq list --quiet | head -1)
step queuectl dlq retry "$dead"

printf '\n\n%s==== watching the queue ====%s\n' "$bold" "$plain"
step queuectl stats --since 1h
show "queuectl metrics | grep -E '^queuectl_(jobs_finished_total|oldest_pending_age_seconds)'"
queuectl metrics | grep -E '^queuectl_(jobs_finished_total|oldest_pending_age_seconds)'
step queuectl audit --limit 8
step queuectl worker stop
pid=$(daemon_pid)
show "kill -TERM $pid"
echo "(the daemon stops gracefully)"
kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
echo "daemon stopped; the demo's home is removed"
