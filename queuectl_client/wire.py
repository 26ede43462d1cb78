"""Framing and constants of the protocol, without msgspec (see `protocol` for the messages).

The CLI's quick path (`quick`) needs these without paying for msgspec's import.
"""

from __future__ import annotations

import os

VERSION = "0.1.0"  # queuectl's, as both programs report it
PROTOCOL_VERSION = 1
MAX_FRAME = 16 * 1024 * 1024
HEADER_SIZE = 4

STATES = ("pending", "processing", "completed", "failed", "dead")

# Error codes and the CLI exit status each one maps to.
ERROR_CODES = {
    "invalid": 2,  # the request is malformed or a value is out of range
    "not_found": 1,  # no job with that id
    "duplicate": 1,  # a job with that id exists already
    "state": 1,  # the job is in a state that does not allow this
    "disk_full": 1,  # the journal could not be written; nothing changed
    "internal": 1,  # the daemon failed; see its log
    "stopping": 3,  # the daemon is shutting down and refuses this request
    "refused": 1,  # the daemon's command policy does not allow it
}


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(HEADER_SIZE, "big") + payload


def frame_length(header: bytes) -> int:
    """Length of the body announced by a header; refuses oversized frames."""
    n = int.from_bytes(header, "big")
    if n > MAX_FRAME:
        raise ProtocolError(f"frame of {n} bytes exceeds the {MAX_FRAME}-byte limit")
    return n


_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id_prefix() -> str:
    """Eight random characters (40 bits) from an unambiguous alphabet: the ids of one batch."""
    n = int.from_bytes(os.urandom(5), "big")
    return "".join(_ALPHABET[(n >> s) & 31] for s in range(35, -1, -5))
