"""How fast can a Python event loop run trivial jobs?  Three ways, side by side with the raw limit.

Each design runs N `sh -c true` jobs with 4 in flight, capturing stdout and
stderr through pipes and killing each job's process group at its exit, as
queuectld does, but without the journal or the queue:

- loop:      posix_spawn on the event loop thread, pidfd per job (queuectld before its spawner processes);
- spawners:  K small processes forked before the loop starts, each spawning,
             watching and reaping its jobs with poll(); the loop hands out job
             numbers and reads exits over socketpairs.

The baseline is one plain spawn-and-wait loop per core, in parallel.

    .venv/bin/python bench/spawn_designs.py [N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import socket
import statistics
import struct
import sys
import time

import uvloop

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.run import raw_spawn_rate

IN_FLIGHT = 4


def _spawn(env: dict[str, str], devnull: int) -> tuple[int, int, int]:
    r1, w1 = os.pipe2(os.O_CLOEXEC)
    r2, w2 = os.pipe2(os.O_CLOEXEC)
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "true"], env, setsid=True, file_actions=[
        (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, w1, 1), (os.POSIX_SPAWN_DUP2, w2, 2)])
    os.close(w1)
    os.close(w2)
    os.set_blocking(r1, False)
    os.set_blocking(r2, False)
    return pid, r1, r2


def _finish(pid: int, pipes: tuple[int, int]) -> int:
    try:
        os.killpg(pid, 9)  # the leader is a zombie until reaped: its group id is still ours
    except ProcessLookupError:
        pass
    _, status = os.waitpid(pid, 0)
    for r in pipes:
        try:
            os.read(r, 65536)
        except BlockingIOError:
            pass
        os.close(r)
    return status


def loop_design(n: int) -> float:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        env, devnull = dict(os.environ), os.open(os.devnull, os.O_RDONLY)
        done = started = 0
        fin: asyncio.Future[None] = loop.create_future()

        def start() -> None:
            nonlocal started
            if started < n:
                started += 1
                pid, r1, r2 = _spawn(env, devnull)
                pidfd = os.pidfd_open(pid)
                loop.add_reader(pidfd, exited, pid, pidfd, r1, r2)

        def exited(pid: int, pidfd: int, r1: int, r2: int) -> None:
            nonlocal done
            loop.remove_reader(pidfd)
            os.close(pidfd)
            _finish(pid, (r1, r2))
            done += 1
            if done == n:
                fin.set_result(None)
            else:
                start()

        t = time.perf_counter()
        for _ in range(IN_FLIGHT):
            start()
        await fin
        os.close(devnull)
        return n / (time.perf_counter() - t)

    return uvloop.run(main())


def _spawner(sock: socket.socket) -> None:
    """A spawner process: job numbers in, (number, wait status) out."""
    env, devnull = dict(os.environ), os.open(os.devnull, os.O_RDONLY)
    poll = select.poll()
    poll.register(sock.fileno(), select.POLLIN)
    running: dict[int, tuple[int, int, int, int]] = {}
    buf = b""
    while True:
        for fd, _ in poll.poll():
            if fd == sock.fileno():
                data = sock.recv(65536)
                if not data:
                    os._exit(0)
                buf += data
                while len(buf) >= 4:
                    (number,), buf = struct.unpack_from(">I", buf), buf[4:]
                    pid, r1, r2 = _spawn(env, devnull)
                    pidfd = os.pidfd_open(pid)
                    poll.register(pidfd, select.POLLIN)
                    running[pidfd] = (number, pid, r1, r2)
            else:
                number, pid, r1, r2 = running.pop(fd)
                poll.unregister(fd)
                os.close(fd)
                sock.sendall(struct.pack(">Ii", number, _finish(pid, (r1, r2))))


def spawners_design(n: int, k: int) -> float:
    socks, pids = [], []
    for _ in range(k):
        a, b = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            a.close()
            _spawner(b)
        b.close()
        socks.append(a)
        pids.append(pid)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        done = started = 0
        load = [0] * k
        fin: asyncio.Future[None] = loop.create_future()

        def give() -> None:
            nonlocal started
            if started < n:
                started += 1
                i = min(range(k), key=load.__getitem__)
                load[i] += 1
                socks[i].send(struct.pack(">I", started))

        def readable(i: int) -> None:
            nonlocal done
            data = socks[i].recv(65536)
            for _ in range(len(data) // 8):
                load[i] -= 1
                done += 1
                if done == n:
                    fin.set_result(None)
                    return
                give()

        for i, s in enumerate(socks):
            s.setblocking(False)
            loop.add_reader(s.fileno(), readable, i)
        t = time.perf_counter()
        for _ in range(IN_FLIGHT):
            give()
        await fin
        return n / (time.perf_counter() - t)

    try:
        return uvloop.run(main())
    finally:
        for s in socks:
            s.close()
        for pid in pids:
            os.waitpid(pid, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("n", type=int, nargs="?", default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    rows = {
        f"raw: {cores} spawn+wait loops in parallel": lambda: raw_spawn_rate(cores, args.n // cores),
        "loop: posix_spawn on the event loop": lambda: loop_design(args.n),
        "spawners: 1 process": lambda: spawners_design(args.n, 1),
        f"spawners: {cores} processes": lambda: spawners_design(args.n, cores),
    }
    results = {name: statistics.median([fn() for _ in range(args.repeats)]) for name, fn in rows.items()}
    raw = next(iter(results.values()))
    for name, rate in results.items():
        print(f"{name:42} {rate:7,.0f} jobs/s  {rate / raw:5.0%} of raw")


if __name__ == "__main__":
    main()
