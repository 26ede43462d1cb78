#!/usr/bin/env bash
# A data pipeline with dependencies, a cleanup that runs however it went, a unique sync, and a nightly schedule.
#
# Shows: `--after` holds a job until its dependency completed (`why` and `list`
# say what it waits for); `after_any` runs a cleanup once the pipeline is final,
# even when a step failed for good and its dependents died with it; `dlq retry`
# brings the failed step back, and its dependents with it; a `unique_key` keeps
# a second sync from being queued; `schedule add` runs the pipeline's head every
# night at 02:30 in its zone.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
work=$(mktemp -d /tmp/queuectl-pipeline.XXXXXX)
at_exit 'rm -rf "$work"'
tag=$(date +%H%M%S)
queuectl worker stop >/dev/null 2>&1 || true   # the pipeline is seen waiting before workers start

say "fetch, then transform, then load; a cleanup after all three, however they end"
enqueue "{\"id\": \"fetch-$tag\", \"command\": \"seq 1 5 > $work/data.txt\"}"
show queuectl enqueue "'{\"id\": \"transform-$tag\", ...}'" --after "fetch-$tag"
queuectl enqueue "{\"id\": \"transform-$tag\", \"command\": \"awk '{print \$1 * 10}' $work/data.txt > $work/out.txt\"}" --after "fetch-$tag"
enqueue "{\"id\": \"load-$tag\", \"command\": \"echo loaded \$(wc -l < $work/out.txt) rows\", \"after\": [\"transform-$tag\"]}"
enqueue "{\"id\": \"cleanup-$tag\", \"command\": \"echo cleaning up; rm -f $work/data.txt\", \"after_any\": [\"load-$tag\"]}"
step queuectl why "load-$tag"
step queuectl list --state pending
step queuectl worker start --count 2 --detach
queuectl wait "cleanup-$tag" --timeout 60
step queuectl logs "load-$tag"

say "a step that fails for good: its dependents die with it, the cleanup still runs"
enqueue "{\"id\": \"fetch2-$tag\", \"command\": \"test -e $work/flag || exit 3\", \"max_retries\": 0}"
enqueue "{\"id\": \"load2-$tag\", \"command\": \"echo loaded again\", \"after\": [\"fetch2-$tag\"]}"
enqueue "{\"id\": \"cleanup2-$tag\", \"command\": \"echo cleaning up again\", \"after_any\": [\"load2-$tag\"]}"
queuectl wait "cleanup2-$tag" --timeout 60
step queuectl why "load2-$tag"
say "the cause fixed, the failed step retried: its dependent comes back and runs"
touch "$work/flag"
step queuectl dlq retry "fetch2-$tag"
queuectl wait "load2-$tag" --timeout 60
step queuectl logs "load2-$tag"

say "a sync with a unique key: asking twice while it waits queues it once"
step queuectl pause default
enqueue "{\"id\": \"sync-$tag\", \"command\": \"echo synced\", \"unique_key\": \"sync-$tag\"}"
enqueue "{\"command\": \"echo synced\", \"unique_key\": \"sync-$tag\"}"
step queuectl why "sync-$tag"
step queuectl resume default
queuectl wait "sync-$tag" --timeout 60

say "the pipeline's head every night at 02:30, Berlin time; a fire is skipped while the last one's job is not done"
nightly="{\"command\": \"seq 1 5 > $work/data.txt\"}"
show queuectl schedule add "nightly-$tag" "'30 2 * * *'" "'$nightly'" --tz Europe/Berlin --no-overlap
queuectl schedule add "nightly-$tag" '30 2 * * *' "$nightly" --tz Europe/Berlin --no-overlap
step queuectl schedule list
step queuectl schedule rm "nightly-$tag"
