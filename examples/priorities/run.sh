#!/usr/bin/env bash
# A priority mix.
#
# Shows: with one worker busy, jobs start highest priority first, then in the
# order they were enqueued; a job enqueued last with priority 10 runs first.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
order=$(mktemp /tmp/queuectl-order.XXXXXX)
at_exit 'rm -f "$order"'
step queuectl worker stop
ids=()
for spec in "report-a 0" "report-b 0" "rebuild-index 5" "report-c 0" "page-oncall 10"; do
    set -- $spec
    enqueue "{\"command\": \"echo $1 >> $order\", \"priority\": $2}"
    ids+=("$id")
done
step queuectl list --state pending
step queuectl worker start --count 1 --detach
queuectl wait "${ids[@]}" --timeout 30
say "the order they ran in:"
cat "$order"
