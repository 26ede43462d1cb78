#!/usr/bin/env bash
# Keep the backups from taking every worker, pause them, and cancel the one that hangs.
#
# Shows: a group with `--parallel 1` runs one of its jobs at a time while the
# other workers serve everything else (no job of another group waits behind
# it); `pause` holds a group's new starts while its running job finishes;
# `cancel` ends a hanging job (SIGTERM, SIGKILL after --grace) and it goes to
# the dead-letter queue, never retried; `rerun` runs a completed job again.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
log=$(mktemp /tmp/queuectl-groups.XXXXXX)
at_exit 'rm -f "$log"'
tag=$(date +%H%M%S)

step queuectl group add backups --parallel 1
ids=()
for host in db web mail; do
    enqueue "{\"id\": \"backup-$host-$tag\", \"group\": \"backups\", \"command\": \"echo start $host >> $log; sleep 1; echo end $host >> $log\"}"
    ids+=("$id")
done
for n in 1 2 3 4; do
    enqueue "{\"id\": \"thumb-$n-$tag\", \"command\": \"echo thumbnail $n >> $log\"}"
    ids+=("$id")
done
step queuectl worker start --count 3 --detach
queuectl wait "${ids[@]}" --timeout 60
say "backups ran one at a time (each ends before the next starts); the thumbnails did not wait for them:"
cat "$log"
step queuectl group list

say "pause the group: its jobs wait; resume it and they run"
step queuectl pause backups
enqueue "{\"id\": \"backup-extra-$tag\", \"group\": \"backups\", \"command\": \"true\"}"
step queuectl status
step queuectl resume backups
queuectl wait "backup-extra-$tag" --timeout 30

say "a job that hangs, cancelled: SIGTERM, SIGKILL after 1 s"
enqueue "{\"id\": \"hung-$tag\", \"group\": \"backups\", \"command\": \"trap \\\"\\\" TERM; echo stuck; sleep 600\"}"
for _ in $(seq 100); do [ "$(queuectl show "hung-$tag" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')" = processing ] && break; sleep 0.1; done
step queuectl cancel "hung-$tag" --grace 1
queuectl wait "hung-$tag" --timeout 30 || true   # it ends dead
step queuectl show "hung-$tag"

say "run a completed job again, under a new id"
step queuectl rerun "backup-db-$tag"
