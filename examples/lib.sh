# Shared by the examples: show each command before it runs.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
show() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; }
step() { show "$@"; "$@"; }
say() { printf '\n# %s\n' "$*"; }
# enqueue JSON: show and run `queuectl enqueue JSON`, and keep the new job's id in $id.
enqueue() { show "queuectl enqueue '$1'"; id=$(queuectl enqueue "$1"); echo "$id"; }
