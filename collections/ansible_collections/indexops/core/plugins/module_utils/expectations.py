"""The change file's promises (expected: valid, max_duration, max_size, plan_uses_index), checked
against what a pg_index run did; each comes back as met or not, with what was observed."""

from __future__ import annotations

from ansible_collections.indexops.core.plugins.module_utils import catalog, humanize, sqlcompose
from ansible_collections.indexops.core.plugins.module_utils.fragments import select_statement
from ansible_collections.indexops.core.plugins.module_utils.spec import duration_seconds, size_bytes


def plan_index_names(node):
    """Every "Index Name" in an EXPLAIN (FORMAT JSON) plan."""
    if isinstance(node, dict):
        names = {node["Index Name"]} if "Index Name" in node else set()
        for value in node.values():
            names |= plan_index_names(value)
        return names
    if isinstance(node, list):
        return set().union(*(plan_index_names(item) for item in node)) if node else set()
    return set()


def validity(valid):
    """The index's validity in words: the report's reader sees 'valid', not Python's True."""
    return "valid" if valid else "invalid"


def check(conn, wanted, result, schema, name):
    """Each promise in ``wanted`` against ``result`` (pg_index's); [] when there is none. ``expected`` and
    ``observed`` are text for people (humanize's units, the change file's limit in the same units);
    ``met`` is the machine's answer."""
    checks = []
    wanted = wanted or {}
    if "valid" in wanted:
        checks.append(("valid", validity(wanted["valid"]), validity(result["valid"]),
                       result["valid"] == wanted["valid"]))
    if "max_duration" in wanted:
        limit = duration_seconds(wanted["max_duration"], "max_duration")
        checks.append(("max_duration", f"at most {humanize.duration(limit)}", humanize.duration(result["duration_s"]),
                       result["duration_s"] <= limit))
    if "max_size" in wanted:
        limit = size_bytes(wanted["max_size"], "max_size")
        checks.append(("max_size", f"at most {humanize.size(limit)}", humanize.size(result["size_bytes"]),
                       result["size_bytes"] <= limit))
    if "plan_uses_index" in wanted:
        used = plan_uses(conn, wanted["plan_uses_index"], name, schema)
        checks.append(("plan_uses_index", f"the plan uses {name}", "used" if used else "not used", used))
    return [{"name": key, "expected": exp, "observed": obs, "met": met,
             "message": f"{key}: expected {exp}, observed {obs}"} for key, exp, obs, met in checks]


def plan_uses(conn, query, name, schema):
    """EXPLAIN (no ANALYZE: the query is planned, never run) in a read-only transaction.

    The query is the application's, pasted from the change file: its unqualified table names are
    qualified with the index's schema (fragments.select_statement), and it runs under the session's
    pinned search_path, so its functions and operators resolve in pg_catalog and nothing in the
    table's schema (which other roles may write to) is looked up for it.
    """
    statement = select_statement(query, schema)
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            cur.execute(sqlcompose.explain_json(statement))
            plan = cur.fetchone()[0]
    finally:
        conn.rollback()
        conn.autocommit = True
    return bool(index_names(conn, schema, name) & plan_index_names(plan))


def index_names(conn, schema, name):
    """The names a plan can show for the index: its own, and on a partitioned table those of the
    partitions' indexes attached under it (a plan scans the partitions)."""
    row = catalog.relation(conn, schema, name)
    return {name, *(catalog.index_tree_names(conn, row["oid"]) if row and row["relkind"] == "I" else ())}
