"""Use queuectl from Python: enqueue a batch, wait for it, read the results.

Shows: `queuectl_client.Client` (the same protocol as the CLI), a batch
enqueued all or nothing with `enqueue_many`, waiting for each job with
`wait_for`, and reading the output files a job's `logs` reply names.
Run it with the project's Python: .venv/bin/python examples/python_api/enqueue_and_wait.py
It uses the queue that QUEUECTL_HOME names; without one, a throwaway home
with a daemon of its own, stopped at the end.
"""

import os
import shutil
import signal
import tempfile
import time

from queuectl_client import Client, DaemonUnavailable, RequestFailed
from queuectl_client import protocol as p

own_home = None if os.environ.get("QUEUECTL_HOME") else tempfile.mkdtemp(prefix="queuectl-example.")


def stop_own_daemon(c: Client) -> None:
    """The throwaway home's daemon: stop it (SIGTERM: gracefully) and remove the home."""
    try:
        pid = c.status().pid
    except (DaemonUnavailable, RequestFailed):
        pid = 0
    c.close()
    if pid:
        os.kill(pid, signal.SIGTERM)
    for _ in range(200 if pid else 0):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    shutil.rmtree(str(own_home), ignore_errors=True)


c = Client(own_home)  # connects to the daemon, starting it if needed
try:
    ids = c.enqueue_many(
        [{"command": f"echo $(( {n} * {n} ))", "priority": n} for n in range(1, 6)]
        + [{"command": "echo 'no such tool' >&2; exit 127", "max_retries": 0}]
    )
    print(f"enqueued {len(ids)} jobs: {', '.join(ids)}")
    c.worker_start(2)
    for job_id in ids:
        job = c.wait_for(job_id, ("completed", "dead"), timeout=60)
        reply = c.request(p.Logs(job_id))
        with open(reply.stdout if job.state == "completed" else reply.stderr) as f:
            output = f.read().strip()
        print(f"{job_id}: {job.state} after {job.attempts} run(s): {output}")
    try:
        c.enqueue("true", id=ids[0])
    except RequestFailed as e:
        print(f"refused as expected: {e.message} (exit code {e.exit_code} in the CLI)")
    print(c.status().jobs)
finally:
    if own_home is not None:
        stop_own_daemon(c)
    c.close()
