"""The wire between the daemon and its spawner processes (`queuectld.spawner`, `queuectld.runner`).

Frames of many messages each way: a 4-byte big-endian length, then a msgpack list of messages,
each a list whose first item says what it is.  Pure: both sides import it.
"""

from __future__ import annotations

import msgspec

HEADER = 4

# daemon -> spawner
SPAWN = "s"  # [SPAWN, token, job_id, command, attempt, cwd, out_path, err_path, limit, timeout, idle_timeout, env_key]
ENV = "v"  # [ENV, key, variables]: an environment jobs name by key (None: the daemon's own), kept until FORGET
FORGET = "f"  # [FORGET, key]
SIGNAL = "k"  # [SIGNAL, token, TERMINATE or KILL] or [SIGNAL, token, CANCEL, signal number, grace]
TERMINATE, KILL, CANCEL = 1, 0, 2
# [LEASE, until, reason]: runs may live until `until` (time.monotonic(), one clock for the host): past it, the
# spawner kills them, each ending "interrupted: REASON", and answers spawns "cannot start: REASON" until the next
LEASE = "l"
# spawner -> daemon
STARTED = "S"  # [STARTED, token, pid, pid_start]
FAILED = "F"  # [FAILED, token, error]: the job could not be started
EXITED = "X"  # [EXITED, token, exit_code, error, output files created, failure kind (see exits)]
# Either side skips a message of a kind it does not know.

encode = msgspec.msgpack.Encoder().encode
decode = msgspec.msgpack.Decoder(list[list]).decode  # type: ignore[type-arg]


def frame(messages: list[list]) -> bytes:  # type: ignore[type-arg]
    body = encode(messages)
    return len(body).to_bytes(HEADER, "big") + body


def unframe(buf: bytearray) -> list[list]:  # type: ignore[type-arg]
    """Take every whole frame off the front of `buf`; their messages, in order."""
    out: list[list] = []  # type: ignore[type-arg]
    while len(buf) >= HEADER:
        n = int.from_bytes(buf[:HEADER], "big")
        if len(buf) < HEADER + n:
            break
        out += decode(bytes(buf[HEADER : HEADER + n]))
        del buf[: HEADER + n]
    return out
