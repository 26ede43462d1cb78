"""The PostgreSQL store's schema: versioned migrations, applied at start under an advisory lock.

`MIGRATIONS[i]` takes a database from version i to i + 1; each runs in a transaction of its own.
A database whose version is newer than the last one known here refuses the start (one line).
"""

from __future__ import annotations

from typing import Any

from ..store import StoreError

LOCK = 0x71756575  # pg_advisory_lock key of migrations ("queu")

_V1 = """
CREATE TABLE queuectl_settings (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE queuectl_node_pools (name text PRIMARY KEY, pool int NOT NULL);
CREATE TABLE queuectl_environments (key text PRIMARY KEY, vars jsonb NOT NULL);
CREATE TABLE queuectl_groups (name text PRIMARY KEY, parallel int NOT NULL DEFAULT 0,
                              paused bool NOT NULL DEFAULT false);
INSERT INTO queuectl_groups (name) VALUES ('default');
CREATE SEQUENCE queuectl_ticket CACHE 1;
CREATE SEQUENCE queuectl_entered CACHE 1;
CREATE TABLE queuectl_jobs (
    id text NOT NULL,
    command text NOT NULL,
    state text NOT NULL,
    priority int NOT NULL DEFAULT 0,
    max_retries int NOT NULL,
    run_at float8,
    timeout float8,
    cwd text,
    grp text NOT NULL DEFAULT 'default',
    env text,
    after text[],
    after_any text[],
    unique_key text,
    retry_on jsonb,
    no_retry_on jsonb,
    idle_timeout float8,
    schedule text,
    slot float8,
    late bool NOT NULL DEFAULT false,
    blocked int NOT NULL DEFAULT 0,
    cause text,
    attempts int NOT NULL DEFAULT 0,
    created_at float8 NOT NULL,
    updated_at float8 NOT NULL,
    started_at float8,
    finished_at float8,
    next_retry_at float8,
    exit_code int,
    error_message text,
    worker int,
    due float8 NOT NULL,
    ticket bigint NOT NULL DEFAULT nextval('queuectl_ticket'),
    entered bigint NOT NULL DEFAULT nextval('queuectl_entered'),
    locked_by text,
    locked_at timestamptz,
    pgid int,
    pid_start bigint,
    cancelled bool NOT NULL DEFAULT false,
    named bool NOT NULL DEFAULT false,
    node text
) PARTITION BY LIST (state);
CREATE TABLE queuectl_jobs_live PARTITION OF queuectl_jobs FOR VALUES IN ('pending', 'processing', 'failed')
    WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01,
          autovacuum_vacuum_insert_scale_factor = 0.01, fillfactor = 80);
CREATE TABLE queuectl_jobs_done PARTITION OF queuectl_jobs FOR VALUES IN ('completed', 'dead')
    WITH (autovacuum_vacuum_scale_factor = 0.05);
CREATE UNIQUE INDEX queuectl_jobs_live_id ON queuectl_jobs_live (id);
CREATE UNIQUE INDEX queuectl_jobs_done_id ON queuectl_jobs_done (id);
CREATE INDEX queuectl_jobs_claim ON queuectl_jobs_live (priority DESC, due, ticket)
    WHERE state IN ('pending', 'failed') AND blocked = 0 AND locked_by IS NULL;
CREATE INDEX queuectl_jobs_grp_claim ON queuectl_jobs_live (grp, priority DESC, due, ticket)
    WHERE state IN ('pending', 'failed') AND blocked = 0 AND locked_by IS NULL;
CREATE INDEX queuectl_jobs_locked ON queuectl_jobs (locked_by) WHERE locked_by IS NOT NULL;
CREATE INDEX queuectl_jobs_busy ON queuectl_jobs (grp) WHERE locked_by IS NOT NULL;
CREATE UNIQUE INDEX queuectl_jobs_unique_key ON queuectl_jobs_live (unique_key) WHERE unique_key IS NOT NULL;
CREATE INDEX queuectl_jobs_entered ON queuectl_jobs (state, entered);
CREATE INDEX queuectl_jobs_finished ON queuectl_jobs_done (state, finished_at);
CREATE TABLE queuectl_deps (job_id text NOT NULL, dep_id text NOT NULL, is_any bool NOT NULL,
                            PRIMARY KEY (job_id, dep_id, is_any));
CREATE INDEX queuectl_deps_dep ON queuectl_deps (dep_id);
CREATE TABLE queuectl_schedules (name text PRIMARY KEY, seq bigserial, data bytea NOT NULL,
                                 next_fire float8, paused bool NOT NULL DEFAULT false);
CREATE TABLE queuectl_audit (seq bigserial PRIMARY KEY, at float8 NOT NULL, entry bytea NOT NULL);
CREATE INDEX queuectl_audit_at ON queuectl_audit (at);
CREATE TABLE queuectl_stats (node text PRIMARY KEY, data bytea NOT NULL);
CREATE TABLE queuectl_nodes (id uuid PRIMARY KEY, name text NOT NULL, pool int NOT NULL DEFAULT 0,
                             busy int NOT NULL DEFAULT 0, version text, started_at timestamptz,
                             heartbeat_at timestamptz, lost_at timestamptz, stopped_at timestamptz);
CREATE INDEX queuectl_nodes_name ON queuectl_nodes (name);
CREATE TABLE queuectl_leader (one bool PRIMARY KEY CHECK (one), node_id uuid, until timestamptz);
CREATE TABLE queuectl_output (job_id text NOT NULL, attempt int NOT NULL, stream "char" NOT NULL,
                              seq int NOT NULL, data bytea NOT NULL, PRIMARY KEY (job_id, stream, seq));
"""

# Version 2:
# - where each node runs (host and state directory), so that a restart adopts only its own earlier runs'
#   rows, and a name taken by a live node elsewhere is refused;
# - the ticket and entered sequences step by 2**20 (pg/adding.py SPAN): a large batch takes one value and
#   numbers 2**20 rows from it, rather than calling nextval for each row;
# - the per-group claim index leaves out the default group (most jobs): a capped default group is claimed
#   through the claim index.  COPY maintains one index fewer for such jobs.
_V2 = """
ALTER TABLE queuectl_nodes ADD COLUMN host text, ADD COLUMN home text;
ALTER SEQUENCE queuectl_ticket INCREMENT BY 1048576;
ALTER SEQUENCE queuectl_entered INCREMENT BY 1048576;
DROP INDEX queuectl_jobs_grp_claim;
CREATE INDEX queuectl_jobs_grp_claim ON queuectl_jobs_live (grp, priority DESC, due, ticket)
    WHERE state IN ('pending', 'failed') AND blocked = 0 AND locked_by IS NULL AND grp <> 'default';
"""

MIGRATIONS: list[str] = [_V1, _V2]
VERSION = len(MIGRATIONS)


async def migrate(conn: Any) -> int:
    """Bring the database to VERSION; returns the version it had.  `conn`: a direct asyncpg connection."""
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS queuectl_meta (key text PRIMARY KEY, value text NOT NULL)")
        raw = await conn.fetchval("SELECT value FROM queuectl_meta WHERE key = 'schema'")
        had = int(raw) if raw is not None else 0
        if had > VERSION:
            raise StoreError(f"the database's queuectl schema is version {had}; this queuectld knows up to "
                             f"{VERSION}: upgrade queuectld")
        for version in range(had, VERSION):
            async with conn.transaction():
                await conn.execute(MIGRATIONS[version])
                await conn.execute("INSERT INTO queuectl_meta VALUES ('schema', $1) "
                                   "ON CONFLICT (key) DO UPDATE SET value = excluded.value", str(version + 1))
        return had
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK)
