#!/usr/bin/env bash
# A flaky network fetch that succeeds on retry, and one that no retry would help.
#
# Shows: a job that fails twice (the server answers 503, fetch.py exits 75),
# is retried after backoff-base^1 and backoff-base^2 seconds, and succeeds on
# its third run; `logs` shows the latest run's output, `show` its attempts.
# Both jobs retry only exit 75 ("retry_on": [75]): the fetch of a missing
# report (404, exit 1) is dead after its first run, its retries unused.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh"
out=$(mktemp -d /tmp/queuectl-fetch.XXXXXX)
coproc SERVER { exec python3 "$here/flaky_server.py" 2>/dev/null; }
read -r port <&"${SERVER[0]}"
at_exit 'kill $SERVER_PID 2>/dev/null; rm -rf "$out"'

fetch='{"command": "python3 %s http://127.0.0.1:%s/%s %s/out.csv", "max_retries": 3, "retry_on": [75]}'
enqueue "$(printf "$fetch" "$here/fetch.py" "$port" missing/weekly.csv "$out")"
missing=$id
enqueue "$(printf "$fetch" "$here/fetch.py" "$port" daily.csv "$out")"
step queuectl worker start --count 1 --detach
step queuectl wait "$id" --timeout 60
show queuectl wait "$missing" --timeout 60
queuectl wait "$missing" --timeout 60 || echo "(exit $?: it is dead)"
step queuectl show "$id"
step queuectl logs "$id"
step cat "$out/out.csv"
step queuectl show "$missing"
