"""The queue's rules, the same for every store: checking and naming new jobs, and a run's outcome.

Pure functions of their arguments, with time passed in: a store applies
what these decide, so every store gives the same answers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from queuectl_client.environ import inherited, minimal
from queuectl_client.protocol import DEFAULT_GROUP, MAX_COMMAND_BYTES, MAX_TIME, STATES, JobSpec

from .config import Config
from .exits import Failure
from .model import Extras, Job, NewJob

PENDING, PROCESSING, COMPLETED, FAILED, DEAD = STATES
WAITS = (PENDING, FAILED)  # the states in which a job waits to start
# `list` without a state: the jobs that need attention first, each state in the order its jobs entered it.
LIST_ORDER = (PROCESSING, PENDING, FAILED, DEAD, COMPLETED)

# A job's environment and its command go to one execve, whose strings Linux bounds at a quarter of
# the stack limit (2 MiB with the usual 8 MiB): an environment may take half of that.
MAX_ENV_BYTES = 1 << 20
INTERRUPTED = "interrupted: daemon stopped while the job ran"
CANCELLED = "cancelled"


class QueueError(Exception):
    """A request the queue refuses; `code` is a protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Outcome:
    """How a run ended, decided before any store records it."""

    __slots__ = ("error", "exit_code", "next_retry_at", "state")

    def __init__(self, state: str, exit_code: int | None, error: str | None, next_retry_at: float | None) -> None:
        self.state = state
        self.exit_code = exit_code
        self.error = error
        self.next_retry_at = next_retry_at


def new_jobs(specs: list[JobSpec], at: float, config: Config, id_prefix: str = "",
             cwd: str | None = None, env: dict[str, str] | None = None,
             envs: dict[str, dict[str, str]] | None = None, first: int = 1, single: bool | None = None) -> list[NewJob]:
    """Check and name a batch: ids, run_at from `delay` or an ISO time, the config's defaults,
    each job's environment (see `environments`; `envs` receives them by key).  A part of a larger
    batch gives its first job's number (`first`) and `single=False`.

    Duplicates within the batch are refused here; against the jobs a store
    already holds, by the store.
    """
    keys = environments(specs, env, {} if envs is None else envs)
    seen: set[str] = set()
    max_retries, timeout = config.max_retries, config.job_timeout
    if single is None:
        single = len(specs) == 1
    new = []
    for i, s in enumerate(specs, first):
        job_id = s.id
        if job_id is None:
            if not id_prefix:
                raise QueueError("invalid", "a job without an id needs the request's id_prefix")
            job_id = id_prefix if single else f"{id_prefix}-{i}"
        if job_id in seen:
            raise QueueError("invalid", f"invalid job {job_id}: its id appears twice in the batch")
        seen.add(job_id)
        command = s.command
        if len(command) * 4 > MAX_COMMAND_BYTES and len(command.encode()) > MAX_COMMAND_BYTES:
            raise QueueError("invalid", f"invalid job {job_id}: the command is {len(command.encode()):,} bytes, "
                                        f"longer than one execve argument can be ({MAX_COMMAND_BYTES:,}); "
                                        "put it in a script file")
        run_at = s.run_at
        if run_at.__class__ is not float and run_at is not None:
            run_at = run_at.timestamp()  # type: ignore[union-attr]
        if s.delay is not None:
            if run_at is not None:
                raise QueueError("invalid", f"job {job_id}: give run_at or delay, not both")
            run_at = at + s.delay
        if run_at is not None and not 0 <= run_at <= MAX_TIME:
            raise QueueError("invalid", f"job {job_id}: run_at must fall between 1970 and 9999")
        ours = next((name for name in s.env if name.startswith("QUEUECTL_")), None) if s.env else None
        if ours is not None:
            raise QueueError("invalid", f"invalid job {job_id}: env.{ours}: QUEUECTL_* variables are set by "
                                        "queuectl for each run, not by a job")
        if s.retry_on is not None and s.no_retry_on is not None:
            raise QueueError("invalid", f"job {job_id}: give retry_on or no_retry_on, not both")
        if (s.after and job_id in s.after) or (s.after_any and job_id in s.after_any):
            raise QueueError("invalid", f"job {job_id}: a job cannot depend on itself")
        new.append(NewJob(
            job_id, command, max_retries if s.max_retries is None else s.max_retries, s.priority,
            run_at, timeout if s.timeout is None else s.timeout, s.cwd or cwd, s.group or DEFAULT_GROUP,
            keys[i - first], _extras(s),
        ))
    return new


def plain(s: JobSpec) -> bool:
    """The job names no id, unique key or dependency, and has no extras (see `_extras`)."""
    return (s.id is None and not s.after and not s.after_any and s.unique_key is None and s.retry_on is None
            and s.no_retry_on is None and s.idle_timeout is None)


def _extras(s: JobSpec) -> Extras | None:
    """The job's rarer fields, or None when it uses none of them (most jobs)."""
    if (s.after or s.after_any or s.unique_key is not None or s.retry_on is not None
            or s.no_retry_on is not None or s.idle_timeout is not None):
        return Extras(_ids(s.after), _ids(s.after_any), s.unique_key, _rule(s.retry_on), _rule(s.no_retry_on),
                      s.idle_timeout)
    return None


def compose_env(caller: dict[str, str] | None, own: dict[str, str] | None, inherit: bool) -> dict[str, str] | None:
    """A job's environment: the caller's (less the terminal's and queuectl's variables), or with
    `inherit` false only its PATH, HOME, USER, LANG and SHELL; then the job's own `env` over it.
    None: the caller sent none and the job asks for nothing, so it runs with the daemon's."""
    if caller is None and own is None and inherit:
        return None
    base = (inherited if inherit else minimal)(caller or {})
    if own:
        base.update(own)
    return base


def env_key(env: dict[str, str]) -> str:
    """An environment's key in a store's table: 16 bytes of BLAKE2b of its sorted items, in hex.
    Names and values hold no NUL byte, so NUL-separated items cannot be read two ways."""
    h = hashlib.blake2b(digest_size=16)
    for name, value in sorted(env.items()):
        h.update(b"%s\0%s\0" % (name.encode(), value.encode()))
    return h.hexdigest()


def environments(specs: list[JobSpec], caller: dict[str, str] | None,
                 envs: dict[str, dict[str, str]]) -> list[str | None]:
    """Each job's environment key (`compose_env`, `env_key`), with the environments put in `envs`.
    The same job `env` (none, most often) is composed and hashed once per batch."""
    made: dict[tuple[bool, tuple[tuple[str, str], ...] | None], str | None] = {}
    keys: list[str | None] = []
    for s in specs:
        own = s.env
        mine = (s.inherit_env, tuple(sorted(own.items())) if own else None)
        if mine not in made:
            vars = compose_env(caller, own or None, s.inherit_env)
            if vars is not None:
                size = sum(len(k.encode()) + len(v.encode()) + 2 for k, v in vars.items())
                if size > MAX_ENV_BYTES:
                    raise QueueError("invalid", f"invalid job{'' if s.id is None else ' ' + s.id}: its environment "
                                                f"is {size:,} bytes, and one exec takes at most {MAX_ENV_BYTES:,} "
                                                "with room for its command")
            key = None if vars is None else env_key(vars)
            if key is not None:
                envs.setdefault(key, vars)  # type: ignore[arg-type]
            made[mine] = key
        keys.append(made[mine])
    return keys


def _ids(ids: list[str] | None) -> list[str] | None:
    """A dependency list without repeats; an empty one is none."""
    return list(dict.fromkeys(ids)) if ids else None


def _rule(codes: Sequence[int | str] | None) -> list[int | str] | None:
    return list(dict.fromkeys(codes)) if codes is not None else None


def backoff(base: float, attempts: int, cap: float = MAX_TIME) -> float:
    """Seconds before retry number `attempts`: base ^ attempts, at most `cap`, without overflowing."""
    try:
        return min(base**attempts, cap, MAX_TIME)
    except OverflowError:
        return min(cap, MAX_TIME)


def retried(job: Job, failure: Failure) -> bool:
    """Whether the job's retry rule lets this kind of failure be retried.  A failure without a kind
    (the run could not start, the daemon stopped it) is retried as any failure is: no rule names it."""
    if failure is None:
        return True
    if job.retry_on is not None:
        return failure in job.retry_on
    if job.no_retry_on is not None:
        return failure not in job.no_retry_on
    return True


def failure_name(failure: Failure) -> str:
    """A failure kind as a retry rule's message says it: "exit 2", "timeout", "signal"."""
    return f"exit {failure}" if isinstance(failure, int) else str(failure)


def plan_end(job: Job, at: float, exit_code: int | None, error: str | None, config: Config,
             cancelled: bool = False, failure: Failure = None) -> Outcome:
    """The outcome of a run: completed, or failed with a retry time, or dead.

    A run whose cancel was asked for ends dead, never retried, whatever its
    exit.  A failed run with retries left is retried after backoff-base ^
    attempts seconds, at most backoff-max, unless the job's retry rule says
    its failure kind (`failure`: an exit code, "timeout", "signal") is not
    retried: then it is dead at once, and its error says so after the reason
    ("exited with status 2; exit 2 is not retried").  A job that used up its
    retries is dead with the run's own error, whatever its rule.
    """
    if cancelled:
        return Outcome(DEAD, exit_code, CANCELLED, None)
    if error is None and exit_code == 0:
        return Outcome(COMPLETED, 0, None, None)
    if job.attempts <= job.max_retries:
        if not retried(job, failure):
            ruled = f"{failure_name(failure)} is not retried"
            return Outcome(DEAD, exit_code, f"{error}; {ruled}" if error else ruled, None)
        retry_at = min(at + backoff(config.backoff_base, job.attempts, config.backoff_max), MAX_TIME)
        return Outcome(FAILED, exit_code, error, retry_at)
    return Outcome(DEAD, exit_code, error, None)
