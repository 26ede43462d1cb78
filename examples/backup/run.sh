#!/usr/bin/env bash
# A nightly backup with a timeout.
#
# Shows: `timeout` on a job. The archive job finishes well inside its limit;
# the copy to a remote that hangs is killed when its 2 s run out (the whole
# process group, so its `sleep` child too) and, with no retries left, goes to
# the dead-letter queue. In real use the job comes from cron or a timer:
#   0 2 * * *  queuectl enqueue '{"id": "backup-'$(date +%F)'", "command": "...", "timeout": 3600}'
# or is scheduled ahead with run_at (see ../scheduled).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
data=$(mktemp -d /tmp/queuectl-backup.XXXXXX)
mkdir -p "$data/home/notes" "$data/archive"
for i in $(seq 50); do echo "note $i" > "$data/home/notes/$i.txt"; done
at_exit 'rm -rf "$data"'

tag=$(date +%Y%m%d-%H%M%S)
enqueue "{\"id\": \"archive-$tag\", \"command\": \"tar -czf $data/archive/home.tar.gz -C $data home && ls -l $data/archive\", \"timeout\": 60}"
enqueue "{\"id\": \"upload-$tag\", \"command\": \"echo copying to the remote...; sleep 600\", \"timeout\": 2, \"max_retries\": 0}"
step queuectl worker start --count 2 --detach
queuectl wait "archive-$tag" "upload-$tag" --timeout 60 || true   # the upload is expected to die
step queuectl logs "archive-$tag" --stdout
step queuectl show "upload-$tag"
step queuectl dlq list
