"""Read-only catalog look-ups. Every join is by OID; names only ever appear as parameters."""

from __future__ import annotations

import re

import psycopg2.extras
from psycopg2 import sql

# A partitioned table or index has no storage of its own: its size and rows are its partitions'.
TREE_BYTES = """CASE WHEN c.relkind IN ('p', 'I') THEN
         (SELECT coalesce(sum(pg_catalog.pg_relation_size(pt.relid)), 0)::bigint
          FROM pg_catalog.pg_partition_tree(c.oid) pt)
       ELSE pg_catalog.pg_relation_size(c.oid) END"""
TREE_ROWS = """CASE WHEN c.relkind = 'p' THEN
         (SELECT coalesce(sum(greatest(pc.reltuples, 0)), 0)::bigint FROM pg_catalog.pg_partition_tree(c.oid) pt
          JOIN pg_catalog.pg_class pc ON pc.oid = pt.relid WHERE pt.isleaf)
       ELSE c.reltuples::bigint END"""

TABLE = """
SELECT c.oid, n.nspname AS schema, c.relname AS table, c.relkind,
       """ + TREE_BYTES + """ AS table_bytes, """ + TREE_ROWS + """ AS estimated_rows
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""

COLUMNS = """
SELECT a.attname FROM pg_catalog.pg_attribute a
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
"""

# Every index in an index's partition tree (itself included), for plans that name the partitions' parts.
INDEX_TREE_NAMES = """
SELECT c.relname AS name FROM pg_catalog.pg_partition_tree(%s::oid::regclass) pt
JOIN pg_catalog.pg_class c ON c.oid = pt.relid
"""

# Any relation of that name in the schema, so a clash with a table or sequence is reported too.
RELATION = """
SELECT c.oid, c.relkind, n.nspname AS schema, c.relname AS name,
       i.indrelid AS table_oid, t.relname AS table, tn.nspname AS table_schema,
       i.indisvalid AS valid, i.indisready AS ready, i.indislive AS live,
       pg_catalog.pg_get_indexdef(c.oid) AS definition,
       """ + TREE_BYTES + """ AS size_bytes,
       ts.spcname AS tablespace,
       (SELECT string_agg(con.conname, ', ') FROM pg_catalog.pg_constraint con
         WHERE con.conindid = c.oid AND con.conrelid = i.indrelid) AS constraints
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = c.reltablespace
WHERE n.nspname = %s AND c.relname = %s
"""

# The partitions of a partitioned table, every level below it (PostgreSQL 12+), with whether the
# login role may act as their owner: CREATE INDEX on a partition needs its owner's rights.
PARTITIONS = """
SELECT t.relid::oid AS oid, t.parentrelid::oid AS parent_oid, t.isleaf AS leaf, t.level, c.relkind,
       n.nspname AS schema, c.relname AS table, pg_catalog.pg_get_userbyid(c.relowner) AS owner,
       pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') AS owned,
       pg_catalog.pg_relation_size(c.oid) AS table_bytes
FROM pg_catalog.pg_partition_tree(%s::oid::regclass) t
JOIN pg_catalog.pg_class c ON c.oid = t.relid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE t.level > 0
ORDER BY t.level, n.nspname, c.relname
"""

# Every index on the given partitions, with the partitioned index it is attached to (if any).
PARTITION_INDEXES = """
SELECT c.oid, c.relkind, n.nspname AS schema, c.relname AS name, i.indrelid AS table_oid,
       i.indisvalid AS valid, i.indisready AS ready, i.indislive AS live,
       pg_catalog.pg_get_indexdef(c.oid) AS definition, pg_catalog.pg_relation_size(c.oid) AS size_bytes,
       ts.spcname AS tablespace, inh.inhparent AS attached_to,
       (SELECT string_agg(con.conname, ', ') FROM pg_catalog.pg_constraint con
         WHERE con.conindid = c.oid AND con.conrelid = i.indrelid) AS constraints
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_inherits inh ON inh.inhrelid = c.oid
LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = c.reltablespace
WHERE i.indrelid = ANY(%s::oid[])
ORDER BY c.relname
"""

# The partition key columns of partitioned tables; attname is null for a key expression.
PARTITION_KEYS = """
SELECT pt.partrelid AS oid, a.attname
FROM pg_catalog.pg_partitioned_table pt
CROSS JOIN LATERAL pg_catalog.unnest(pt.partattrs::int2[]) AS k(attnum)
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = k.attnum AND k.attnum > 0
WHERE pt.partrelid = ANY(%s::oid[])
"""

# The table a name belongs to (itself, or an index's table), read without taking any lock: used to
# name the sessions that made a locking look-up time out.
TABLE_OID_OF = """
SELECT coalesce(i.indrelid, c.oid) AS oid
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
WHERE n.nspname = %s AND c.relname = %s
"""

# Candidates for leftovers of REINDEX CONCURRENTLY on a table: invalid, named *_ccnew[N] / *_ccold[N].
# Which index they belong to is decided by cc_leftover_of(), which mirrors PostgreSQL's naming.
CC_CANDIDATES = """
SELECT c.relname AS name, c.oid
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = %s AND NOT i.indisvalid AND c.relname ~ '_cc(new|old)[0-9]*$'
"""
CC_SUFFIX = re.compile(r"^(?P<base>.*)_cc(?:new|old)(?P<n>[0-9]*)$", re.DOTALL)

# The one query over pg_stat_progress_create_index (PostgreSQL 12+): the index builds of other
# sessions, with the age of the building statement. builds_of() asks about one index;
# queries.build_details() about the whole database, adding the names and waits status shows.
# {elapsed} is how the age is rendered, {columns} and {joins} what a caller adds, {scope} which
# builds, {order} their order.
PROGRESS_TEMPLATE = sql.SQL("""
SELECT p.pid, p.command, p.phase, p.relid, p.index_relid,
       p.lockers_total, p.lockers_done, p.current_locker_pid,
       p.blocks_total, p.blocks_done, p.tuples_total, p.tuples_done,
       p.partitions_total, p.partitions_done,
       {elapsed} AS elapsed_s,
       a.application_name{columns}
FROM pg_catalog.pg_stat_progress_create_index p
LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = p.pid{joins}
WHERE {scope} AND p.pid <> pg_catalog.pg_backend_pid()
{order}""")


def progress_query(scope, *, elapsed="extract(epoch FROM now() - a.query_start)::float", columns="", joins="",
                   order=""):
    """PROGRESS_TEMPLATE filled in; every part is a constant of the caller's, never input."""
    parts = {"scope": scope, "elapsed": elapsed, "columns": columns, "joins": joins, "order": order}
    return PROGRESS_TEMPLATE.format(**{key: sql.SQL(value) for key, value in parts.items()})


BUILDS = progress_query("p.index_relid = %s")

# Who stands in a build's way: sessions holding a lock on the table, and transactions that are
# older than the build attempt (concurrent builds wait for those at each phase boundary).
BLOCKERS = """
SELECT DISTINCT ON (a.pid) a.pid, a.state, a.application_name,
       left(a.query, 200) AS query, l.mode AS lock_mode,
       extract(epoch FROM now() - a.xact_start)::float AS xact_age_s
FROM pg_catalog.pg_stat_activity a
LEFT JOIN pg_catalog.pg_locks l ON l.pid = a.pid AND l.granted AND l.relation = %s
WHERE a.pid <> pg_catalog.pg_backend_pid() AND a.datname = current_database()
  AND (l.pid IS NOT NULL OR (a.backend_xmin IS NOT NULL AND a.xact_start < now() - %s * interval '1 second')
       OR (a.backend_xid IS NOT NULL AND a.xact_start < now() - %s * interval '1 second'))
ORDER BY a.pid, l.mode IS NULL
"""

TABLESPACE_DEFAULT = """
SELECT ts.spcname FROM pg_catalog.pg_database d
JOIN pg_catalog.pg_tablespace ts ON ts.oid = d.dattablespace
WHERE d.datname = current_database()
"""

# Session-level advisory lock keyed on the table: (indexops namespace, table OID).
ADVISORY_TRY = "SELECT pg_catalog.pg_try_advisory_lock(%s::int, %s::int) AS got"
ADVISORY_UNLOCK = "SELECT pg_catalog.pg_advisory_unlock(%s::int, %s::int)"
ADVISORY_HOLDER = """
SELECT a.pid, a.application_name, a.client_addr::text AS client_addr, a.usename,
       extract(epoch FROM now() - a.backend_start)::float AS connected_s, left(a.query, 200) AS query
FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::oid AND l.objid = %s::oid AND l.objsubid = 2
"""

# pg_advisory_lock(int, int) keys: classid = first key, objid = second; objsubid = 2 marks the
# two-int form. The first key is fixed for indexops so it cannot collide with the application's.
ADVISORY_NAMESPACE = 0x1D0E7  # "indexops"


def fetch_one(conn, query, params=()):
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(query, params)
        row = cur.fetchone()
        return dict(row) if row else None


def fetch_all(conn, query, params=()):
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(query, params)
        return [dict(row) for row in cur.fetchall()]


def server_version_num(conn):
    return int(fetch_one(conn, "SELECT current_setting('server_version_num') AS v")["v"])


def in_recovery(conn):
    """True on a hot standby (and during crash recovery, when no client can connect anyway)."""
    return fetch_one(conn, "SELECT pg_catalog.pg_is_in_recovery() AS standby")["standby"]


def table(conn, schema, name):
    return fetch_one(conn, TABLE, (schema, name))


def table_oid_of(conn, schema, name):
    row = fetch_one(conn, TABLE_OID_OF, (schema, name))
    return row["oid"] if row else None


def column_names(conn, table_oid):
    return {row["attname"] for row in fetch_all(conn, COLUMNS, (table_oid,))}


def relation(conn, schema, name):
    return fetch_one(conn, RELATION, (schema, name))


def index_tree_names(conn, index_oid):
    """The names of a partitioned index and of every partition's index under it ([] for a plain index)."""
    return [row["name"] for row in fetch_all(conn, INDEX_TREE_NAMES, (index_oid,))]


def partitions(conn, table_oid):
    return fetch_all(conn, PARTITIONS, (table_oid,))


def partition_indexes(conn, table_oids):
    return fetch_all(conn, PARTITION_INDEXES, (list(table_oids),))


def partition_keys(conn, table_oids):
    """{table oid: [key column names, None for an expression]} of partitioned tables."""
    keys = {}
    for row in fetch_all(conn, PARTITION_KEYS, (list(table_oids),)):
        keys.setdefault(row["oid"], []).append(row["attname"])
    return keys


def builds_of(conn, index_oid):
    return fetch_all(conn, BUILDS, (index_oid,))


def cc_leftover_of(leftover, index_name):
    """Whether ``leftover`` is <index_name>_ccnew/_ccold[N] as REINDEX CONCURRENTLY names it.

    PostgreSQL clips the base name (on a character boundary) so that base + "_ccnew" + N fits in
    63 bytes; a leftover of index "ix" must not be mistaken for one of "ix_wide" or vice versa.
    """
    match = CC_SUFFIX.match(leftover)
    if not match:
        return False
    room = 63 - len(leftover.encode("utf-8")) + len(match.group("base").encode("utf-8"))
    return match.group("base") == index_name.encode("utf-8")[:room].decode("utf-8", "ignore")


def cc_leftovers(conn, table_oid, index_name):
    return [row for row in fetch_all(conn, CC_CANDIDATES, (table_oid,)) if cc_leftover_of(row["name"], index_name)]


def blockers(conn, table_oid, older_than_s):
    return fetch_all(conn, BLOCKERS, (table_oid, older_than_s, older_than_s))


def default_tablespace(conn):
    return fetch_one(conn, TABLESPACE_DEFAULT)["spcname"]


def advisory_key(table_oid):
    """The two int4 keys for a table: OIDs above 2^31 wrap to negative, as int4 does."""
    second = table_oid - 2**32 if table_oid >= 2**31 else table_oid
    return ADVISORY_NAMESPACE, second


def try_advisory_lock(conn, table_oid):
    return fetch_one(conn, ADVISORY_TRY, advisory_key(table_oid))["got"]


def advisory_unlock(conn, table_oid):
    fetch_one(conn, ADVISORY_UNLOCK, advisory_key(table_oid))


def advisory_holder(conn, table_oid):
    return fetch_one(conn, ADVISORY_HOLDER, (ADVISORY_NAMESPACE, table_oid))
