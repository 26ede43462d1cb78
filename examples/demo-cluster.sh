#!/usr/bin/env bash
# Two nodes, one queue on PostgreSQL: `make demo-cluster` runs this.
#
# A fresh database (on the local PostgreSQL, or a throwaway cluster started from the installed
# binaries), two daemons `alpha` and `beta` on it, a batch that runs across both; then beta is
# killed with kill -9, its jobs are rescued ("interrupted: node beta lost") and run again on alpha,
# and everything completes.  Everything it started is stopped and removed at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
unset QUEUECTL_HOME
export QUEUECTL_NO_AUTOSTART=1  # the nodes are started here, with their store

work=$(mktemp -d /tmp/queuectl-cluster.XXXXXX)
db=$(python "$here/cluster_db.py" up) || exit 1
url=$(sed -n 1p <<<"$db")
where=$(sed -n 2p <<<"$db")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    python "$here/cluster_db.py" down "$url" "$where"
    rm -rf "$work"
}
trap cleanup EXIT

# on NODE ARGS...: `queuectl ARGS` against NODE's daemon, shown as it runs.
on() { local node=$1; shift; show "queuectl $* # on $node"; QUEUECTL_HOME="$work/$node" queuectl "$@"; }
q() { local node=$1; shift; QUEUECTL_HOME="$work/$node" queuectl "$@"; }
# until SECONDS COMMAND...: run COMMAND every 0.1 s until it succeeds; fail after SECONDS.
until_ok() {
    local tries=$(($1 * 10)); shift
    for _ in $(seq "$tries"); do if "$@" >/dev/null 2>&1; then return 0; fi; sleep 0.1; done
    echo "gave up waiting for: $*" >&2; return 1
}

start_node() {  # start_node NAME: a daemon on the database, 3 workers
    mkdir -p "$work/$1"
    show "queuectld --home $work/$1 --store postgresql://…/${url##*/} --node $1 --workers 3 &"
    queuectld --home "$work/$1" --store "$url" --node "$1" --workers 3 >"$work/$1.log" 2>&1 &
    pids+=($!)
    until_ok 30 q "$1" status
}

echo "queuectl on two nodes; the database: ${url%%\?*}"
start_node alpha
start_node beta
beta_pid=${pids[1]}
say "The settings are the cluster's: set on one node, they hold on both."
on alpha config set heartbeat 1      # a node is declared lost after 4 silent heartbeats: 4 s
on alpha config set backoff-base 2   # an interrupted job is retried 2 s later

say "A batch of 12 jobs, enqueued on alpha: both nodes take them (3 workers each)."
# Each job notes where it runs (QUEUECTL_NODE) before it works, so that beta's can be named below.
job="echo \$QUEUECTL_JOB_ID >> $work/ran-on-\$QUEUECTL_NODE; sleep 3; echo \"ran on \$QUEUECTL_NODE\""
python -c 'import json, sys; print((json.dumps({"command": sys.argv[1]}) + "\n") * 12, end="")' "$job" \
    >"$work/batch.jsonl"
show "queuectl enqueue - < batch.jsonl # on alpha: 12 lines of {\"command\": \"echo \$QUEUECTL_JOB_ID >> ran-on-\$QUEUECTL_NODE; sleep 3; ...\"}"
q alpha enqueue - <"$work/batch.jsonl" >"$work/ids"
until_ok 30 test -s "$work/ran-on-beta"
on alpha status
on beta nodes

say "beta dies without a word (kill -9): its jobs' processes die with it."
show "kill -9 $beta_pid # beta"
kill -9 "$beta_pid"
rescued=$(head -1 "$work/ran-on-beta")
echo "beta was running: $(tr '\n' ' ' <"$work/ran-on-beta")"

say "Within 4 heartbeats alpha declares beta lost and rescues its jobs."
lost() { q alpha show "$rescued" --json | python -c '
import json, sys
sys.exit(0 if "lost" in (json.load(sys.stdin).get("error_message") or "") else 1)'; }
until_ok 30 lost
on alpha nodes
on alpha why "$rescued" || true
show "queuectl show $rescued # on alpha (its environment's variables left out here)"
q alpha show "$rescued" | sed '/^  [A-Za-z_][A-Za-z0-9_]*=/d'

say "Everything completes, on alpha alone."
show "queuectl wait \$(cat ids) # on alpha"
xargs env QUEUECTL_HOME="$work/alpha" queuectl wait --timeout 120 <"$work/ids"
on alpha status
on alpha logs "$rescued"
echo
echo "demo over: alpha stops, the database is dropped"
