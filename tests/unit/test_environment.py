"""The enqueuer's environment as the rules compose it and the queue keeps it: one copy per environment."""

from __future__ import annotations

from queuectl_client.environ import inherited, minimal
from queuectl_client.protocol import JobSpec
from queuectld import events as ev
from queuectld.config import Config
from queuectld.queue import Queue
from queuectld.rules import compose_env, env_key, new_jobs

CALLER = {"PATH": "/bin", "HOME": "/home/a", "LANG": "C.UTF-8", "TERM": "xterm", "SHLVL": "2", "_": "/bin/x",
          "DISPLAY": ":0", "WINDOWID": "1", "QUEUECTL_HOME": "/q", "FOO": "bar", "a-b": "x", "BAD": "\udcff"}


def test_the_caller_passes_on_all_but_the_terminals_and_queuectls_variables() -> None:
    assert inherited(CALLER) == {"PATH": "/bin", "HOME": "/home/a", "LANG": "C.UTF-8", "FOO": "bar"}
    assert minimal(CALLER) == {"PATH": "/bin", "HOME": "/home/a", "LANG": "C.UTF-8"}


def test_a_jobs_environment_is_inherited_or_minimal_then_its_own_env_over_it() -> None:
    assert compose_env(CALLER, None, True) == inherited(CALLER)
    assert compose_env(CALLER, {"FOO": "job", "X": "1"}, True) == {**inherited(CALLER), "FOO": "job", "X": "1"}
    assert compose_env(CALLER, {"X": "1"}, False) == {**minimal(CALLER), "X": "1"}
    # No environment from the caller and none asked for: the daemon's (an older client).
    assert compose_env(None, None, True) is None
    assert compose_env(None, {"X": "1"}, True) == {"X": "1"}


def test_the_key_is_a_hash_of_the_sorted_items_and_tells_environments_apart() -> None:
    assert env_key({"A": "1", "B": "2"}) == env_key({"B": "2", "A": "1"})
    assert len(env_key({})) == 32
    assert env_key({"A": "1B=2"}) != env_key({"A": "1", "B": "2"})
    assert env_key({"AB": "1"}) != env_key({"A": "B1"})


def test_a_batch_names_one_environment_per_distinct_one() -> None:
    specs = [JobSpec(command="true", id=f"j{i}") for i in range(1000)]
    specs += [JobSpec(command="true", id="own", env={"X": "1"}), JobSpec(command="true", id="own2", env={"X": "1"}),
              JobSpec(command="true", id="clean", inherit_env=False)]
    envs: dict[str, dict[str, str]] = {}
    jobs = new_jobs(specs, 0.0, Config(), env=CALLER, envs=envs)
    assert len(envs) == 3 and len({job.env for job in jobs}) == 3
    assert jobs[0].env is jobs[999].env  # one string for the batch
    assert envs[jobs[0].env] == inherited(CALLER)  # type: ignore[index]
    assert envs[jobs[1000].env] == {**inherited(CALLER), "X": "1"}  # type: ignore[index]
    assert jobs[1000].env == jobs[1001].env
    assert envs[jobs[1002].env] == minimal(CALLER)  # type: ignore[index]
    assert new_jobs([JobSpec(command="true", id="old")], 0.0, Config())[0].env is None


def _add(q: Queue, at: float, specs: list[JobSpec], caller: dict[str, str]) -> None:
    envs: dict[str, dict[str, str]] = {}
    new = new_jobs(specs, at, Config(), env=caller, envs=envs)
    for e in q.envs.new(envs):
        q.apply(e)
    q.apply(ev.Added(at, new))


def test_a_snapshot_keeps_the_environments_jobs_use_and_the_table_drops_the_others() -> None:
    q = Queue()
    _add(q, 1.0, [JobSpec(command="true", id="a"), JobSpec(command="true", id="b")], {"A": "1"})
    _add(q, 2.0, [JobSpec(command="true", id="c")], {"C": "1"})
    assert q.envs.new({env_key({"A": "1"}): {"A": "1"}}) == []  # known: not written again
    q.apply(ev.Deleted("c", 3.0))
    records = q.snapshot()
    defined = [e for e in records if isinstance(e, ev.EnvDefined)]
    assert defined == [ev.EnvDefined(env_key({"A": "1"}), {"A": "1"})]
    # Written before the jobs that use them.
    assert records.index(defined[0]) < min(i for i, e in enumerate(records) if isinstance(e, ev.Restored))
    assert env_key({"C": "1"}) not in q.envs and q.envs.get(q.get("a").env) == {"A": "1"}
    # The state a snapshot rebuilds: the same jobs, the same environments, one key string for them.
    again = Queue()
    for e in records:
        again.apply(ev.decoder.decode(ev.encoder.encode(e)) if not isinstance(e, ev.Restored) else e)
    assert again.envs.get(again.get("b").env) == {"A": "1"}


def test_replayed_keys_are_one_string_per_environment() -> None:
    key = env_key({"A": "1"})
    from queuectld.model import NewJob

    record = ev.encoder.encode(ev.Added(1.0, [NewJob(f"j{i}", "true", 0, 0, None, None, env=key) for i in range(3)]))
    decoded = ev.interned(ev.decoder.decode(record))
    assert isinstance(decoded, ev.AddedJobs)
    assert decoded.jobs[0].env is decoded.jobs[2].env
