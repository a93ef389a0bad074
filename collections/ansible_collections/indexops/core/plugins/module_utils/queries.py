"""Read-only look-ups for pg_index_preflight and pg_index_status.

catalog.py holds the look-ups pg_index uses; these are the extra ones the read-only modules need.
Every join is by OID; names and numbers only ever appear as query parameters. None of them needs
more than pg_monitor (or, for the privilege checks, the role's own privileges): the catalogs and
pg_get_indexdef are readable by everyone, pg_stat_activity and pg_stat_progress_create_index show
other roles' sessions to members of pg_read_all_stats (part of pg_monitor).
"""

from __future__ import annotations

from psycopg2 import sql

from ansible_collections.indexops.core.plugins.module_utils.catalog import fetch_all, fetch_one, progress_query

SESSION = "SELECT current_user AS role, current_database() AS database"

# Every index of one table, valid or not, for the equivalent-index check.
TABLE_INDEXES = """
SELECT c.oid, c.relname AS name, i.indisvalid AS valid, i.indisready AS ready,
       pg_catalog.pg_get_indexdef(c.oid) AS definition
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = %s
ORDER BY c.relname
"""

# What the connected role may do with one table. CREATE INDEX (and the rename of a replace) also
# needs CREATE on the table's schema. pg_has_role(..., 'USAGE') is true for the owner,
# for members of the owning role that inherit its privileges and for superusers: exactly who may
# run CREATE/DROP INDEX and REINDEX on the table.
TABLE_PRIVILEGES = """
SELECT current_user AS role, r.rolname AS owner,
       pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') AS owns,
       pg_catalog.has_schema_privilege(c.relnamespace, 'USAGE') AS schema_usage,
       pg_catalog.has_schema_privilege(c.relnamespace, 'CREATE') AS schema_create,
       pg_catalog.has_database_privilege(current_database(), 'TEMPORARY') AS temporary,
       current_database() AS database
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
WHERE c.oid = %s
"""

# PostgreSQL 17+: the MAINTAIN privilege also allows REINDEX (not CREATE or DROP INDEX).
MAINTAIN_PRIVILEGE = "SELECT pg_catalog.has_table_privilege(%s::oid, 'MAINTAIN') AS maintain"

TABLESPACE_PRIVILEGE = """
SELECT pg_catalog.has_tablespace_privilege(ts.oid, 'CREATE') AS can_create
FROM pg_catalog.pg_tablespace ts WHERE ts.spcname = %s
"""

# What writing the ledger (schema indexops, table indexops.jobs) needs from the connected role:
# SELECT/INSERT/UPDATE on the table when it exists; otherwise ledger.ensure runs CREATE TABLE in
# schema indexops (CREATE on that schema), after CREATE SCHEMA (CREATE on the database) when there is
# none. Whether an existing ledger is trusted is ledger.distrust's question.
LEDGER_PRIVILEGES = """
SELECT n.oid IS NOT NULL AS schema_exists, t.oid IS NOT NULL AS table_exists,
       CASE WHEN n.oid IS NULL THEN pg_catalog.has_database_privilege(current_database(), 'CREATE')
            ELSE pg_catalog.has_schema_privilege(n.oid, 'CREATE') END AS can_create,
       n.oid IS NOT NULL AND pg_catalog.has_schema_privilege(n.oid, 'USAGE') AS schema_usage,
       t.oid IS NOT NULL AND pg_catalog.has_table_privilege(t.oid, 'SELECT')
           AND pg_catalog.has_table_privilege(t.oid, 'INSERT')
           AND pg_catalog.has_table_privilege(t.oid, 'UPDATE') AS can_write
FROM (SELECT 1) AS one
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'indexops'
LEFT JOIN pg_catalog.pg_class t ON t.relnamespace = n.oid AND t.relname = 'jobs' AND t.relkind IN ('r', 'p')
"""

# Whether this role sees other roles' sessions in pg_stat_activity and the progress views.
STATS_VISIBLE = "SELECT pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS visible"

# Client sessions of this database whose transaction is older than a threshold (seconds). A
# concurrent build waits for such transactions at its phase boundaries.
LONG_TRANSACTIONS = """
SELECT a.pid, a.usename, a.application_name, a.state,
       round(extract(epoch FROM now() - a.xact_start)::numeric, 1)::float AS age_s,
       left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 200) AS query
FROM pg_catalog.pg_stat_activity a
WHERE a.datname = current_database() AND a.pid <> pg_catalog.pg_backend_pid()
  AND a.backend_type = 'client backend'
  AND a.xact_start < now() - %s * interval '1 second'
ORDER BY a.xact_start, a.pid
"""

# Indexes that are not valid: failed or cancelled concurrent builds, REINDEX CONCURRENTLY's
# _ccnew/_ccold, and builds still in progress. Other sessions' temporary schemas are left out.
# {definition} and {size} are LOCKING_COLUMNS, or LOCK_FREE_COLUMNS after a lock timeout.
INVALID_INDEXES_TEMPLATE = sql.SQL("""
SELECT c.oid, n.nspname AS schema, c.relname AS name, i.indrelid AS table_oid, t.relname AS table,
       i.indisvalid AS valid, i.indisready AS ready, i.indislive AS live,
       {definition} AS definition, {size} AS size_bytes
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
WHERE NOT i.indisvalid
  AND n.nspname !~ '^pg_(toast_)?temp_'
ORDER BY n.nspname, c.relname
""")
# pg_get_indexdef and pg_relation_size lock the index's table or the index, and so wait behind DDL
# holding ACCESS EXCLUSIVE; the lock-free read has no definition and estimates size from relpages.
LOCKING_COLUMNS = {"definition": sql.SQL("pg_catalog.pg_get_indexdef(c.oid)"),
                   "size": sql.SQL("pg_catalog.pg_relation_size(c.oid)")}
LOCK_FREE_COLUMNS = {"definition": sql.SQL("NULL::text"),
                     "size": sql.SQL("c.relpages::bigint * current_setting('block_size')::bigint")}
INVALID_INDEXES = INVALID_INDEXES_TEMPLATE.format(**LOCKING_COLUMNS)
INVALID_INDEXES_UNLOCKED = INVALID_INDEXES_TEMPLATE.format(**LOCK_FREE_COLUMNS)

def session(conn):
    return fetch_one(conn, SESSION)


def table_indexes(conn, table_oid):
    return fetch_all(conn, TABLE_INDEXES, (table_oid,))


def table_privileges(conn, table_oid):
    return fetch_one(conn, TABLE_PRIVILEGES, (table_oid,))


def can_maintain(conn, table_oid):
    return fetch_one(conn, MAINTAIN_PRIVILEGE, (table_oid,))["maintain"]


def tablespace_privilege(conn, name):
    """True/False for CREATE on the tablespace, None when it does not exist."""
    row = fetch_one(conn, TABLESPACE_PRIVILEGE, (name,))
    return None if row is None else row["can_create"]


def ledger_privileges(conn):
    return fetch_one(conn, LEDGER_PRIVILEGES)


def stats_visible(conn):
    return fetch_one(conn, STATS_VISIBLE)["visible"]


def long_transactions(conn, older_than_s):
    return fetch_all(conn, LONG_TRANSACTIONS, (older_than_s,))


def invalid_indexes(conn):
    return fetch_all(conn, INVALID_INDEXES)


def read_only_session(conn, enabled):
    """Make every later transaction of the session READ ONLY (or writable again)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_catalog.set_config('default_transaction_read_only', %s, false)",
                    ("on" if enabled else "off",))


# --------------------------------------------------------------------------- pg_index_status

SERVER_VERSION = "SELECT current_setting('server_version') AS version"

# Every index build in this database but our own, with what an operator needs to judge it: names
# (joined by OID; a plain catalog read takes no lock), the building session's wait and its start.
# index_relid is 0 while a concurrent build initializes (no index yet); relid and index_relid are
# NULL for other roles' builds when this role lacks pg_read_all_stats.
BUILD_DETAILS = progress_query(
    "p.datid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database())",
    elapsed="round(extract(epoch FROM now() - a.query_start)::numeric, 1)::float",
    columns=""", a.wait_event_type, a.wait_event,
       tn.nspname AS table_schema, t.relname AS table, xn.nspname AS index_schema, x.relname AS index_name""",
    joins="""
LEFT JOIN pg_catalog.pg_class t ON t.oid = p.relid
LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
LEFT JOIN pg_catalog.pg_class x ON x.oid = p.index_relid
LEFT JOIN pg_catalog.pg_namespace xn ON xn.oid = x.relnamespace""",
    order="ORDER BY p.pid\n")

# The sessions one build waits on: pg_blocking_pids (heavyweight locks, including the virtualxid
# locks the "waiting for ..." phases wait on) plus pids the progress view names (current_locker_pid).
# lock_mode: the locks such a session holds on the build's table (none for a snapshot holder).
# pid 0 stands for a prepared transaction (it has no session).
WAITING_ON = """
SELECT w.pid, a.state, a.application_name, a.wait_event_type, a.wait_event,
       left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 200) AS query,
       round(extract(epoch FROM now() - a.xact_start)::numeric, 1)::float AS xact_age_s,
       (SELECT string_agg(DISTINCT l.mode, ', ') FROM pg_catalog.pg_locks l
         WHERE l.pid = w.pid AND l.granted AND l.relation = %(relid)s) AS lock_mode
FROM (SELECT DISTINCT unnest(pg_catalog.pg_blocking_pids(%(pid)s) || %(extra)s::int[]) AS pid) AS w
LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = w.pid
ORDER BY w.pid
"""

INDEX_SCANS = "SELECT s.idx_scan AS scans FROM pg_catalog.pg_stat_all_indexes s WHERE s.indexrelid = %s"

# A named relation without pg_get_indexdef or pg_relation_size: both lock the index's table or the
# index, and wait behind DDL that holds ACCESS EXCLUSIVE. Size is estimated from relpages.
RELATION_UNLOCKED = """
SELECT c.oid, c.relkind, n.nspname AS schema, c.relname AS name,
       i.indrelid AS table_oid, t.relname AS table, tn.nspname AS table_schema,
       i.indisvalid AS valid, i.indisready AS ready, i.indislive AS live,
       NULL::text AS definition,
       c.relpages::bigint * current_setting('block_size')::bigint AS size_bytes
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""

# Sessions holding or awaiting ACCESS EXCLUSIVE in this database: who made a status read time out.
EXCLUSIVE_LOCKERS = """
SELECT DISTINCT l.pid, l.granted, c.relname AS relation,
       left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 200) AS query
FROM pg_catalog.pg_locks l
JOIN pg_catalog.pg_class c ON c.oid = l.relation
LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.mode = 'AccessExclusiveLock' AND l.locktype = 'relation'
  AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database())
ORDER BY l.pid
"""


def server_version(conn):
    return fetch_one(conn, SERVER_VERSION)


PARTITION_TABLE_NAMES = """
SELECT c.relname AS name FROM pg_catalog.pg_partition_tree(%s::oid::regclass) pt
JOIN pg_catalog.pg_class c ON c.oid = pt.relid WHERE pt.level > 0
"""


def partition_table_names(conn, table_oid):
    return [row["name"] for row in fetch_all(conn, PARTITION_TABLE_NAMES, (table_oid,))]


def build_details(conn):
    return fetch_all(conn, BUILD_DETAILS)


def waiting_on(conn, pid, relid, extra_pids=()):
    return fetch_all(conn, WAITING_ON, {"pid": pid, "relid": relid, "extra": list(extra_pids)})


def index_scans(conn, index_oid):
    row = fetch_one(conn, INDEX_SCANS, (index_oid,))
    return row["scans"] if row else None


def relation_unlocked(conn, schema, name):
    return fetch_one(conn, RELATION_UNLOCKED, (schema, name))


def invalid_indexes_unlocked(conn):
    return fetch_all(conn, INVALID_INDEXES_UNLOCKED)


def exclusive_lockers(conn):
    return fetch_all(conn, EXCLUSIVE_LOCKERS)
