"""The PostgreSQL store's statements on the claim path: claim, start, end (see store.py)."""

from __future__ import annotations

from . import rows

# A CTE that makes its statement's own transaction commit without waiting for the WAL flush (the sessions
# default to synchronous_commit on: claims are durable before a run starts); for starts and ends, which may
# be lost in a crash of the database and are made good by the node's reconciliation (see DECISIONS).
LAZY = "lazy AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true) AS v)"

WAITING = "state IN ('pending', 'failed') AND blocked = 0 AND locked_by IS NULL"

# `a` takes from the groups neither paused nor capped, read in the statement: a filter on a list of them
# passed in made the cached generic plan a sequential scan and a sort (an unknown list of names estimated
# to exclude every row of a column with one value), 3.6 ms at 10,000 waiting and worse with more.
# Capped groups: `b` takes each named group's room ($3, $4) through the per-group index, which leaves out the
# default group; `d` takes the default group's room ($7, 0 unless it is capped) through the claim index.
_CLAIM = f"""
WITH a AS MATERIALIZED (
    SELECT id, priority, due, ticket FROM queuectl_jobs_live j
     WHERE {WAITING} AND due <= $1
       AND NOT EXISTS (SELECT 1 FROM queuectl_groups g WHERE g.name = j.grp AND (g.paused OR g.parallel > 0))
     ORDER BY priority DESC, due, ticket LIMIT $2 FOR UPDATE SKIP LOCKED
), b AS MATERIALIZED (
    SELECT j.id, j.priority, j.due, j.ticket FROM unnest($3::text[], $4::int[]) AS g(name, room)
     CROSS JOIN LATERAL (SELECT id, priority, due, ticket FROM queuectl_jobs_live
                          WHERE {WAITING} AND due <= $1 AND grp = g.name AND grp <> 'default'
                          ORDER BY priority DESC, due, ticket LIMIT g.room FOR UPDATE SKIP LOCKED) j
), d AS MATERIALIZED (
    SELECT id, priority, due, ticket FROM queuectl_jobs_live
     WHERE {WAITING} AND due <= $1 AND grp = 'default'
     ORDER BY priority DESC, due, ticket LIMIT $7 FOR UPDATE SKIP LOCKED
), pick AS (SELECT id FROM (SELECT * FROM a UNION ALL SELECT * FROM b UNION ALL SELECT * FROM d) c
             ORDER BY priority DESC, due, ticket LIMIT $2)
UPDATE queuectl_jobs_live t SET attempts = t.attempts + 1, locked_by = $5, locked_at = now(), node = $6
  FROM pick WHERE t.id = pick.id
RETURNING {rows.JOB_COLUMNS.replace("id,", "t.id,", 1)}
"""

# One table, no join: the ids find the rows through the id's unique index (or, should the statistics make the table
# look tiny, one scan of it), and each row takes its own values from the arrays at its id's place.  A join with
# `unnest` let statistics that are behind (as a queue's always are: read when most jobs were processing) pick the
# waiting jobs for the outer side, and a start of 19 compared each waiting job with each id: 13 ms with 2,000
# waiting, seconds with a million.  The state is checked on the rows the ids find, never searched by.
_START = """
WITH """ + LAZY + """
UPDATE queuectl_jobs_live j
   SET state = 'processing',
       worker = ($3::int[])[array_position($1::text[], j.id)],
       locked_by = $7 || ($3::int[])[array_position($1::text[], j.id)], locked_at = now(), node = $8,
       started_at = ($4::float8[])[array_position($1::text[], j.id)],
       updated_at = ($4::float8[])[array_position($1::text[], j.id)],
       finished_at = NULL, next_retry_at = NULL, exit_code = NULL, error_message = NULL,
       pgid = ($5::int[])[array_position($1::text[], j.id)],
       pid_start = ($6::int8[])[array_position($1::text[], j.id)], entered = nextval('queuectl_entered')
  FROM lazy
 WHERE j.id = ANY($1::text[]) AND j.state || '' IN ('pending', 'failed') AND j.blocked = 0
   AND j.locked_by = $2  -- the claim it names: a claim a rescue gave back is not this node's to start
RETURNING j.id, j.attempts
"""

# A batch of ends: the values (`e`), and what an end writes (a run whose cancel was asked ends dead).
_ENDS = """
WITH e AS (SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::int[], $6::text[],
                                $7::float8[], $8::float8[])
                  AS e(id, attempts, holder, state, exit_code, error, next_retry_at, at))"""

_ENDED = """
UPDATE queuectl_jobs j
   SET state = CASE WHEN j.cancelled THEN 'dead' ELSE e.state END,
       exit_code = e.exit_code,
       error_message = CASE WHEN j.cancelled THEN 'cancelled' ELSE e.error END,
       next_retry_at = CASE WHEN j.cancelled THEN NULL ELSE e.next_retry_at END,
       due = CASE WHEN j.cancelled OR e.next_retry_at IS NULL THEN j.due ELSE e.next_retry_at END,
       ticket = CASE WHEN e.state = 'failed' AND NOT j.cancelled THEN nextval('queuectl_ticket') ELSE j.ticket END,
       entered = nextval('queuectl_entered'), finished_at = e.at, updated_at = e.at, worker = NULL,
       locked_by = NULL, locked_at = NULL, pgid = NULL, pid_start = NULL, cancelled = false, node = NULL"""

_END = _ENDS + _ENDED + """
  FROM e WHERE j.id = e.id AND j.state = 'processing' AND j.attempts = e.attempts AND j.locked_by = e.holder
RETURNING j.id, j.state, j.error_message, j.next_retry_at, j.due, j.ticket, e.at,
          j.named AS dependents
"""


# The same for jobs no job names as a dependency (most; an add sets `named` under the row's lock, so an end
# under way is waited for), in one statement with its notifications: one round trip.  The others, and ends
# the fence refused, go through _END in a transaction.
_END_QUICK = _ENDS + f""", {LAZY},
u AS (""" + _ENDED + """
  FROM e, lazy WHERE j.id = e.id AND j.state = 'processing' AND j.attempts = e.attempts AND j.locked_by = e.holder
   AND NOT j.named
RETURNING j.id, j.state, j.error_message, j.next_retry_at, j.due, j.ticket, e.at)
SELECT u.*, (SELECT count(pg_notify('queuectl_changed', $9)) FROM (SELECT 1) x) AS changed,
       (SELECT count(*) FROM (SELECT pg_notify('queuectl_wake', '') FROM u WHERE u.state = 'failed' LIMIT 1) w) AS woke
  FROM u
"""


# A run that ended before its start was written (pg/starts.py): the start and the end in one statement, fenced on
# the claim (held by this node's '<id>/0', the claim's attempt, not started).  Jobs named as a dependency, and
# anything this does not match, go through _START and the end statements.
_START_END = """
WITH e AS (SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::int[], $6::text[],
                                $7::float8[], $8::float8[], $9::float8[])
                  AS e(id, attempts, holder, state, exit_code, error, next_retry_at, at, started)), """ + LAZY + """,
u AS (""" + _ENDED + """, started_at = e.started
  FROM e, lazy WHERE j.id = e.id AND j.state || '' IN ('pending', 'failed') AND j.blocked = 0
   AND j.attempts = e.attempts AND j.locked_by = e.holder AND NOT j.named
RETURNING j.id, j.state, j.error_message, j.next_retry_at, j.due, j.ticket, e.at)
SELECT u.*, (SELECT count(pg_notify('queuectl_changed', $10)) FROM (SELECT 1) x) AS changed,
       (SELECT count(*) FROM (SELECT pg_notify('queuectl_wake', '') FROM u WHERE u.state = 'failed' LIMIT 1) w) AS woke
  FROM u
"""
