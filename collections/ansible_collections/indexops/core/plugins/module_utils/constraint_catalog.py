"""Read-only catalog look-ups for constraint-backed indexes (constraints.py decides from them).

Every join is by OID; names only appear as parameters. None of these reads lock the table: they
read pg_constraint and pg_attribute only.
"""

from __future__ import annotations

from ansible_collections.indexops.core.plugins.module_utils import constraints
from ansible_collections.indexops.core.plugins.module_utils.catalog import fetch_all, fetch_one

# The UNIQUE, PRIMARY KEY or EXCLUDE constraint an index backs.
BACKING = """
SELECT con.conname AS name, con.contype AS kind, con.condeferrable AS deferrable,
       con.condeferred AS initially_deferred, pg_catalog.pg_get_constraintdef(con.oid) AS definition
FROM pg_catalog.pg_constraint con
WHERE con.conindid = %s AND con.conrelid = %s AND con.contype IN ('p', 'u', 'x')
"""

# Foreign keys that reference the constraint of an index (conindid of an FK is the referenced
# table's index); a partitioned table's per-partition copies (conparentid set) are the same key.
FOREIGN_KEYS = """
SELECT fn.nspname AS schema, ft.relname AS table, con.conname AS name
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class ft ON ft.oid = con.conrelid
JOIN pg_catalog.pg_namespace fn ON fn.oid = ft.relnamespace
WHERE con.contype = 'f' AND con.conindid = %s AND con.conparentid = 0
ORDER BY fn.nspname, ft.relname, con.conname
"""

PRIMARY_KEY = """
SELECT con.conname AS name, con.conindid AS index_oid FROM pg_catalog.pg_constraint con
WHERE con.conrelid = %s AND con.contype = 'p'
"""

NOT_NULL = """
SELECT a.attname AS name, a.attnotnull AS not_null FROM pg_catalog.pg_attribute a
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY(%s)
"""

CHECKS = """
SELECT con.conname AS name, con.convalidated AS validated FROM pg_catalog.pg_constraint con
WHERE con.conrelid = %s AND con.contype = 'c' AND con.conname = ANY(%s)
"""


def backing(conn, index_row):
    """The constraint ``index_row`` (a catalog.relation row) backs, with the statement that adds it again."""
    if index_row is None or not index_row.get("constraints"):
        return None
    row = fetch_one(conn, BACKING, (index_row["oid"], index_row["table_oid"]))
    if row is None:
        return None
    if row["kind"] in ("p", "u"):
        kind = "primary_key" if row["kind"] == "p" else "unique"
        row["statement"] = constraints.add_constraint(
            index_row["table_schema"], index_row["table"], row["name"], kind, row["deferrable"],
            row["initially_deferred"]).as_string(conn)
    return row


def read(conn, table_row, index_row, columns=()):
    """ConstraintFacts for an index (None when it does not exist yet) on ``table_row``."""
    table_oid = table_row["oid"]
    columns = list(columns)
    found = backing(conn, index_row)
    return constraints.ConstraintFacts(
        table_relkind=table_row["relkind"],
        backing=found,
        foreign_keys=fetch_all(conn, FOREIGN_KEYS, (index_row["oid"],)) if found else [],
        primary_key=fetch_one(conn, PRIMARY_KEY, (table_oid,)),
        not_null={row["name"]: row["not_null"] for row in fetch_all(conn, NOT_NULL, (table_oid, columns))},
        checks={row["name"]: row["validated"] for row in fetch_all(
            conn, CHECKS, (table_oid, [constraints.check_name(column) for column in columns]))},
    )
