"""Output capture: one stream of one run, kept within the output limit as its head and its tail."""

from __future__ import annotations

import logging
import os
from collections import deque

log = logging.getLogger("queuectld.runner")

READ_CHUNK = 65536


class Capture:
    """One output stream of one run, capped at `limit` bytes: its head and its tail."""

    __slots__ = ("dropped", "fd", "file", "head_left", "path", "tail", "tail_limit", "tail_size", "wrote")

    def __init__(self, fd: int, path: str, limit: int) -> None:
        self.fd = fd
        self.path = path
        self.file = -1  # opened at the first byte, so silent jobs create no files
        self.wrote = False  # the file was created
        self.head_left = limit - limit // 2
        self.tail: deque[bytes] = deque()  # whole chunks; trimmed to tail_limit at the end
        self.tail_size = 0
        self.tail_limit = limit // 2
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        if self.head_left > 0:
            head = data[: self.head_left]
            self._write(head)
            self.head_left -= len(head)
            data = data[len(head) :]
            if not data:
                return
        tail = self.tail
        tail.append(data)
        self.tail_size += len(data)
        # Drop whole chunks that the newer ones make unnecessary.
        while self.tail_size - len(tail[0]) >= self.tail_limit:
            old = tail.popleft()
            self.tail_size -= len(old)
            self.dropped += len(old)

    def read_available(self, max_chunks: int = 16) -> bool:
        """Read what the pipe holds now, up to `max_chunks` reads so a flood cannot hog the loop.

        False at end of file.
        """
        for _ in range(max_chunks):
            try:
                data = os.read(self.fd, READ_CHUNK)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            self.feed(data)
            if len(data) < READ_CHUNK:
                return True
        return True

    def _write(self, data: bytes) -> None:
        if self.file < 0:
            self.file = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            self.wrote = True
        try:
            os.write(self.file, data)
        except OSError as e:
            log.warning("cannot write job output to %s: %s", self.path, e.strerror)

    def close(self) -> None:
        tail = b"".join(self.tail)
        self.tail.clear()
        if len(tail) > self.tail_limit:
            self.dropped += len(tail) - self.tail_limit
            tail = tail[len(tail) - self.tail_limit :]
        if self.dropped:
            self._write(f"\n[queuectl: {self.dropped} bytes of output omitted]\n".encode())
        if tail:
            self._write(tail)
        if self.file >= 0:
            os.close(self.file)
            self.file = -1
        os.close(self.fd)
