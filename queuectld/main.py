"""`queuectld`'s command line, and the one place that picks the store and builds the daemon."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import sys

from queuectl_client import paths as _paths
from queuectl_client.wire import VERSION

from . import faults
from .config import ConfigError, parse_size
from .daemon import EXIT_FATAL, Daemon, StartupError
from .journal_store import JournalStore
from .pg.connect import Unreachable, check_node, resolve
from .policy import Policy, PolicyError
from .store import Store, StoreError
from .systemd import Systemd

log = logging.getLogger("queuectld")

EXIT_USAGE = 2  # a --store that cannot be used as given (a password on argv, not a postgresql:// URL)
EXIT_POLICY = 78  # the command policy file cannot be used (EX_CONFIG): the daemon does not start without it


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="queuectld", description="The queuectl daemon.")
    ap.add_argument("--home", help="state directory (default: $QUEUECTL_HOME, else $XDG_STATE_HOME/queuectl)")
    ap.add_argument("--workers", type=int, metavar="N", help="set the worker pool to N (stored, like `worker start`)")
    ap.add_argument("--grace", type=float, default=10.0, metavar="S",
                    help="seconds running jobs get to finish at shutdown (default 10); "
                         "then SIGTERM, and SIGKILL 3 s later")
    ap.add_argument("--salvage", action="store_true",
                    help="start from a damaged journal: keep every readable record, report what was dropped")
    ap.add_argument("--compact-min", default="4M", metavar="SIZE",
                    help="compact the journal once its logs pass SIZE and twice the snapshot (default 4M)")
    ap.add_argument("--allow-commands", metavar="FILE",
                    help="run only the commands a pattern of FILE matches (one a line: a glob, or re: and a "
                         "regular expression, matched against the whole command); read again on SIGHUP")
    ap.add_argument("--store", metavar="URL",
                    help="keep the queue in PostgreSQL (postgresql://USER@HOST/DB; default: $QUEUECTL_STORE, else "
                         "the journal in the home); every daemon on one database serves one queue")
    ap.add_argument("--store-password-file", metavar="FILE",
                    help="the database password: the first line of FILE (or $QUEUECTL_STORE_PASSWORD_FILE; "
                         "else PGPASSWORD or ~/.pgpass; never in --store, which every user can read)")
    ap.add_argument("--poll-only", action="store_true",
                    help="a shared store behind a pooler in transaction mode (PgBouncer): no LISTEN, poll every 0.5 s")
    ap.add_argument("--node", metavar="NAME", help="this node's name in a shared store (default: the host name)")
    ap.add_argument("--import-journal", metavar="DIR",
                    help="copy the embedded store's journal in DIR into the empty PostgreSQL queue of --store, "
                         "print what was copied, and exit")
    ap.add_argument("--version", action="version", version=f"queuectld {VERSION}")
    args = ap.parse_args(argv)
    try:
        args.compact_min = parse_size(args.compact_min, minimum=4096)
    except ConfigError as e:
        ap.error(f"--compact-min: {e}")
    if args.workers is not None and not 0 <= args.workers <= 1024:
        ap.error("--workers must be between 0 and 1024")
    if args.import_journal is not None:
        args.import_journal = os.path.abspath(args.import_journal)  # the caller's, before the daemon's chdir
    if not 0 <= args.grace <= 86400:
        ap.error("--grace must be between 0 and 86400 seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s queuectld[%(process)d] %(levelname)s %(message)s",
    )
    try:
        faults.arm_from_env()
    except ValueError as e:
        log.error("%s", e)
        return EXIT_FATAL
    policy = None
    if args.allow_commands is not None:
        try:  # before the chdir below: a relative FILE is the caller's
            policy = Policy.load(os.path.abspath(args.allow_commands))
        except PolicyError as e:
            log.error("cannot start: %s", e)
            return EXIT_POLICY
    try:  # before anything: a password on argv is refused whatever else is wrong
        url, secret = resolve(args.store, args.store_password_file, os.environ)
        if url and args.node is not None:
            check_node(args.node)
    except StoreError as e:
        log.error("cannot start: %s", e)
        return EXIT_USAGE
    systemd = Systemd.from_environ()  # before anything copies the environment for jobs
    explicit_home = args.home or os.environ.get("QUEUECTL_HOME")
    paths = _paths.resolve(args.home)
    if explicit_home:
        # Absolute, so that a job running `queuectl` from its own directory reaches this daemon.
        os.environ["QUEUECTL_HOME"] = paths.state
    # Jobs enqueued without a directory run in the user's home, as under cron; a user without
    # one (a system user, a container) gets the root directory.
    try:
        os.chdir(os.path.expanduser("~"))
    except OSError:
        log.warning("the home directory %s is missing; jobs without a directory run in /", os.path.expanduser("~"))
        os.chdir("/")
    if args.import_journal is not None:
        if not url:
            log.error("cannot import: name the database with --store URL or QUEUECTL_STORE")
            return 1
        from .pg.importer import main as import_journal

        return import_journal(url, args.import_journal, args.node, **secret)
    store: Store
    if url:
        from .pg.store import PgStore  # asyncpg only when a database keeps the queue

        store = PgStore(url, node=args.node, home=paths.state, **secret)
        store.poll_only = args.poll_only
    else:
        store = JournalStore(paths.journal, salvage=args.salvage, compact_min=args.compact_min, node=args.node)
    daemon = Daemon(paths, store, args.workers, args.grace, systemd, policy)
    import uvloop

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(daemon.run())
    except StartupError as e:
        log.error("%s", e)
        return e.exit_code
    except Unreachable as e:
        log.error("cannot start: %s", e)
        return e.exit_code
    except StoreError as e:
        log.error("cannot start: %s", e)
        return EXIT_FATAL
    except OSError as e:
        if e.errno == errno.ENOSPC:
            log.error("cannot start: disk full (%s)", e.filename or e)
        elif e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            log.error("cannot start: %s: %s", e.filename or "", e.strerror)
        else:
            log.error("cannot start: %s", e)
        return EXIT_FATAL


def entry() -> None:
    sys.exit(main())
