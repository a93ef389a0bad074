"""The ledger: one row per job in schema indexops of each target database.

A job is recorded as running before its first DDL statement, so a crash never leaves an
unrecorded change; the row is then finished as succeeded or failed. The definition before the
change is kept, so a dropped index can be recreated exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors

from ansible_collections.indexops.core.plugins.module_utils.catalog import fetch_all, fetch_one
from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError

STATES = ("queued", "running", "succeeded", "failed", "rolled_back")

# Never IF NOT EXISTS: "if not exists" would adopt whatever another role created under that name
# (the trojan-object pattern). The ledger is created only when absent, and trusted() reads it back.
# Column kind is the kind of run (apply, rehearse, rollback), the name the reports' "kind" uses too; it
# stays "kind" because existing ledgers have it (a leftover's invalid/ccnew/ccold is its "leftover_type").
CREATE_SCHEMA = "CREATE SCHEMA indexops"
CREATE_TABLE = """
CREATE TABLE indexops.jobs (
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
CREATE_LOOKUP_INDEX = "CREATE INDEX jobs_change_idx ON indexops.jobs (change_id, job_id)"

INSERT = """
INSERT INTO indexops.jobs (change_id, spec_digest, kind, action, environment, state, index_schema, index_name,
                           table_name, definition_before, owner, rollback_note, operator, override_reason,
                           expected, backend_pid, application_name)
VALUES (%(change_id)s, %(spec_digest)s, %(kind)s, %(action)s, %(environment)s, 'running', %(index_schema)s,
        %(index_name)s, %(table_name)s, %(definition_before)s, %(owner)s, %(rollback_note)s, %(operator)s,
        %(override_reason)s, %(expected)s::jsonb, pg_catalog.pg_backend_pid(),
        pg_catalog.current_setting('application_name'))
RETURNING job_id
"""

FINISH = """
UPDATE indexops.jobs
SET state = %(state)s, action = coalesce(%(action)s, action), attempts = %(attempts)s, last_error = %(last_error)s,
    finished_at = now(), duration_s = extract(epoch FROM now() - started_at),
    definition_after = %(definition_after)s, observed = %(observed)s::jsonb
WHERE job_id = %(job_id)s
"""

# Between two attempts of a statement (after a lock timeout): which attempt the running job is on.
NOTE_ATTEMPT = """
UPDATE indexops.jobs
SET attempts = %(attempts)s,
    observed = coalesce(observed, '{}'::jsonb)
               || pg_catalog.jsonb_build_object('attempt', %(attempt)s::integer, 'attempts_max', %(of)s::integer)
WHERE job_id = %(job_id)s AND state = 'running'
"""

# Before a step on one partition of a partitioned table: which partition the running job is on.
NOTE_PARTITION = """
UPDATE indexops.jobs
SET observed = coalesce(observed, '{}'::jsonb)
               || pg_catalog.jsonb_build_object('partition', %(number)s::integer, 'partitions', %(of)s::integer,
                                                'partition_name', %(partition)s::text)
WHERE job_id = %(job_id)s AND state = 'running'
"""

# A successful rollback closes the change's earlier successful runs in the same environment;
# jobs that started after it (a later re-apply) are not touched.
MARK_ROLLED_BACK = """
UPDATE indexops.jobs SET state = 'rolled_back'
WHERE change_id = %s AND environment = %s AND job_id < %s AND kind IN ('apply', 'rehearse')
  AND state = 'succeeded'
RETURNING job_id
"""

# ----------------------------------------------------------------------------- is the ledger ours?
#
# Reading or writing a table runs code its owner chose: triggers, rules (a view is a table with a
# rule), row-level security policies, column defaults, CHECK constraints, index expressions, the
# input/output functions of column types, and the same for inheritance parents and children. A
# role that pre-creates schema indexops (any role with CREATE on the database may) would get that
# code run with the rights of whoever runs indexops, often a superuser. So before any read or write,
# everything in schema indexops must belong to a trusted role (the login role itself, or the shared
# ledger owner the environment's policy names), the table must be a plain table with none of the
# above, and its defaults, constraints and indexes may only use pg_catalog's functions and types.
# Membership in another role is deliberately not enough: the apply role is usually a member of the
# application's role (to own its tables), and that is exactly the role that could plant the trojan.

# Every object of schema indexops with its owner; the schema itself first, then the ledger table.
LEDGER_OBJECTS = """
WITH ns AS (SELECT n.oid, n.nspname, n.nspowner FROM pg_catalog.pg_namespace n WHERE n.nspname = 'indexops')
SELECT o.kind, o.name, o.relkind, o.oid, pg_catalog.pg_get_userbyid(o.owner) AS owner
FROM (
    SELECT 0 AS rank, 'schema'::text AS kind, ns.nspname::text AS name, NULL::text AS relkind, ns.oid,
           ns.nspowner AS owner
    FROM ns
    UNION ALL
    SELECT CASE WHEN c.relname = 'jobs' THEN 1 ELSE 2 END,
           CASE c.relkind WHEN 'r' THEN 'table' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view'
                          WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table'
                          WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index'
                          WHEN 'c' THEN 'composite type' ELSE 'relation' END,
           'indexops.' || c.relname, c.relkind::text, c.oid, c.relowner
    FROM pg_catalog.pg_class c JOIN ns ON c.relnamespace = ns.oid
    UNION ALL
    SELECT 3, 'function', 'indexops.' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid)
           || ')', NULL, p.oid, p.proowner
    FROM pg_catalog.pg_proc p JOIN ns ON p.pronamespace = ns.oid
    UNION ALL
    SELECT 3, 'type', 'indexops.' || t.typname, NULL, t.oid, t.typowner
    FROM pg_catalog.pg_type t JOIN ns ON t.typnamespace = ns.oid
    UNION ALL
    SELECT 3, 'operator', 'indexops.' || o.oprname, NULL, o.oid, o.oprowner
    FROM pg_catalog.pg_operator o JOIN ns ON o.oprnamespace = ns.oid
    UNION ALL
    SELECT 3, 'collation', 'indexops.' || co.collname, NULL, co.oid, co.collowner
    FROM pg_catalog.pg_collation co JOIN ns ON co.collnamespace = ns.oid
    UNION ALL
    SELECT 3, 'conversion', 'indexops.' || cv.conname, NULL, cv.oid, cv.conowner
    FROM pg_catalog.pg_conversion cv JOIN ns ON cv.connamespace = ns.oid
    UNION ALL
    SELECT 3, 'operator family', 'indexops.' || f.opfname, NULL, f.oid, f.opfowner
    FROM pg_catalog.pg_opfamily f JOIN ns ON f.opfnamespace = ns.oid
    UNION ALL
    SELECT 3, 'operator class', 'indexops.' || oc.opcname, NULL, oc.oid, oc.opcowner
    FROM pg_catalog.pg_opclass oc JOIN ns ON oc.opcnamespace = ns.oid
    UNION ALL
    SELECT 3, 'text search configuration', 'indexops.' || tc.cfgname, NULL, tc.oid, tc.cfgowner
    FROM pg_catalog.pg_ts_config tc JOIN ns ON tc.cfgnamespace = ns.oid
    UNION ALL
    SELECT 3, 'text search dictionary', 'indexops.' || td.dictname, NULL, td.oid, td.dictowner
    FROM pg_catalog.pg_ts_dict td JOIN ns ON td.dictnamespace = ns.oid
    UNION ALL
    SELECT 3, 'statistics object', 'indexops.' || se.stxname, NULL, se.oid, se.stxowner
    FROM pg_catalog.pg_statistic_ext se JOIN ns ON se.stxnamespace = ns.oid
) AS o
ORDER BY o.rank, o.name
"""

# What reading or writing the table would run besides the table itself (by its OID). The objects
# its defaults, constraints, indexes and columns depend on are listed from pg_depend; objects of
# pg_catalog are left out (built-in ones are pinned and have no pg_depend row anyway).
LEDGER_TABLE_CODE = """
SELECT c.relrowsecurity OR c.relforcerowsecurity AS row_security,
       ARRAY(SELECT t.tgname::text FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid ORDER BY 1) AS triggers,
       ARRAY(SELECT r.rulename::text FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid ORDER BY 1) AS rules,
       ARRAY(SELECT p.polname::text FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid ORDER BY 1) AS policies,
       ARRAY(SELECT pn.nspname || '.' || pc.relname
             FROM pg_catalog.pg_inherits i
             JOIN pg_catalog.pg_class pc ON pc.oid = CASE WHEN i.inhrelid = c.oid THEN i.inhparent ELSE i.inhrelid END
             JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
             WHERE i.inhrelid = c.oid OR i.inhparent = c.oid ORDER BY 1) AS inheritance,
       ARRAY(SELECT DISTINCT o.type || ' ' || o.identity
             FROM pg_catalog.pg_depend d
             CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.refclassid, d.refobjid, 0) AS o
             WHERE d.refclassid IN ('pg_catalog.pg_proc'::pg_catalog.regclass,
                                    'pg_catalog.pg_operator'::pg_catalog.regclass,
                                    'pg_catalog.pg_type'::pg_catalog.regclass,
                                    'pg_catalog.pg_collation'::pg_catalog.regclass)
               AND o.schema IS DISTINCT FROM 'pg_catalog'
               AND ((d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                     AND (d.objid = c.oid
                          OR d.objid IN (SELECT x.indexrelid FROM pg_catalog.pg_index x WHERE x.indrelid = c.oid)))
                    OR (d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass
                        AND d.objid IN (SELECT ad.oid FROM pg_catalog.pg_attrdef ad WHERE ad.adrelid = c.oid))
                    OR (d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass
                        AND d.objid IN (SELECT k.oid FROM pg_catalog.pg_constraint k WHERE k.conrelid = c.oid)))
             ORDER BY 1) AS foreign_code
FROM pg_catalog.pg_class c
WHERE c.oid = %s
"""

# Grants that let another role add code later, between our check and our next write: CREATE on the
# schema (a function, an operator, a view in place of a dropped table) and TRIGGER on the table.
# Write access for a team's other apply roles goes through membership in the ledger owner's role.
LEDGER_GRANTS = """
SELECT g.kind, g.name, g.privilege,
       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(g.grantee)::text END AS grantee
FROM (
    SELECT 'schema'::text AS kind, n.nspname::text AS name, a.privilege_type AS privilege, a.grantee
    FROM pg_catalog.pg_namespace n CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) AS a
    WHERE n.nspname = 'indexops' AND a.privilege_type = 'CREATE'
    UNION ALL
    SELECT 'table', 'indexops.' || c.relname, a.privilege_type, a.grantee
    FROM pg_catalog.pg_class c CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS a
    WHERE c.oid = %s AND a.privilege_type = 'TRIGGER'
) AS g
ORDER BY g.kind, g.grantee
"""

CURRENT_ROLE = "SELECT current_user::text AS role"

TABLE_CODE_KINDS = (("triggers", "a trigger"), ("rules", "a rule"), ("policies", "a row-level security policy"),
                    ("inheritance", "an inheritance parent or child"),
                    ("foreign_code", "a default, constraint, index or column type using"))


@dataclass
class LedgerFacts:
    """What the catalog says about schema indexops, read before anything touches it."""

    role: str
    trusted: tuple
    objects: list = field(default_factory=list)  # {kind, name, relkind, oid, owner}, schema first
    table_code: dict | None = None  # LEDGER_TABLE_CODE's row for indexops.jobs when it is a relation
    grants: list = field(default_factory=list)  # LEDGER_GRANTS: {kind, name, privilege, grantee}

    @property
    def schema_exists(self):
        return any(item["kind"] == "schema" for item in self.objects)

    @property
    def table(self):
        return next((item for item in self.objects if item["name"] == "indexops.jobs"), None)


def inspect(conn, ledger_owner=None):
    """Read the catalog facts ``refusal`` judges (pg_catalog only; nothing in indexops runs)."""
    role = fetch_one(conn, CURRENT_ROLE)["role"]
    facts = LedgerFacts(role=role, trusted=tuple(dict.fromkeys(filter(None, (role, ledger_owner)))),
                        objects=fetch_all(conn, LEDGER_OBJECTS))
    table = facts.table
    if table is not None and table["relkind"] is not None:
        facts.table_code = fetch_one(conn, LEDGER_TABLE_CODE, (table["oid"],))
    if facts.schema_exists:
        facts.grants = fetch_all(conn, LEDGER_GRANTS, (table["oid"] if table else None,))
    return facts


@dataclass(frozen=True)
class Refusal:
    """Why the ledger is not used: ``what`` in one line, the object and its owner, and the fix
    (None: the default one, drop the schema or name its owner as the shared ledger owner)."""

    what: str
    item: dict
    fix: str | None = None


def refusal(facts):
    """Why the ledger must not be used (a Refusal, None when it may): pure, for unit tests."""
    trusted = " or ".join(facts.trusted)
    for item in facts.objects:
        if item["owner"] not in facts.trusted:
            return Refusal(f"{item['kind']} {item['name']} is owned by role {item['owner']}, not by {trusted}", item)
    table = facts.table
    if facts.schema_exists and table is not None and table["relkind"] != "r":
        return Refusal(f"indexops.jobs is a {table['kind']}, not a plain table", table)
    code = facts.table_code or {}
    if code.get("row_security"):
        return Refusal("table indexops.jobs has row-level security enabled", table)
    for key, label in TABLE_CODE_KINDS:
        if code.get(key):
            return Refusal(f"table indexops.jobs has {label} {', '.join(code[key])} that indexops did not create",
                           table)
    for grant in facts.grants:
        if grant["grantee"] not in facts.trusted:
            return grant_refusal(grant, facts)
    return None


def grant_refusal(grant, facts):
    target = "SCHEMA indexops" if grant["kind"] == "schema" else grant["name"]
    grantee = grant["grantee"] if grant["grantee"] == "PUBLIC" else f"role {grant['grantee']}"
    owner = next(item["owner"] for item in facts.objects if item["name"] == grant["name"])
    return Refusal(
        f"{grant['kind']} {grant['name']} grants {grant['privilege']} to {grantee}, which could add code to the "
        "ledger at any time",
        {"name": grant["name"], "owner": owner},
        f"Nothing was changed. Run (as {owner} or a superuser) REVOKE {grant['privilege']} ON {target} FROM "
        f"{grant['grantee']}; then run again (write access for other apply roles goes through membership in "
        "the ledger owner's role).")


def untrusted_error(problem, facts, ledger_owner_option):
    item = problem.item
    return IndexOpsError(
        f"refusing to use the ledger in schema indexops: {problem.what}; reading or writing it could run another "
        f"role's code with the rights of role {facts.role}",
        expected=f"schema indexops and everything in it owned by {' or '.join(facts.trusted)}, and indexops.jobs a "
                 "plain table without triggers, rules, policies, inheritance, nor a CREATE or TRIGGER grant to "
                 "another role",
        hint=problem.fix or (
            f"Nothing was changed. Check what {item['name']} holds, then DROP SCHEMA indexops CASCADE (as its owner "
            f"or a superuser) so indexops creates its own, or, if role {item['owner']} owns your team's shared "
            f"ledger, set {ledger_owner_option} to it."),
        retry_safe=False, ledger_object=item["name"], ledger_object_owner=item["owner"])


LEDGER_OWNER_OPTION = "ledger_owner (indexops_ledger_owner in the environment's group_vars)"


def distrust(conn, ledger_owner=None):
    """(facts, the IndexOpsError a foreign ledger deserves or None when it is ours or absent)."""
    facts = inspect(conn, ledger_owner)
    problem = refusal(facts)
    return facts, (untrusted_error(problem, facts, LEDGER_OWNER_OPTION) if problem else None)


def verify(conn, ledger_owner=None):
    """Raise when schema indexops exists and is not ours; return the facts otherwise."""
    facts, error = distrust(conn, ledger_owner)
    if error:
        raise error
    return facts


def ensure(conn, ledger_owner=None):
    """Create the ledger when absent, trust an existing one only when it is ours, and check it again
    after creating it (another session may have created the schema in between)."""
    facts = verify(conn, ledger_owner)
    if facts.table is not None:
        return
    create(conn, with_schema=not facts.schema_exists)
    verify(conn, ledger_owner)


def create(conn, with_schema):
    """Schema, table and lookup index in one transaction: all of them or none."""
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            if with_schema:
                cur.execute(CREATE_SCHEMA)
            cur.execute(CREATE_TABLE)
            cur.execute(CREATE_LOOKUP_INDEX)
        conn.commit()
    except (psycopg2.errors.DuplicateSchema, psycopg2.errors.DuplicateTable, psycopg2.errors.UniqueViolation):
        conn.rollback()
        raise IndexOpsError(
            "another session created schema indexops or table indexops.jobs while this run was creating the ledger",
            expected="one session creating the ledger at a time",
            hint="Nothing was changed. Run again: the ledger is then checked (owner, triggers, rules) and used if "
                 "it is ours.", retry_safe=True) from None
    except psycopg2.errors.InsufficientPrivilege as exc:
        conn.rollback()
        raise IndexOpsError(
            f"cannot create the ledger (schema indexops, table indexops.jobs): {exc.diag.message_primary}",
            expected="CREATE privilege on the database for the first run, or an existing indexops.jobs table "
                     "with INSERT and UPDATE granted",
            hint="Nothing was changed. Ask a DBA to run: CREATE SCHEMA indexops AUTHORIZATION <this role>;") from None
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.autocommit = True


def start(conn, record):
    """Insert a running job; ``record`` holds the INSERT's named values."""
    row = dict(record)
    row["expected"] = json.dumps(row.get("expected") or {})
    with conn.cursor() as cur:
        cur.execute(INSERT, row)
        return cur.fetchone()[0]


def note_attempt(conn, job_id, attempts, attempt, of):
    with conn.cursor() as cur:
        cur.execute(NOTE_ATTEMPT, {"job_id": job_id, "attempts": attempts, "attempt": attempt, "of": of})


def note_partition(conn, job_id, number, of, partition):
    with conn.cursor() as cur:
        cur.execute(NOTE_PARTITION, {"job_id": job_id, "number": number, "of": of, "partition": partition})


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
       (j.observed ->> 'attempt')::integer AS attempt, (j.observed ->> 'attempts_max')::integer AS attempts_max,
       (j.observed ->> 'partition')::integer AS partition, (j.observed ->> 'partitions')::integer AS partitions,
       j.observed ->> 'partition_name' AS partition_name,
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
