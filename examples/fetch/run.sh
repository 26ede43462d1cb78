#!/usr/bin/env bash
# A flaky network fetch that succeeds on retry.
#
# Shows: a job that fails twice (the server answers 503), is retried after
# backoff-base^1 and backoff-base^2 seconds, and succeeds on its third run;
# `logs` shows the latest run's output, `show` its attempts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh"
out=$(mktemp -d /tmp/queuectl-fetch.XXXXXX)
coproc SERVER { exec python3 "$here/flaky_server.py" 2>/dev/null; }
read -r port <&"${SERVER[0]}"
at_exit 'kill $SERVER_PID 2>/dev/null; rm -rf "$out"'

job=$(printf '{"command": "python3 %s http://127.0.0.1:%s/daily.csv %s/daily.csv", "max_retries": 3}' \
      "$here/fetch.py" "$port" "$out")
enqueue "$job"
step queuectl worker start --count 1 --detach
step queuectl wait "$id" --timeout 60
step queuectl show "$id"
step queuectl logs "$id"
step cat "$out/daily.csv"
