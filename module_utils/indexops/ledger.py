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
