"""pg_index_status (minimal): leftovers of failed builds and the state of named indexes.

Read only: the session is READ ONLY and only reads catalogs, pg_stat_activity and
pg_stat_progress_create_index, so a role with pg_monitor is enough.

A leftover is any index that is not valid: the remains of a failed or cancelled CREATE INDEX
CONCURRENTLY (kind invalid) or REINDEX CONCURRENTLY (kind ccnew / ccold), or a build that is
still running. Whether someone is building it is decided conservatively, because the cleanup
playbook drops only what nobody builds:

- a progress row whose index_relid is the index itself;
- for _ccnew/_ccold: any REINDEX CONCURRENTLY on the same table (its progress row names the
  original index, not the _ccnew one);
- when this role cannot see other roles' builds (no pg_read_all_stats), any build in the database
  whose details are hidden.
"""

from __future__ import annotations

import re

import psycopg2

from ansible.module_utils.indexops import catalog, queries
from ansible.module_utils.indexops.errors import IndexOpsError, input_error
from ansible.module_utils.indexops.progress import percent_done
from ansible.module_utils.indexops.spec import check_identifier, check_qualified_name

CC_KINDS = (("ccnew", re.compile(r"_ccnew[0-9]*$")), ("ccold", re.compile(r"_ccold[0-9]*$")))
REINDEX_CONCURRENTLY = "REINDEX CONCURRENTLY"
INDEX_RELKINDS = ("i", "I")
# A status read must never queue behind DDL for long, nor run away.
SESSION_SETTINGS = (("lock_timeout", "5s"), ("statement_timeout", "60s"))


def leftover_kind(name):
    """invalid, ccnew or ccold, from the index name (REINDEX CONCURRENTLY's suffixes)."""
    return next((kind for kind, pattern in CC_KINDS if pattern.search(name)), "invalid")


def build_of(index, builds):
    """The progress row of the build working on ``index`` (oid, table_oid, name, valid), or None."""
    direct = next((row for row in builds if row["index_relid"] == index["oid"]), None)
    if direct is not None:
        return direct
    if leftover_kind(index["name"]) != "invalid":
        reindex = next((row for row in builds
                        if row["command"] == REINDEX_CONCURRENTLY and row["relid"] == index["table_oid"]), None)
        if reindex is not None:
            return reindex
    if not index["valid"]:
        return next((row for row in builds if row["relid"] is None), None)
    return None


def build_summary(row):
    """What the operator needs about one build; details are None when this role cannot see them."""
    if row is None:
        return None
    visible = row["relid"] is not None
    return {
        "pid": row["pid"],
        "command": row.get("command"),
        "phase": row.get("phase") if visible else None,
        "percent": percent_done(row) if visible else None,
        "elapsed_s": row.get("elapsed_s"),
        "application_name": row.get("application_name"),
        "waiting_for_pid": row.get("current_locker_pid") or None,
        "details_visible": visible,
    }


def leftover(row, builds):
    build = build_of(row, builds)
    return {
        "schema": row["schema"],
        "name": row["name"],
        "table": row["table"],
        "kind": leftover_kind(row["name"]),
        "valid": row["valid"],
        "ready": row["ready"],
        "being_built": build is not None,
        "build": build_summary(build),
        "size_bytes": row["size_bytes"],
        "definition": row["definition"],
    }


def locate(item):
    """(schema, name) of one entry of the indexes option: name may be 'schema.name'."""
    parts = check_qualified_name(item.get("name"), "indexes[].name")
    schema = item.get("schema")
    if len(parts) == 2:
        if schema and schema != parts[0]:
            raise input_error(f"index {item['name']!r} names schema {parts[0]!r} but schema is {schema!r}",
                              "the schema given once, in name or in schema")
        return parts
    return check_identifier(schema or "public", "indexes[].schema"), parts[0]


def missing_index(schema, name):
    return {"schema": schema, "name": name, "exists": False, "valid": False, "ready": False, "definition": "",
            "size_bytes": 0, "building": False, "build": None, "table": None}


def index_state(row, schema, name, builds):
    if row is None or row["relkind"] not in INDEX_RELKINDS:
        return missing_index(schema, name)
    build = build_of({**row, "name": name}, builds)
    return {"schema": schema, "name": name, "exists": True, "valid": row["valid"], "ready": row["ready"],
            "definition": row["definition"], "size_bytes": row["size_bytes"], "building": build is not None,
            "build": build_summary(build), "table": row["table"]}


class Status:
    def __init__(self, connect):
        self.connect = connect
        self.conn = None

    def run(self, *, leftovers=True, indexes=()):
        wanted = [locate(item) for item in indexes]  # bad names fail before connecting
        self.conn = self.connect()
        try:
            self.prepare()
            builds = queries.database_builds(self.conn)
            return {
                "changed": False,
                "database": queries.session(self.conn)["database"],
                "progress_visible": queries.stats_visible(self.conn),
                "leftovers": [leftover(row, builds) for row in queries.invalid_indexes(self.conn)] if leftovers else [],
                "indexes": [index_state(catalog.relation(self.conn, schema, name), schema, name, builds)
                            for schema, name in wanted],
            }
        except psycopg2.Error as exc:
            raise IndexOpsError(f"reading the index status failed: {str(exc).strip()}",
                                expected="the catalogs and pg_stat_progress_create_index to be readable "
                                         "(pg_monitor is enough)",
                                hint="Nothing was changed; running again is safe.", retry_safe=True) from None
        finally:
            self.conn.close()

    def prepare(self):
        queries.read_only_session(self.conn, True)
        with self.conn.cursor() as cur:
            for name, value in SESSION_SETTINGS:
                cur.execute("SELECT pg_catalog.set_config(%s, %s, false)", (name, value))
