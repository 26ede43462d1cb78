# Shared by the examples: show each command before it runs; a home of their own unless one is set.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
show() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; }
step() { show "$@"; "$@"; }
say() { printf '\n# %s\n' "$*"; }
# enqueue JSON: show and run `queuectl enqueue JSON`, and keep the new job's id in $id.
enqueue() { show "queuectl enqueue '$1'"; id=$(queuectl enqueue "$1"); echo "$id"; }

# at_exit COMMAND: run COMMAND when the example ends (the examples share one EXIT trap).
_at_exit=()
at_exit() { _at_exit+=("$1"); }
_run_at_exit() { local i; for ((i = ${#_at_exit[@]} - 1; i >= 0; i--)); do eval "${_at_exit[i]}" || true; done; }
trap _run_at_exit EXIT

# Run against the queue named by QUEUECTL_HOME (as `make demo` sets it); without one, in a throwaway
# home with a daemon of its own, stopped at the end: an example never resizes or stops your pool.
if [ -z "${QUEUECTL_HOME:-}" ]; then
    export QUEUECTL_HOME=$(mktemp -d "${TMPDIR:-/tmp}/queuectl-example.XXXXXX")
    unset QUEUECTL_NO_AUTOSTART
    _stop_own_daemon() {
        local pid
        pid=$(QUEUECTL_NO_AUTOSTART=1 queuectl status --json 2>/dev/null |
              python3 -c 'import json, sys; print(json.load(sys.stdin)["daemon"]["pid"])' 2>/dev/null) || pid=
        if [ -n "$pid" ]; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        fi
        rm -rf "$QUEUECTL_HOME"
    }
    at_exit _stop_own_daemon
fi
