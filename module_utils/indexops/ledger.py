"""The ledger: one row per job in schema indexops of each target database.

A job is recorded as running before its first DDL statement, so a crash never leaves an
unrecorded change; the row is then finished as succeeded or failed. The definition before the
change is kept, so a dropped index can be recreated exactly.
"""

from __future__ import annotations

import json

import psycopg2

from ansible.module_utils.indexops.catalog import fetch_all, fetch_one
from ansible.module_utils.indexops.errors import IndexOpsError

STATES = ("queued", "running", "succeeded", "failed", "rolled_back")

CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS indexops"
CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS indexops.jobs (
    job_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change_id         text NOT NULL,
    spec_digest       text NOT NULL,
    kind              text NOT NULL,
    action            text,
    environment       text NOT NULL,
    state             text NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'rolled_back')),
    attempts          integer NOT NULL DEFAULT 0,
    last_error        text,
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    duration_s        double precision,
    index_schema      text,
    index_name        text,
    table_name        text,
    definition_before text,
    definition_after  text,
    owner             text,
    rollback_note     text,
    operator          text,
    override_reason   text,
    expected          jsonb,
    observed          jsonb,
    backend_pid       integer,
    application_name  text
)
"""
CREATE_LOOKUP_INDEX = "CREATE INDEX IF NOT EXISTS jobs_change_idx ON indexops.jobs (change_id, job_id)"

LEDGER_EXISTS = "SELECT to_regclass('indexops.jobs') IS NOT NULL AS present"

INSERT = """
INSERT INTO indexops.jobs (change_id, spec_digest, kind, action, environment, state, index_schema, index_name,
                           table_name, definition_before, owner, rollback_note, operator, override_reason,
                           expected, backend_pid, application_name)
VALUES (%(change_id)s, %(spec_digest)s, %(kind)s, %(action)s, %(environment)s, 'running', %(index_schema)s,
        %(index_name)s, %(table_name)s, %(definition_before)s, %(owner)s, %(rollback_note)s, %(operator)s,
        %(override_reason)s, %(expected)s::jsonb, pg_backend_pid(), current_setting('application_name'))
RETURNING job_id
"""

FINISH = """
UPDATE indexops.jobs
SET state = %(state)s, action = coalesce(%(action)s, action), attempts = %(attempts)s, last_error = %(last_error)s,
    finished_at = now(), duration_s = extract(epoch FROM now() - started_at),
    definition_after = %(definition_after)s, observed = %(observed)s::jsonb
WHERE job_id = %(job_id)s
"""

# A successful rollback closes the change's earlier successful runs in the same environment;
# jobs that started after it (a later re-apply) are not touched.
MARK_ROLLED_BACK = """
UPDATE indexops.jobs SET state = 'rolled_back'
WHERE change_id = %s AND environment = %s AND job_id < %s AND kind IN ('apply', 'rehearse')
  AND state = 'succeeded'
RETURNING job_id
"""

LATEST = """
SELECT job_id, change_id, spec_digest, kind, action, environment, state, attempts, last_error,
       started_at::text, finished_at::text, duration_s, index_schema, index_name, table_name,
       definition_before, definition_after, owner, rollback_note, operator, override_reason
FROM indexops.jobs
WHERE change_id = %s AND kind = ANY(%s)
ORDER BY job_id DESC LIMIT 1
"""

# The definition a rollback must restore: the newest apply or rehearsal job of the change that
# dropped or replaced an index (only those recorded the definition they took away).
DEFINITION_BEFORE = """
SELECT definition_before FROM indexops.jobs
WHERE change_id = %s AND kind IN ('apply', 'rehearse') AND action IN ('dropped', 'replaced')
  AND definition_before IS NOT NULL AND definition_before <> ''
ORDER BY job_id DESC LIMIT 1
"""


def ensure(conn):
    """Create schema and table on first use; a missing privilege gets a clear message."""
    if fetch_one(conn, LEDGER_EXISTS)["present"]:
        return
    try:
        with conn.cursor() as cur:
            cur.execute(CREATE_SCHEMA)
            cur.execute(CREATE_TABLE)
            cur.execute(CREATE_LOOKUP_INDEX)
    except psycopg2.errors.InsufficientPrivilege as exc:
        raise IndexOpsError(
            f"cannot create the ledger (schema indexops, table indexops.jobs): {exc.diag.message_primary}",
            expected="CREATE privilege on the database for the first run, or an existing indexops.jobs table "
                     "with INSERT and UPDATE granted",
            hint="Nothing was changed. Ask a DBA to run: CREATE SCHEMA indexops AUTHORIZATION <this role>;") from None


def start(conn, record):
    """Insert a running job; ``record`` holds the INSERT's named values."""
    row = dict(record)
    row["expected"] = json.dumps(row.get("expected") or {})
    with conn.cursor() as cur:
        cur.execute(INSERT, row)
        return cur.fetchone()[0]


def finish(conn, job_id, *, state, attempts, action=None, last_error=None, definition_after=None, observed=None):
    with conn.cursor() as cur:
        cur.execute(FINISH, {
            "job_id": job_id, "state": state, "attempts": attempts, "action": action, "last_error": last_error,
            "definition_after": definition_after, "observed": json.dumps(observed or {}),
        })


def mark_rolled_back(conn, change_id, environment, before_job_id):
    """Mark the change's earlier successful runs rolled back; returns their job ids."""
    with conn.cursor() as cur:
        cur.execute(MARK_ROLLED_BACK, (change_id, environment, before_job_id))
        return sorted(row[0] for row in cur.fetchall())


def latest(conn, change_id, kinds):
    if not fetch_one(conn, LEDGER_EXISTS)["present"]:
        return None
    return fetch_one(conn, LATEST, (change_id, list(kinds)))


def definition_before(conn, change_id):
    if not fetch_one(conn, LEDGER_EXISTS)["present"]:
        return None
    row = fetch_one(conn, DEFINITION_BEFORE, (change_id,))
    return row["definition_before"] if row else None


def jobs(conn, change_id):
    if not fetch_one(conn, LEDGER_EXISTS)["present"]:
        return []
    return fetch_all(conn, "SELECT * FROM indexops.jobs WHERE change_id = %s ORDER BY job_id", (change_id,))


# --------------------------------------------------------------------------- read-only, for pg_index_status

# Whether the ledger exists and this role may read it, without touching the table itself (a role
# without USAGE on schema indexops would get an error from to_regclass or from the SELECT).
READ_ACCESS = """
SELECT t.oid IS NOT NULL AS exists,
       t.oid IS NOT NULL AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
           AND pg_catalog.has_table_privilege(t.oid, 'SELECT') AS readable
FROM (SELECT 1) AS one
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'indexops'
LEFT JOIN pg_catalog.pg_class t ON t.relnamespace = n.oid AND t.relname = 'jobs' AND t.relkind IN ('r', 'p')
"""

# Jobs as pg_index_status reports them: UTC ISO timestamps, and whether a running job is lost.
# A running job is lost when no session with its backend_pid exists any more, or when that pid
# now belongs to a session that started after the job (the pid was reused). A session whose
# backend_start this role cannot see (no pg_read_all_stats) counts as the job's own: unknown is
# not lost. A job whose backend is alive but between statements (lock retry backoff, verifying)
# is not lost either: only the end of its session makes it so. A job that reconnected after its
# session was lost (see follow_session) names the new session, started after the job: that
# session counts when it started no later than the reconnect recorded in observed.
JOB_SESSION_GONE = """NOT EXISTS (
           SELECT 1 FROM pg_catalog.pg_stat_activity a
           WHERE a.pid = j.backend_pid AND (a.backend_start IS NULL OR a.backend_start <= greatest(
               j.started_at, (j.observed ->> 'session_since')::timestamptz))
       )"""
# The job's client: pg_index keeps a second, idle session open for the whole job (it also watches
# the build's waits) and names it in observed.client_pid. When the pg_index process dies (the OOM
# killer, a kill, a lost control node), that idle session ends at once, while the build's own
# backend may go on with a CONCURRENTLY statement until it ends: the job is lost then too.
JOB_CLIENT_GONE = """(j.observed ->> 'client_pid') IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM pg_catalog.pg_stat_activity c
           WHERE c.pid = (j.observed ->> 'client_pid')::integer
             AND (c.backend_start IS NULL OR c.backend_start <= (j.observed ->> 'client_since')::timestamptz)
       )"""
JOB_COLUMNS = """
SELECT j.job_id, j.change_id, j.kind, j.action, j.environment, j.state,
       j.state = 'running' AND (""" + JOB_SESSION_GONE + """ OR """ + JOB_CLIENT_GONE + """) AS lost,
       j.state = 'running' AND """ + JOB_CLIENT_GONE + """ AS client_lost,
       (j.observed ->> 'client_pid')::integer AS client_pid,
       to_char(j.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS started_at,
       to_char(j.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS finished_at,
       j.duration_s, j.attempts, j.owner, j.operator, j.last_error, j.backend_pid, j.application_name,
       j.index_schema, j.index_name, j.table_name, j.definition_before, j.definition_after
FROM indexops.jobs j
"""

JOBS_OF_CHANGE = JOB_COLUMNS + """
WHERE j.change_id = %(change_id)s AND (%(environment)s::text IS NULL OR j.environment = %(environment)s)
ORDER BY j.job_id
"""

# A running job that a later job of the same change and environment superseded is history, not lost:
# the later job already acted on the index (status.yml reports only the newest).
RUNNING_JOBS = JOB_COLUMNS + """
WHERE j.state = 'running'
  AND NOT EXISTS (SELECT 1 FROM indexops.jobs k
                  WHERE k.change_id = j.change_id AND k.environment = j.environment AND k.job_id > j.job_id)
ORDER BY j.job_id
"""

DEFINITION_BEFORE_IN = """
SELECT definition_before FROM indexops.jobs
WHERE change_id = %(change_id)s AND (%(environment)s::text IS NULL OR environment = %(environment)s)
  AND kind IN ('apply', 'rehearse') AND action IN ('dropped', 'replaced')
  AND definition_before IS NOT NULL AND definition_before <> ''
ORDER BY job_id DESC LIMIT 1
"""


def read_access(conn):
    """{exists, readable} for indexops.jobs, read from the catalog only."""
    return fetch_one(conn, READ_ACCESS)


def change_jobs(conn, change_id, environment=None):
    """Every job of one change (in one environment when given), oldest first, with ``lost``."""
    return fetch_all(conn, JOBS_OF_CHANGE, {"change_id": change_id, "environment": environment})


def running_jobs(conn):
    """Every job the ledger says is running, with ``lost``."""
    return fetch_all(conn, RUNNING_JOBS)


def definition_before_in(conn, change_id, environment=None):
    """The definition a rollback restores, from the newest drop/replace of the change in
    ``environment`` (any environment when None); None when none was recorded."""
    row = fetch_one(conn, DEFINITION_BEFORE_IN, {"change_id": change_id, "environment": environment})
    return row["definition_before"] if row else None


# --------------------------------------------------------------------------- sessions of running jobs

# A job that reconnected (its session was lost during a step, and it goes on to clean up and record
# its end) names its new session, so that status does not call it lost while it still works.
FOLLOW_SESSION = """
UPDATE indexops.jobs
SET backend_pid = pg_backend_pid(), application_name = current_setting('application_name'),
    observed = coalesce(observed, '{}'::jsonb) || jsonb_build_object('session_since', now())
WHERE job_id = %(job_id)s AND state = 'running'
"""

# Earlier jobs of the same change and environment that the ledger says are running but whose
# session is gone (JOB_SESSION_GONE, as status decides lost) never finish by themselves: a new job
# closes them as failed, so that the ledger says what became of them.
CLOSE_LOST = """
UPDATE indexops.jobs j
SET state = 'failed', finished_at = now(), duration_s = extract(epoch FROM now() - j.started_at),
    last_error = 'session lost: the session (pid ' || coalesce(j.backend_pid::text, 'unknown')
                 || ') that ran this job ended before the job recorded its end; closed by job '
                 || %(job_id)s::text || %(note)s
WHERE j.change_id = %(change_id)s AND j.environment = %(environment)s AND j.job_id < %(job_id)s
  AND j.state = 'running' AND """ + JOB_SESSION_GONE + """
RETURNING j.job_id
"""
CLOSE_LOST_NOTE = (". Its build may have finished on the server (status shows the index) or left an invalid "
                   "index (the new job repairs it; cleanup.yml drops leftovers)")


# Names the job's client session (see JOB_CLIENT_GONE); again after that session was reopened.
NAME_CLIENT = """
UPDATE indexops.jobs
SET observed = coalesce(observed, '{}'::jsonb)
               || jsonb_build_object('client_pid', %(client_pid)s::integer, 'client_since', now())
WHERE job_id = %(job_id)s AND state = 'running'
"""


def name_client(conn, job_id, client_pid):
    """Record the pid of the job's client session, whose end means the pg_index process is gone."""
    with conn.cursor() as cur:
        cur.execute(NAME_CLIENT, {"job_id": job_id, "client_pid": client_pid})


def follow_session(conn, job_id):
    """Name this (new) session as the running job's backend, after a reconnect."""
    with conn.cursor() as cur:
        cur.execute(FOLLOW_SESSION, {"job_id": job_id})


def close_lost(conn, change_id, environment, job_id):
    """Close the change's earlier running jobs in ``environment`` whose session is gone, as failed
    with a last_error that says so; returns their job ids."""
    with conn.cursor() as cur:
        cur.execute(CLOSE_LOST, {"change_id": change_id, "environment": environment, "job_id": job_id,
                                 "note": CLOSE_LOST_NOTE})
        return sorted(row[0] for row in cur.fetchall())
