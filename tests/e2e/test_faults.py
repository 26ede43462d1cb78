"""Crash safety, proven by crashing: kill -9, compaction crashes, torn and corrupt journals, EIO, ENOSPC."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Collection, Iterator

import msgspec
import pytest

from queuectl_client import Client, DaemonUnavailable, RequestFailed
from queuectl_client import protocol as p
from queuectl_client.paths import resolve
from queuectld import events as ev
from queuectld.journal_files import (
    HEADER,
    LOG_MAGIC,
    MANIFEST_MAGIC,
    Manifest,
    encode_records,
    file_seed,
    write_file,
)
from tests.conftest import QUEUECTL, QUEUECTLD, Env, wait_for

Report = Callable[[str, object], None]


def _log_file(home: str) -> str:
    d = os.path.join(home, "journal")
    return os.path.join(d, sorted(n for n in os.listdir(d) if n.startswith("log-"))[-1])


class Load:
    """Clients enqueueing (some jobs fail and retry, some fail and their retry rule kills them at once)
    until the daemon goes away; keeps the acked ids."""

    def __init__(self, home: str, threads: int = 3, prefix: str = "") -> None:
        self.home = home
        self.acked: list[str] = []
        self.prefix = prefix
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        k = 0
        try:
            with Client(self.home, autostart=False) as c:
                while True:
                    size = rng.choice((1, 1, 5, 20))
                    jobs: list[dict[str, object]] = [
                        {"command": rng.choice(("true", "exit 1", "exit 2", "sleep 0.05")), "max_retries": 2,
                         "no_retry_on": [2], "idle_timeout": 60, "id": f"{self.prefix}t{n}-{k}-{i}"}
                        for i in range(size)]
                    if size == 5:  # a pipeline: each after the one before, the last also after_any the first
                        for i in range(1, 5):
                            jobs[i]["after"] = [jobs[i - 1]["id"]]
                        jobs[4]["after_any"] = [jobs[0]["id"]]
                    ids = c.enqueue_many(jobs)
                    with self._lock:
                        self.acked.extend(ids)
                    k += 1
        except (DaemonUnavailable, RequestFailed):
            return

    def join(self) -> None:
        for t in self._threads:
            t.join(20)
            assert not t.is_alive()


CANCELLED = {"state": "dead", "error_message": "cancelled"}


class ControlLoad:
    """A client changing what controls the queue until the daemon goes away: groups and their caps,
    pauses, cancels of waiting and running jobs, retries, edits, deletes by selection, schedules added,
    paused and removed (the daemon's clock jumps an hour at each start, so each start fires every
    schedule that is not paused).  Keeps what each
    acknowledged change must leave behind, and what the one change in flight when the daemon died
    touched (it may or may not have landed)."""

    def __init__(self, home: str, prefix: str) -> None:
        self.home = home
        self.prefix = prefix
        self.groups: dict[str, tuple[int, bool]] = {}  # name -> (parallel, paused), as last acknowledged
        self.jobs: dict[str, dict[str, object]] = {}  # id -> the fields it must show
        self.created: set[str] = set()
        self.gone: set[str] = set()
        self.unsure: set[str] = set()
        self.acked = 0
        self.running_cancels: list[str] = []  # cancels acknowledged while the job was seen running
        self.keys: dict[str, str] = {}  # unique key -> the job that must hold it
        self.envs: dict[str, str] = {}  # id -> the STEP variable of its environment
        self.schedules: dict[str, bool] = {}  # name -> paused, as last acknowledged
        self.removed: set[str] = set()  # schedules whose removal was acknowledged
        self._chain: list[str] = []  # the schedules added, in order
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _send(self, touched: set[str], call: Callable[[], object]) -> object:
        self.unsure = touched
        result = call()
        self.unsure = set()
        self.acked += 1
        return result

    def _run(self) -> None:
        try:
            with Client(self.home, autostart=False) as c:
                held_before = None
                for k in range(1000):
                    held_before = self._step(c, f"{self.prefix}k{k}", held_before)
        except DaemonUnavailable:
            return
        except RequestFailed as e:
            self.errors.append(f"refused: {e}")

    def _step(self, c: Client, pre: str, held_before: str | None) -> str:
        send = self._send
        capped, held, toggled = f"{pre}-a", f"{pre}-p", f"{pre}-r"
        run, wait = f"{pre}-run", f"{pre}-wait"
        q = [f"{pre}-q{i}" for i in range(4)]
        send({capped}, lambda: c.request(p.GroupAdd(capped, 1), retry=False))
        self.groups[capped] = (1, False)
        jobs = [{"command": "sleep 5", "id": run, "group": capped, "priority": 9},
                {"command": "true", "id": wait, "group": capped, "delay": 3600}]
        self.created.update(send({run, wait}, lambda: c.enqueue_many(jobs)))  # type: ignore[arg-type]
        send({capped}, lambda: c.request(p.GroupSet(capped, 2), retry=False))
        self.groups[capped] = (2, False)
        send({wait}, lambda: _changed(c, p.Cancel(ids=[wait])))
        self.jobs[wait] = CANCELLED
        # Let the other job start if it will (a bounded look), then cancel it: running or not, it ends dead.
        deadline = time.monotonic() + 5
        while (seen := c.show(run).state) == "pending" and time.monotonic() < deadline:
            time.sleep(0.005)
        try:
            send({run}, lambda: _changed(c, p.Cancel(ids=[run])))
            self.jobs[run] = CANCELLED
            if seen == "processing":
                self.running_cancels.append(run)
        except RequestFailed as e:
            if e.code != "state":  # it ended first: nothing was changed
                raise
            self.unsure = set()
        send({held}, lambda: c.request(p.GroupAdd(held), retry=False))
        self.groups[held] = (0, False)
        send({held}, lambda: c.request(p.Pause(groups=[held]), retry=False))
        self.groups[held] = (0, True)
        # Each step's jobs have an environment of their own: an EnvDefined record with their Added.
        self.created.update(send(set(q), lambda: c.enqueue_many([{"command": "true", "id": i, "group": held,
                                                                   "env": {"STEP": pre}} for i in q])))  # type: ignore[arg-type]
        self.envs.update({job_id: pre for job_id in q})
        for job_id in q:
            self.jobs[job_id] = {"state": "pending", "group": held}
        send({q[0]}, lambda: _changed(c, p.Cancel(ids=[q[0]])))
        self.jobs[q[0]] = {**CANCELLED, "group": held}
        send({q[0]}, lambda: _changed(c, p.Retry(ids=[q[0]])))
        self.jobs[q[0]] = {"state": "pending", "attempts": 0, "error_message": None, "group": held}
        send({q[1]}, lambda: c.request(p.Edit(id=q[1], priority=7), retry=False))
        self.jobs[q[1]] = {"state": "pending", "priority": 7, "group": held}
        target = held_before or held
        send({q[2]}, lambda: c.request(p.Edit(id=q[2], group=target), retry=False))
        self.jobs[q[2]] = {"state": "pending", "group": target}
        send({q[3]}, lambda: _changed(c, p.Cancel(ids=[q[3]])))
        self.jobs[q[3]] = CANCELLED
        deleted = send({q[3]}, lambda: _changed(c, p.Delete(select=p.Selector(state="dead", group=held))))
        if deleted != [q[3]]:
            self.errors.append(f"the selection deleted {deleted}, not {[q[3]]}")
        del self.jobs[q[3]]
        self.gone.add(q[3])
        self._unique(c, pre, held)
        send({toggled}, lambda: c.request(p.GroupAdd(toggled, 3), retry=False))
        self.groups[toggled] = (3, False)
        send({toggled}, lambda: c.request(p.Pause(groups=[toggled]), retry=False))
        self.groups[toggled] = (3, True)
        send({toggled}, lambda: c.request(p.Pause(groups=[toggled], resume=True), retry=False))
        self.groups[toggled] = (3, False)
        self._schedule_step(c, f"{pre}-s")
        return held

    def _unique(self, c: Client, pre: str, group: str) -> None:
        """Unique keys taken, mapped to, freed by a cancel, taken by another job and taken back by a revive."""
        send = self._send
        key, first, second = f"{pre}-key", f"{pre}-u1", f"{pre}-u2"
        self.created.update(send({first, key}, lambda: c.enqueue_many([{"command": "true", "id": first,
                                                                          "unique_key": key, "group": group}])))
        self.keys[key] = first
        self.jobs[first] = {"state": "pending", "unique_key": key}
        mapped = send({first, key}, lambda: c.enqueue_many([{"command": "true", "id": f"{pre}-u0", "unique_key": key}]))
        if mapped != [first]:
            self.errors.append(f"a held key made {mapped}, not {[first]}")
        send({first, key}, lambda: _changed(c, p.Cancel(ids=[first])))
        del self.keys[key]
        self.jobs[first] = {**CANCELLED, "unique_key": key}
        self.created.update(send({second, key}, lambda: c.enqueue_many([{"command": "true", "id": second,
                                                                           "unique_key": key, "group": group}])))
        self.keys[key] = second
        self.jobs[second] = {"state": "pending", "unique_key": key}
        send({second, key}, lambda: _changed(c, p.Cancel(ids=[second])))
        del self.keys[key]
        self.jobs[second] = {**CANCELLED, "unique_key": key}
        send({first, key}, lambda: _changed(c, p.Retry(ids=[first])))
        self.keys[key] = first
        self.jobs[first] = {"state": "pending", "attempts": 0, "unique_key": key}

    def check_keys(self, c: Client) -> int:
        """Each acknowledged key is held by its job: another job with it creates nothing."""
        checked = 0
        for key, holder in self.keys.items():
            if key not in self.unsure:
                ids = c.enqueue_many([{"command": "true", "unique_key": key, "delay": 3600}])
                assert ids == [holder], (key, ids, holder)
                checked += 1
        return checked
    def _schedule_step(self, c: Client, name: str) -> None:
        """Add a schedule, pause the one added before it, remove the one before that."""
        send, chain = self._send, self._chain
        job = p.JobSpec(command="true")
        send({name}, lambda: c.request(p.ScheduleAdd(name, "*/5 * * * *", job, "UTC"), retry=False))
        self.schedules[name] = False
        chain.append(name)
        if len(chain) >= 2:
            send({chain[-2]}, lambda: c.request(p.SchedulePause(chain[-2]), retry=False))
            self.schedules[chain[-2]] = True
        if len(chain) >= 3:
            send({chain[-3]}, lambda: c.request(p.ScheduleRemove(chain[-3]), retry=False))
            del self.schedules[chain[-3]]
            self.removed.add(chain[-3])

    def join(self) -> None:
        self._thread.join(20)
        assert not self._thread.is_alive()
        assert not self.errors, self.errors

    def check_envs(self, c: Client) -> int:
        """Every acknowledged job still there runs with the environment it was enqueued with."""
        checked = 0
        for job_id, step in self.envs.items():
            if job_id in self.created - self.unsure - self.gone:
                env = c.show(job_id).env
                assert env is not None and env.get("STEP") == step, (job_id, env)
                checked += 1
        return checked

    def check(self, groups: dict[str, tuple[int, bool]], jobs: dict[str, p.Job],
              schedules: dict[str, p.ScheduleInfo]) -> int:
        """Every acknowledged change holds (the one in flight may have landed or not); returns the checks made."""
        checked = 0
        for name, paused in self.schedules.items():
            if name not in self.unsure:
                assert name in schedules and schedules[name].paused == paused, (name, schedules.get(name), paused)
                checked += 1
        for name in self.removed - self.unsure:
            assert name not in schedules, name
            checked += 1
        for name, want in self.groups.items():
            if name not in self.unsure:
                assert groups.get(name) == want, (name, groups.get(name), want)
                checked += 1
        for job_id in self.created - self.unsure:
            job = jobs.get(job_id)
            if job_id in self.gone:
                assert job is None, job
            else:
                assert job is not None, f"acknowledged job {job_id} lost"
                got = {field: getattr(job, field) for field in self.jobs.get(job_id, {})}
                assert got == self.jobs.get(job_id, {}), (job_id, got)
            checked += 1
        return checked


def _check_dependencies(jobs: dict[str, p.Job]) -> int:
    """No job ran before its `after` dependencies completed; a pending one is blocked by exactly its live
    dependencies; one that died of a dependency names a dead one.  Returns the jobs with dependencies."""
    live = ("pending", "processing", "failed")
    checked = 0
    for job in jobs.values():
        if not job.after and not job.after_any:
            continue
        checked += 1
        state = {d: jobs[d].state if d in jobs else None for d in [*(job.after or ()), *(job.after_any or ())]}
        if job.attempts > 0:
            assert all(state[d] == "completed" for d in job.after or ()), (job.id, state)
        if job.state == "pending":
            assert job.blocked_by == [d for d in state if state[d] in live], (job.id, job.blocked_by, state)
            assert not any(state[d] == "dead" for d in job.after or ()), (job.id, state)
        elif job.state == "dead" and (job.error_message or "").startswith("dependency "):
            cause = (job.error_message or "").split()[1]
            assert cause in (job.after or ()) and state[cause] in ("dead", None), (job.id, job.error_message, state)
    return checked


def _all_ids(env: Env) -> list[str]:
    with Client(env.home, autostart=False) as c:
        return [j.id for j in c.list()]


def test_kill_9_at_random_moments_under_mixed_load_loses_nothing(env: Env, report: Report) -> None:
    rng = random.Random(20261128)
    kills = 0
    env_checks = 0
    acked: set[str] = set()
    ruled: set[str] = set()  # jobs a retry rule sent to dead
    controls: list[ControlLoad] = []
    env.start_daemon("--workers", "0")
    env.ok("config", "set", "backoff-base", "1.1")
    env.stop_daemon()
    fires = 0
    for round_ in range(25):
        # The daemon's clock jumps an hour at each round: each start fires the schedules that are not paused.
        env.env["QUEUECTL_FAULTS"] = f"clock-ahead={3600 * round_}"
        env.start_daemon("--workers", "2", "--compact-min", "16K")
        load = Load(env.home, prefix=f"r{round_}-")
        control = ControlLoad(env.home, prefix=f"r{round_}")
        time.sleep(rng.uniform(0.1, 0.8))  # the moment of the crash: random on purpose
        env.stop_daemon(signal.SIGKILL)
        kills += 1
        try:
            load.join()
            control.join()
            controls.append(control)
            acked.update(load.acked)
            env.start_daemon("--workers", "0")
            with Client(env.home, autostart=False) as c:
                fired_before = _schedules(c)  # a real slot may come while the jobs are listed
                listed = list(c.list())
                groups = _groups(c)
                schedules = _schedules(c)
                assert c.status().jobs["processing"] == 0
            jobs = {j.id: j for j in listed}
            assert len(jobs) == len(listed)  # no id twice
            missing = acked - jobs.keys()
            assert not missing, f"{len(missing)} acknowledged jobs lost, e.g. {sorted(missing)[:3]}"
            for job_id in acked:  # the retry rule and idle timeout survive replay and snapshots
                job = jobs[job_id]
                assert (job.no_retry_on, job.idle_timeout) == ([2], 60), job
                # An exit 2 with retries left is never retried: dead at once, the rule named.
                assert not (job.exit_code == 2 and job.state == "failed"), job
                if job.exit_code == 2 and job.attempts <= job.max_retries:
                    ruled.add(job_id)
                    assert job.error_message == "exited with status 2; exit 2 is not retried", job
            checked = sum(done.check(groups, jobs, schedules) for done in controls)  # every round's, each restart
            fires = _check_fires(fired_before, schedules, listed)
            with_deps = _check_dependencies(jobs)
            with Client(env.home, autostart=False) as c:
                keys = sum(done.check_keys(c) for done in controls)
                env_checks += control.check_envs(c)  # this round's environments
        except AssertionError as e:
            raise AssertionError(f"round {round_}: {e}\nthe daemon's log ends:\n{env.log()[-4000:]}") from None
        env.stop_daemon()
    del env.env["QUEUECTL_FAULTS"]
    compactions = env.log().count("compacted the journal")
    assert compactions >= 1
    assert fires, "no schedule fired during the kill rounds"
    running_cancels = [job_id for done in controls for job_id in done.running_cancels
                       if job_id not in done.unsure and jobs[job_id].attempts == 1]
    assert running_cancels, "no cancel of a running job was acknowledged before a kill"
    report("kill -9 rounds survived", kills)
    report("acknowledged ids checked after each restart", len(acked))
    report("acknowledged ids lost", 0)
    report("jobs a retry rule sent to dead, each checked after every later restart", len(ruled))
    assert ruled
    report("acknowledged control changes during the kill rounds", sum(done.acked for done in controls))
    report("acknowledged control changes checked after the last restart (groups and jobs)", checked)
    report("cancels of running jobs acknowledged, each ended dead \"cancelled\"", len(running_cancels))
    report("acknowledged control changes lost", 0)
    report("unique keys checked held by their job after the last restart", keys)
    report("job environments checked after the kills", env_checks)
    assert env_checks > 0
    report("schedule fires during the kill rounds, each with exactly one job", fires)
    report("compactions during the kill rounds", compactions)
    report("jobs with dependencies checked after the last restart", with_deps)
    assert with_deps > 0


def _check_fires(before: dict[str, p.ScheduleInfo], schedules: dict[str, p.ScheduleInfo], jobs: list[p.Job]) -> int:
    """Each schedule's fires made exactly its jobs, each named by its slot: no slot fired twice or lost
    its job.  The jobs were listed between the two counts `before` and `schedules`.  Returns the fires."""
    made: dict[str, list[p.Job]] = {}
    for job in jobs:
        if job.schedule is not None:
            made.setdefault(job.schedule, []).append(job)
            stamp = time.strftime("%Y%m%dT%H%MZ", time.gmtime(job.slot or 0))
            assert job.id == f"{job.schedule}-{stamp}", job
    for name, s in schedules.items():
        least = before[name].fires if name in before else 0
        assert least <= len(made.get(name, [])) <= s.fires, (name, least, s.fires, [j.id for j in made.get(name, [])])
        if s.fires == least:
            assert s.last_job is None or any(j.id == s.last_job for j in made[name]), s
    return sum(s.fires for s in schedules.values())


@pytest.mark.parametrize("step", [1, 2, 3, 4, 5, 6])
def test_a_crash_at_each_compaction_step_leaves_the_old_or_the_new_state_whole(env: Env, step: int) -> None:
    # Schedule records in the state each compaction folds: one added, one paused, one removed, and a fire
    # (the daemon comes back two hours later, mid-way through an hour: the hourly schedule fires once, late).
    env.start_daemon("--workers", "0")
    job = p.JobSpec(command="true")
    with Client(env.home, autostart=False) as c:
        for name in ("hourly", "paused", "removed"):
            c.request(p.ScheduleAdd(name, "@hourly", job, "UTC"))
        c.request(p.SchedulePause("paused"))
        c.request(p.ScheduleRemove("removed"))
    env.stop_daemon()
    ahead = 7200 + 1800 - (time.time() + 7200) % 3600
    env.env["QUEUECTL_FAULTS"] = f"crash-at=compact-{step},clock-ahead={ahead}"
    env.start_daemon("--compact-min", "16K", "--workers", "1")
    env.env["QUEUECTL_FAULTS"] = f"clock-ahead={ahead}"  # the daemons after it keep that clock
    with Client(env.home, autostart=False) as c:
        acked: list[str] = wait_for(lambda: [j.id for j in _jobs(c).values() if j.schedule], what="the fire")
    schedules = {"hourly": False, "paused": True}  # name -> paused, as acknowledged
    groups = {"default": (0, False), "capped": (2, False), "held": (0, True)}
    # The group whose change was in flight when the daemon died, and what it may be: the change landed or not.
    maybe: dict[str, list[tuple[int, bool] | None]] = {}
    with Client(env.home, autostart=False) as c:
        # Control records in the state each compaction folds: groups with caps, a pause, cancels, an edit,
        # and a running job whose cancel is asked for (it ignores SIGTERM, and the grace is an hour).
        # A run that its retry rule sends to dead, and the settings and fields of the rules.
        acked.append(c.enqueue("exit 2", id="ruled", no_retry_on=[2], max_retries=3))
        env.wait_state("ruled", "dead")
        c.config_set("backoff-max", "5m")
        acked.append(c.enqueue("trap '' TERM; sleep 600", id="stubborn", priority=9))
        env.wait_state("stubborn", "processing")  # it holds the only worker: nothing else starts
        c.request(p.GroupAdd("capped", 5))
        c.request(p.GroupSet("capped", 2))
        c.request(p.GroupAdd("held"))
        c.request(p.Pause(groups=["held"]))
        acked += c.enqueue_many([{"command": "true", "id": f"h{i}", "group": "held"} for i in range(3)])
        acked.append(c.enqueue("true", id="rules", group="held", retry_on=[75, "timeout"], idle_timeout=2.5))
        assert _changed(c, p.Cancel(ids=["stubborn"], grace=3600)) == ["stubborn"]
        assert _changed(c, p.Cancel(ids=["h0", "h2"])) == ["h0", "h2"]
        assert _changed(c, p.Retry(ids=["h2"])) == ["h2"]
        c.request(p.Edit(id="h1", priority=4, group="capped"))
        # Dependencies: a pipeline whose head is cancelled (its after dependents die) and brought back
        # (they come back, blocked), and a job deleted with --cascade (its dependent dies).
        acked += c.enqueue_many([{"command": "true", "id": "x1", "group": "held"},
                                 {"command": "true", "id": "x2", "after": ["x1"]},
                                 {"command": "true", "id": "x3", "after": ["x2"]},
                                 {"command": "true", "id": "xa", "after_any": ["x1"]}])
        c.enqueue_many([{"command": "true", "id": "y1", "group": "held"}])  # deleted below: not in `acked`
        acked += c.enqueue_many([{"command": "true", "id": "y2", "after": ["y1"]}])
        assert _changed(c, p.Cancel(ids=["x1"])) == ["x1"]
        assert c.show("x3").error_message == "dependency x2 is dead"
        assert _changed(c, p.Retry(ids=["x1"])) == ["x1"]
        c.request(p.Delete(id="y1", cascade=True))
        # Unique keys: one held, one taken back by a revive after another job held it.
        acked += c.enqueue_many([{"command": "true", "id": "u1", "unique_key": "nightly", "group": "held"}])
        assert c.enqueue_many([{"command": "true", "id": "u2", "unique_key": "nightly"}]) == ["u1"]
        acked += c.enqueue_many([{"command": "true", "id": "u3", "unique_key": "weekly", "group": "held"}])
        assert _changed(c, p.Cancel(ids=["u3"])) == ["u3"]
        acked += c.enqueue_many([{"command": "true", "id": "u4", "unique_key": "weekly", "group": "held"}])
        assert _changed(c, p.Cancel(ids=["u4"])) == ["u4"]
        assert _changed(c, p.Retry(ids=["u3"])) == ["u3"]
        # Environments: one shared by two jobs, another, and one whose only job is deleted (a snapshot drops it).
        acked += c.enqueue_many([{"command": "true", "id": f"v{i}", "group": "held", "env": {"SECRET": f"s{i % 2}"}}
                                 for i in range(4)], environ={"BASE": "b"})
        c.enqueue("true", id="dropped", group="held", env={"DROPPED": "1"})
        c.request(p.Delete(id="dropped"))
        try:
            for k in range(1000):
                acked += c.enqueue_many([{"command": "echo " + "x" * 100, "id": f"c{k}-{i}"} for i in range(10)])
                if k % 10 == 0:  # more control records, in the old logs and the new one
                    name = f"k{k}"
                    maybe = {name: [None, (k % 4, False)]}
                    c.request(p.ScheduleAdd(name, "@daily", job, "UTC"))
                    schedules[name] = False
                    c.request(p.GroupAdd(name, k % 4))
                    groups[name] = (k % 4, False)
                    if k % 20 == 0:
                        maybe = {name: [(k % 4, False), (k % 4, True)]}
                        c.request(p.Pause(groups=[name]))
                        groups[name] = (k % 4, True)
                    maybe = {}
        except DaemonUnavailable:
            pass
    assert env.daemon is not None and env.daemon.wait(10) == 70, "the daemon did not reach the crash point"
    env.daemon = None
    env.start_daemon("--workers", "0")
    ids = _all_ids(env)
    assert set(acked) <= set(ids) and len(ids) == len(set(ids))
    assert len(ids) - len(acked) <= 10  # at most the batch whose reply was lost
    with Client(env.home, autostart=False) as c:
        _check_groups(_groups(c), groups, maybe)
        jobs = _jobs(c)
        assert c.status().jobs["processing"] == 0
        _check_schedules(_schedules(c), schedules, maybe, jobs)
    # The running job's cancel held through the crash: its run ended dead, "cancelled", not retried.
    assert (jobs["stubborn"].state, jobs["stubborn"].error_message, jobs["stubborn"].attempts) == \
        ("dead", "cancelled", 1)
    assert (jobs["h0"].state, jobs["h0"].error_message) == ("dead", "cancelled")
    assert (jobs["h2"].state, jobs["h2"].error_message, jobs["h2"].attempts) == ("pending", None, 0)
    assert (jobs["h1"].state, jobs["h1"].priority, jobs["h1"].group) == ("pending", 4, "capped")
    assert (jobs["ruled"].state, jobs["ruled"].attempts, jobs["ruled"].error_message) == \
        ("dead", 1, "exited with status 2; exit 2 is not retried")
    rules = jobs["rules"]
    assert (rules.state, rules.retry_on, rules.no_retry_on, rules.idle_timeout) == \
        ("pending", [75, "timeout"], None, 2.5)
    with Client(env.home, autostart=False) as c:
        assert c.config_get("backoff-max") == "300"
    assert {j: (jobs[j].state, jobs[j].blocked_by) for j in ("x1", "x2", "x3", "xa")} == {
        "x1": ("pending", []), "x2": ("pending", ["x1"]), "x3": ("pending", ["x2"]), "xa": ("pending", ["x1"])}
    assert "y1" not in jobs and (jobs["y2"].state, jobs["y2"].error_message) == ("dead", "dependency y1 is dead")
    assert _check_dependencies(jobs) == 4
    assert "u2" not in jobs and (jobs["u3"].state, jobs["u4"].state) == ("pending", "dead")
    names = sorted(os.listdir(os.path.join(env.home, "journal")))
    assert not [n for n in names if n.endswith(".tmp")], names
    with Client(env.home, autostart=False) as c:
        assert [c.show(f"v{i}").env for i in range(4)] == [{"BASE": "b", "SECRET": f"s{i % 2}"} for i in range(4)]
        c.enqueue("true", id="dropped-again", group="held", env={"DROPPED": "1"})
    env.enqueue(command="true", id="after-crash")
    env.stop_daemon()
    env.start_daemon("--workers", "0")
    assert len(_all_ids(env)) == len(ids) + 2
    with Client(env.home, autostart=False) as c:
        _check_groups(_groups(c), groups, maybe)
        _check_schedules(_schedules(c), schedules, maybe, _jobs(c))
        assert c.show("v3").env == {"BASE": "b", "SECRET": "s1"}
        assert (c.show("dropped-again").env or {}).get("DROPPED") == "1"
        # The keys as the crash left them, then as the replay after it keeps them.
        assert c.enqueue_many([{"command": "true", "unique_key": "nightly"},
                               {"command": "true", "unique_key": "weekly"}]) == ["u1", "u3"]
        assert _changed(c, p.Cancel(ids=["u1"])) == ["u1"]
        assert c.enqueue_many([{"command": "true", "id": "u5", "unique_key": "nightly"}]) == ["u5"]
    env.stop_daemon()
    env.start_daemon("--workers", "0")
    with Client(env.home, autostart=False) as c:
        assert c.enqueue_many([{"command": "true", "unique_key": "nightly"},
                               {"command": "true", "unique_key": "weekly"}]) == ["u5", "u3"]
    del env.env["QUEUECTL_FAULTS"]


def _check_schedules(found: dict[str, p.ScheduleInfo], acked: dict[str, bool], maybe: Collection[str],
                     jobs: dict[str, p.Job]) -> None:
    """The schedules are as acknowledged (the one added in flight may be missing); the fire before the
    crash is there once, with its job, late."""
    assert {n: s.paused for n, s in found.items() if n not in maybe} == \
        {n: paused for n, paused in acked.items() if n not in maybe}
    hourly = found["hourly"]
    assert hourly.fires == 1 and hourly.last_late and jobs[hourly.last_job or ""].late
    assert [j.id for j in jobs.values() if j.schedule] == [hourly.last_job]


def _check_groups(found: dict[str, tuple[int, bool]], acked: dict[str, tuple[int, bool]],
                  maybe: dict[str, list[tuple[int, bool] | None]]) -> None:
    """The groups are as acknowledged; the one whose change was in flight is as before or after it."""
    for name, options in maybe.items():
        assert found.get(name) in options, (name, found.get(name), options)
    assert {n: g for n, g in found.items() if n not in maybe} == {n: g for n, g in acked.items() if n not in maybe}


@pytest.mark.parametrize("damage", ["cut-1", "cut-half", "garbage", "zeros", "huge-length"])
def test_a_damaged_tail_is_truncated_and_reported(env: Env, damage: str) -> None:
    env.start_daemon()
    for i in range(5):
        env.enqueue(command="true", id=f"k{i}")
    env.stop_daemon(signal.SIGKILL)
    log = _log_file(env.home)
    size = os.path.getsize(log)
    with open(log, "r+b") as f:
        if damage == "cut-1":
            f.truncate(size - 1)
        elif damage == "cut-half":
            f.truncate(size - 40)
        else:
            f.seek(0, os.SEEK_END)
            f.write({"garbage": os.urandom(777), "zeros": b"\0" * 8192,
                     "huge-length": b"\xff\xff\xff\xf0" + b"\0" * 12 + b"abc"}[damage])
    env.start_daemon()
    expected = [f"k{i}" for i in range(4 if damage.startswith("cut") else 5)]
    assert _all_ids(env) == expected
    assert "dropped a torn or unreadable tail of" in env.log()


def test_corruption_mid_log_refuses_to_start_and_salvage_recovers_the_rest(env: Env) -> None:
    env.start_daemon()
    for i in range(20):
        env.enqueue(command="echo " + "y" * 40, id=f"m{i}")
    env.stop_daemon()
    log = _log_file(env.home)
    with open(log, "r+b") as f:
        data = f.read()
        at = data.index(b"m10") + 1  # inside the record that added m10
        f.seek(at)
        f.write(b"#")
    r = subprocess.run([QUEUECTLD, "--home", env.home], capture_output=True, text=True, timeout=20, env=env.env)
    assert r.returncode == 1
    assert log in r.stderr and "corrupt record at offset" in r.stderr and "--salvage" in r.stderr, r.stderr
    assert env.q("status").code == 3  # nothing started, and nothing was replaced
    env.start_daemon("--salvage")
    assert _all_ids(env) == [f"m{i}" for i in range(20) if i != 10]
    assert "salvage dropped" in env.log()
    env.stop_daemon()
    env.start_daemon()  # the repaired journal starts normally
    assert len(_all_ids(env)) == 19


@pytest.mark.parametrize("path", ["quick", "full"])
def test_a_lost_reply_resent_by_the_client_adds_the_job_once(env: Env, path: str) -> None:
    env.env["QUEUECTL_FAULTS"] = "crash-at=enqueue-committed"
    env.start_daemon()
    del env.env["QUEUECTL_FAULTS"]
    # The daemon dies after the fsync, before its reply; the client starts a new one and resends.
    # One job as an argument takes the CLI's quick path; a line on stdin takes the full one.
    job = json.dumps({"command": "true"})
    if path == "quick":
        r = env.q("enqueue", job, QUEUECTL_NO_AUTOSTART="0")
    else:
        r = env.q("enqueue", "-", input=job + "\n", QUEUECTL_NO_AUTOSTART="0")
    assert r.code == 0, r
    job_id = r.out.strip()
    assert _all_ids(env) == [job_id]
    r = env.q("enqueue", json.dumps({"command": "true", "id": job_id}))
    assert r.code == 1 and "already exists" in r.err


def test_fdatasync_eio_fails_the_request_stops_the_daemon_and_replay_recovers(env: Env) -> None:
    env.env["QUEUECTL_FAULTS"] = "fdatasync-eio=40"
    env.start_daemon()
    del env.env["QUEUECTL_FAULTS"]
    acked: list[str] = []
    failure = None
    with Client(env.home, autostart=False) as c:
        for i in range(200):
            try:
                acked.append(c.enqueue("true", id=f"e{i}"))
            except (RequestFailed, DaemonUnavailable) as e:
                failure = e
                break
    assert isinstance(failure, RequestFailed) and "fdatasync failed" in failure.message, failure
    assert env.daemon is not None and env.daemon.wait(10) != 0
    env.daemon = None
    env.start_daemon()
    ids = set(_all_ids(env))
    assert set(acked) <= ids
    assert "nothing more will be acknowledged" in env.log()


def _can_mount() -> bool:
    return os.geteuid() == 0


@pytest.fixture
def small_home() -> Iterator[str]:
    import tempfile

    if not _can_mount():
        pytest.skip("mounting a small tmpfs needs root; the in-process ENOSPC test covers this case")
    path = tempfile.mkdtemp(prefix="qc-full-", dir="/tmp")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", path], capture_output=True)
    if r.returncode != 0:
        os.rmdir(path)
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield path
    subprocess.run(["umount", "-l", path], check=False)
    os.rmdir(path)


def _fill(path: str) -> str:
    filler = os.path.join(path, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_disk_full_refuses_writes_keeps_reads_and_recovers_by_itself(small_home: str) -> None:
    env = Env(small_home)
    try:
        env.start_daemon()
        before = [env.enqueue(command="true", id=f"d{i}") for i in range(5)]
        filler = _fill(small_home)
        # The log's last page may still have room: write until the disk says no.
        with Client(small_home, autostart=False) as c:
            for i in range(5000):
                try:
                    before.append(c.enqueue("true", id=f"fill{i}"))
                except RequestFailed as e:
                    assert e.code == "disk_full", e
                    break
        refused = "refused"
        r = env.q("enqueue", json.dumps({"command": "true", "id": refused}))
        assert r.code == 1, r
        assert r.err == "queuectl: disk full: the journal could not be written; nothing was changed\n"
        r = env.q("enqueue", "-", input="".join(json.dumps({"command": "true"}) + "\n" for _ in range(50)))
        assert r.code == 1 and "disk full" in r.err, r
        assert _all_ids(env) == before  # reads work, nothing half-done
        assert env.ok("status", "--json").json()["jobs"]["pending"] == len(before)
        os.unlink(filler)
        env.enqueue(command="true", id="after")  # no restart needed
        env.stop_daemon()
        env.start_daemon()
        assert _all_ids(env) == [*before, "after"]
        assert refused not in before
    finally:
        if env.daemon is not None:
            env.daemon.kill()
            env.daemon.wait()


def test_the_daemon_refuses_another_users_connection(env: Env) -> None:
    import shutil

    if os.geteuid() != 0 or not shutil.which("runuser"):
        pytest.skip("needs root and runuser to act as a second user")
    env.start_daemon()
    sock = os.path.join(env.home, "queuectld.sock")
    probe = (
        "import socket, struct, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    s.connect({sock!r})\n"
        "except PermissionError:\n"
        "    print('EACCES'); sys.exit(0)\n"
        "print(s.recv(4096))\n"
    )

    def as_nobody() -> str:
        r = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-I", "-c", probe],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert as_nobody().strip() == "EACCES"  # the 0700 directory keeps it out
    os.chmod(env.home, 0o711)
    os.chmod(sock, 0o666)
    assert "permission denied" in as_nobody()  # and SO_PEERCRED refuses it at the socket
    assert env.q("status").code == 0


def test_a_runtime_dir_that_is_a_symlink_or_not_ours_is_refused(home: str, tmp_path: os.PathLike[str]) -> None:
    runtime = os.path.join(str(tmp_path), "run")
    os.mkdir(runtime, 0o700)
    target = os.path.join(str(tmp_path), "elsewhere")
    os.mkdir(target, 0o700)
    os.symlink(target, os.path.join(runtime, "queuectl"))
    env = dict(os.environ, XDG_RUNTIME_DIR=runtime, XDG_STATE_HOME=home)
    env.pop("QUEUECTL_HOME", None)
    r = subprocess.run([QUEUECTLD], capture_output=True, text=True, timeout=20, env=env)
    assert r.returncode == 1 and "refusing" in r.stderr and "symlink" in r.stderr, r.stderr
    if os.geteuid() == 0:
        os.unlink(os.path.join(runtime, "queuectl"))
        os.mkdir(os.path.join(runtime, "queuectl"), 0o700)
        os.chown(os.path.join(runtime, "queuectl"), 65534, 65534)
        r = subprocess.run([QUEUECTLD], capture_output=True, text=True, timeout=20, env=env)
        assert r.returncode == 1 and "owned by uid 65534" in r.stderr, r.stderr


def test_fd_count_stays_flat_and_no_zombies_over_10000_jobs(env: Env, report: Report) -> None:
    daemon = env.start_daemon()
    fd_dir = f"/proc/{daemon.pid}/fd"
    before = len(os.listdir(fd_dir))
    env.ok("enqueue", "-", input="".join(json.dumps({"command": "true"}) + "\n" for _ in range(10_000)))
    env.ok("worker", "start", "--count", "4", "--detach")
    wait_for(lambda: env.ok("status", "--json").json()["jobs"]["completed"] == 10_000, 120, "10,000 jobs")
    after = len(os.listdir(fd_dir))
    zombies = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == daemon.pid:
            zombies.append(pid)
    assert zombies == []
    assert after <= before + 2, (before, after)
    report("10k jobs: daemon fds before/after", f"{before}/{after}, zombies 0")


def test_a_stdout_flood_is_capped_and_blocks_nothing(env: Env, report: Report) -> None:
    from tests.conftest import rss_kib

    daemon = env.start_daemon("--workers", "2")
    env.ok("config", "set", "output-limit", "1M")
    rss_before = rss_kib(daemon.pid)
    flood = env.enqueue(command="yes flood", timeout=3, max_retries=0)
    env.wait_state(flood, "processing")
    quick = env.enqueue(command="echo still served")
    env.wait_state(quick, "completed", timeout=5)
    job = env.wait_state(flood, "dead", timeout=15)
    assert job["error_message"] == "timed out after 3 s"
    out_path = os.path.join(env.home, "output", f"{flood}.out")
    size = os.path.getsize(out_path)
    assert 1 << 20 <= size < (1 << 20) + 200
    rss_after = rss_kib(daemon.pid)
    assert rss_after - rss_before < 32 * 1024, (rss_before, rss_after)
    report("stdout flood: bytes kept / daemon RSS growth", f"{size} / {rss_after - rss_before} KiB")


def test_many_enqueue_processes_at_once_all_acknowledged(env: Env) -> None:
    env.start_daemon()
    procs = [subprocess.Popen([QUEUECTL, "enqueue", json.dumps({"command": "true", "id": f"p{i}"})],
                              env=env.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(40)]
    codes = [p.wait(30) for p in procs]
    assert codes == [0] * 40
    assert len(_all_ids(env)) == 40


# -- queue control under crashes -------------------------------------------------------------------


def _changed(c: Client, msg: p.Message) -> list[str]:
    """Send a request answered with `Changed` frames: the ids it changed, once the last frame came."""
    ids: list[str] = []
    for reply in c.stream(msg):
        assert isinstance(reply, p.Changed), reply
        ids += reply.ids
    return ids


def _groups(c: Client) -> dict[str, tuple[int, bool]]:
    reply = c.request(p.GroupList())
    return {g.name: (g.parallel, g.paused) for g in reply.groups}


def _schedules(c: Client) -> dict[str, p.ScheduleInfo]:
    reply = c.request(p.ScheduleList())
    return {s.name: s for s in reply.schedules}


def _jobs(c: Client) -> dict[str, p.Job]:
    return {j.id: j for j in c.list()}


# The records of format 3, the last before groups: a job has no group, a run's `Running` no cancel flag,
# and an enqueue's job is its first seven fields.


class _Running3(ev.Record, frozen=True, tag="G"):
    id: str
    pgid: int
    pid_start: int


class _NewJob3(msgspec.Struct, array_like=True):
    id: str
    command: str
    max_retries: int
    priority: int
    run_at: float | None
    timeout: float | None
    cwd: str | None


class _Added3(ev.Record, frozen=True, tag="a"):
    at: float
    jobs: list[_NewJob3]


def _job3(job_id: str, state: str, ticket: int, t: float, **kw: object) -> ev.Job3:
    fields: dict[str, object] = dict(
        id=job_id, command="true", max_retries=3, priority=0, run_at=None, timeout=None, cwd=None, state=state,
        attempts=0, created_at=t, updated_at=t, started_at=None, finished_at=None, next_retry_at=None,
        exit_code=None, error_message=None, worker=None, due=t, ticket=ticket,
    )
    fields.update(kw)
    return ev.Job3(**fields)  # type: ignore[arg-type]


def _write_format3_journal(path: str) -> None:
    """A journal as the last version before groups left it: a QCTLSNP3 snapshot and a log after it,
    written with the journal's own framing."""
    os.makedirs(path, mode=0o700)
    base = 40  # the records the snapshot folded
    t = time.time() - 3600  # an hour ago: within keep-completed, and every job is due
    snapshot = [
        ev.ConfigChanged("backoff-base", "1"),
        ev.PoolSized(0),
        ev.Restored3([_job3("p-low", "pending", 3, t), _job3("p-high", "pending", 4, t, priority=5)]),
        ev.Restored3([_job3("was-running", "processing", 1, t, attempts=1, started_at=t + 1, worker=1)]),
        ev.Restored3([_job3("done", "completed", 2, t, attempts=1, started_at=t + 1, finished_at=t + 2,
                            exit_code=0)]),
        ev.Restored3([_job3("retrying", "failed", 5, t, attempts=1, finished_at=t + 2, next_retry_at=t + 3,
                            due=t + 3, exit_code=1, error_message="exited with status 1")]),
        ev.Restored3([_job3("gave-up", "dead", 6, t, attempts=4, finished_at=t + 2, exit_code=1,
                            error_message="exited with status 1")]),
        _Running3("was-running", 0, 0),
        ev.SnapshotEnd(6, 6),
    ]
    generation = os.urandom(8)
    body, _ = encode_records(snapshot, file_seed(generation), base)  # type: ignore[arg-type]
    write_file(os.path.join(path, "snap-1"), HEADER.pack(b"QCTLSNP3", generation, base) + body)
    generation = os.urandom(8)
    added = _Added3(t + 5, [_NewJob3("logged", "true", 3, 0, None, None, None)])
    body, _ = encode_records([added], file_seed(generation), base)  # type: ignore[list-item]
    write_file(os.path.join(path, "log-2"), HEADER.pack(LOG_MAGIC, generation, base) + body)
    manifest = msgspec.msgpack.encode(Manifest("snap-1", ["log-2"], 3))
    write_file(os.path.join(path, "MANIFEST"), MANIFEST_MAGIC + zlib.crc32(manifest).to_bytes(4, "big") + manifest)


# Format 4, the last before the scheduling fields: an enqueue's job is its first eight fields, ending
# with its group.


class _NewJob4(_NewJob3, array_like=True):
    """An enqueued job of format 4, the last before the scheduling fields: format 3's, then its group."""

    group: str


class _Added4(ev.Record, frozen=True, tag="a"):
    at: float
    jobs: list[_NewJob4]


def _job4(job_id: str, state: str, ticket: int, t: float, **kw: object) -> ev.Job4:
    fields: dict[str, object] = dict(
        id=job_id, command="true", max_retries=3, priority=0, run_at=None, timeout=None, cwd=None, group="default",
        state=state, attempts=0, created_at=t, updated_at=t, started_at=None, finished_at=None, next_retry_at=None,
        exit_code=None, error_message=None, worker=None, due=t, ticket=ticket,
    )
    fields.update(kw)
    return ev.Job4(**fields)  # type: ignore[arg-type]


def _write_format4_journal(path: str) -> None:
    os.makedirs(path, mode=0o700)
    base = 30
    t = time.time() - 3600
    snapshot = [
        ev.ConfigChanged("backoff-base", "1"),
        ev.PoolSized(0),
        ev.GroupDefined("default", 0, False),
        ev.GroupDefined("batch", 1, True),
        ev.Restored4([_job4("waiting", "pending", 3, t, group="batch", priority=2, timeout=30.0)]),
        ev.Restored4([_job4("was-running", "processing", 1, t, attempts=1, started_at=t + 1, worker=1)]),
        ev.Restored4([_job4("done", "completed", 2, t, attempts=1, started_at=t + 1, finished_at=t + 2,
                            exit_code=0, cwd="/tmp")]),
        ev.Running("was-running", 0, 0, False),
        ev.SnapshotEnd(3, 3),
    ]
    generation = os.urandom(8)
    body, _ = encode_records(snapshot, file_seed(generation), base)  # type: ignore[arg-type]
    write_file(os.path.join(path, "snap-1"), HEADER.pack(b"QCTLSNP4", generation, base) + body)
    generation = os.urandom(8)
    added = _Added4(t + 5, [_NewJob4("logged", "echo hi", 2, 1, None, None, None, "default")])
    body, _ = encode_records([added], file_seed(generation), base)  # type: ignore[list-item]
    write_file(os.path.join(path, "log-2"), HEADER.pack(LOG_MAGIC, generation, base) + body)
    manifest = msgspec.msgpack.encode(Manifest("snap-1", ["log-2"], 3))
    write_file(os.path.join(path, "MANIFEST"), MANIFEST_MAGIC + zlib.crc32(manifest).to_bytes(4, "big") + manifest)


def _snapshot_magic(journal: str) -> bytes | None:
    try:
        with open(os.path.join(journal, "MANIFEST"), "rb") as f:
            name = msgspec.msgpack.decode(f.read()[12:], type=Manifest).snapshot
        if name is None:
            return None
        with open(os.path.join(journal, name), "rb") as f:
            return f.read(8)
    except FileNotFoundError:
        return None  # between a compaction's rename and its manifest: look again


def test_a_format_3_snapshot_is_read_and_upgraded_with_its_jobs_in_default(env: Env) -> None:
    journal = resolve(env.home).journal
    _write_format3_journal(journal)
    env.start_daemon("--workers", "0", "--compact-min", "16K")
    with Client(env.home, autostart=False) as c:
        jobs = _jobs(c)
        assert {j.group for j in jobs.values()} == {"default"}
        states = {job_id: j.state for job_id, j in jobs.items()}
        assert states == {"p-low": "pending", "p-high": "pending", "was-running": "failed", "done": "completed",
                          "retrying": "failed", "gave-up": "dead", "logged": "pending"}
        assert jobs["was-running"].attempts == 1 and "interrupted" in (jobs["was-running"].error_message or "")
        assert (jobs["gave-up"].attempts, jobs["gave-up"].error_message) == (4, "exited with status 1")
        assert _groups(c) == {"default": (0, False)}
        assert c.config_get("backoff-base") == "1"
        # The upgraded jobs take the new commands: a group to move to, a cancel, a retry.
        c.request(p.GroupAdd("later", 1))
        c.request(p.Edit(id="p-low", group="later"))
        assert _changed(c, p.Cancel(ids=["retrying"])) == ["retrying"]
        assert _changed(c, p.Retry(ids=["gave-up"])) == ["gave-up"]
        c.worker_start(1)  # one at a time: the order they start in is the queue's order
    ran = ["p-high", "p-low", "logged", "gave-up"]
    for job_id in [*ran, "was-running"]:  # the interrupted run is retried a second after the start
        env.wait_state(job_id, "completed")
    with Client(env.home, autostart=False) as c:
        # Priority first, then due time and the tickets the old snapshot drew.
        assert sorted(ran, key=lambda job_id: c.show(job_id).started_at or 0) == ran
        assert c.show("p-low").group == "later"
        assert (c.show("retrying").state, c.show("retrying").error_message) == ("dead", "cancelled")
        c.worker_start(0)
        # Enough records for a compaction: the new snapshot is format 4, and holds what the old one did.
        c.enqueue_many([{"command": "echo " + "x" * 200, "id": f"fill-{i}", "run_at": 4e9} for i in range(200)])
        wait_for(lambda: _snapshot_magic(journal) == b"QCTLSNP5", what="a format-5 snapshot")
        before = _jobs(c)
    env.stop_daemon()
    env.start_daemon("--workers", "0")
    with Client(env.home, autostart=False) as c:
        assert _jobs(c) == before
        assert _groups(c) == {"default": (0, False), "later": (1, False)}


def test_a_format_4_snapshot_is_read_and_upgraded_keeping_groups_and_fields(env: Env) -> None:
    journal = resolve(env.home).journal
    _write_format4_journal(journal)
    env.start_daemon("--workers", "0", "--compact-min", "16K")
    with Client(env.home, autostart=False) as c:
        jobs = _jobs(c)
        assert {job_id: j.state for job_id, j in jobs.items()} == {
            "waiting": "pending", "was-running": "failed", "done": "completed", "logged": "pending"}
        waiting = jobs["waiting"]
        assert (waiting.group, waiting.priority, waiting.timeout) == ("batch", 2, 30.0)
        assert (waiting.after, waiting.unique_key, waiting.retry_on, waiting.blocked_by) == (None, None, None, [])
        assert jobs["done"].cwd == "/tmp"
        assert (jobs["logged"].command, jobs["logged"].max_retries, jobs["logged"].priority) == ("echo hi", 2, 1)
        assert _groups(c) == {"default": (0, False), "batch": (1, True)}
        c.enqueue_many([{"command": "echo " + "x" * 200, "id": f"fill-{i}", "run_at": 4e9} for i in range(200)])
        wait_for(lambda: _snapshot_magic(journal) == b"QCTLSNP5", what="a format-5 snapshot")
        before = _jobs(c)
    env.stop_daemon()
    env.start_daemon("--workers", "1")
    with Client(env.home, autostart=False) as c:
        assert _jobs(c).keys() == before.keys()
        assert c.show("waiting").group == "batch"
    env.wait_state("logged", "completed")
