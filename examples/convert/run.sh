#!/usr/bin/env bash
# A batch of file conversions with retries.
#
# Shows: one job per file from a JSON-lines batch (`enqueue -`), two workers
# converting in parallel, and retries with backoff. Two inputs are still
# being uploaded when the batch starts (a `.part` marker next to them); their
# jobs fail, wait backoff-base^attempts seconds, and succeed once the upload
# is done. Each job compresses one CSV and writes its checksum.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
work=$(mktemp -d /tmp/queuectl-convert.XXXXXX)
for i in 1 2 3 4 5 6; do
    seq 1 20000 | sed "s/^/row-$i,/" > "$work/sales-$i.csv"
done
touch "$work/sales-2.csv.part" "$work/sales-5.csv.part"

say "one job per file; a file with a .part marker is not complete yet: exit 75 (try again later)"
for f in "$work"/*.csv; do
    cmd="test ! -e $f.part || { echo 'still uploading' >&2; exit 75; }; gzip -9 -c $f > $f.gz && sha256sum $f.gz"
    printf '{"command": "%s", "max_retries": 4}\n' "$cmd"
done > "$work/jobs.jsonl"
ids=$(queuectl enqueue - < "$work/jobs.jsonl")
step queuectl worker start --count 2 --detach
sleep 1.5 && rm "$work"/*.part &   # the uploads finish while the retries wait
step queuectl wait $ids --timeout 60
step queuectl list --state completed --limit 6
first=$(echo "$ids" | sed -n 2p)
step queuectl show "$first"
step queuectl logs "$first"
ls -l "$work"/*.gz
rm -rf "$work"
