"""pg_index_status: the state of indexes, changes, builds in progress, leftovers and ledger jobs.

Read only: the session is READ ONLY and only reads catalogs, pg_stat_activity, pg_locks,
pg_stat_progress_create_index and (when readable) indexops.jobs, so a role with pg_monitor and
SELECT on the ledger is enough.

A leftover is any index that is not valid: the remains of a failed or cancelled CREATE INDEX
CONCURRENTLY (type invalid) or REINDEX CONCURRENTLY (type ccnew / ccold), or a build that is
still running. Whether someone is building it is decided conservatively, because the cleanup
playbook drops only what nobody builds:

- a progress row whose index_relid is the index itself;
- for _ccnew/_ccold: any REINDEX CONCURRENTLY on the same table (its progress row names the
  original index, not the _ccnew one);
- when this role cannot see other roles' builds (no pg_read_all_stats), any build in the database
  whose details are hidden.

pg_get_indexdef and pg_relation_size lock the index or its table (ACCESS SHARE): behind DDL that
holds ACCESS EXCLUSIVE they would queue. The session's lock_timeout is short, and a read that
times out is repeated without those two calls (definition unknown, size estimated from relpages)
with a warning, so a status poll never hangs behind DDL nor fails because of it.
"""

from __future__ import annotations

import re
import time

import psycopg2
import psycopg2.errors

from ansible_collections.indexops.core.plugins.module_utils import catalog, fleet, ledger, queries, states
from ansible_collections.indexops.core.plugins.module_utils.connection import READ_LOCK_TIMEOUT
from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError, input_error
from ansible_collections.indexops.core.plugins.module_utils.names import (
    check_identifier,
    check_qualified_name,
    partition_index_name,
    replacement_name,
)
from ansible_collections.indexops.core.plugins.module_utils.progress import eta_s, percent_done, phase_percent

LEFTOVER_TYPES = (("ccnew", re.compile(r"_ccnew[0-9]*$")), ("ccold", re.compile(r"_ccold[0-9]*$")))
REINDEX_CONCURRENTLY = "REINDEX CONCURRENTLY"
INDEX_RELKINDS = ("i", "I")
LOCK_TIMEOUT = READ_LOCK_TIMEOUT  # without spec.py: this payload carries no pglast
# A status read must never queue behind DDL for long, nor run away.
SESSION_SETTINGS = (("lock_timeout", LOCK_TIMEOUT), ("statement_timeout", "60s"))
WAITING_PHASE_PREFIX = "waiting for"
INDEXOPS_APPLICATION_PREFIX = "indexops/"
BUILD_COUNTERS = ("blocks_done", "blocks_total", "tuples_done", "tuples_total", "partitions_done",
                  "partitions_total", "lockers_done", "lockers_total")
READ_LEDGER_GRANTS = "GRANT USAGE ON SCHEMA indexops TO <role>; GRANT SELECT ON indexops.jobs TO <role>"


def leftover_type(name):
    """invalid, ccnew or ccold, from the index name (REINDEX CONCURRENTLY's suffixes). A "type", not a
    "kind": kind is the kind of a run (apply, rehearse, rollback) everywhere else."""
    return next((type_ for type_, pattern in LEFTOVER_TYPES if pattern.search(name)), "invalid")


def build_of(index, builds, partition_indexes=()):
    """The progress row of the build working on ``index`` (oid, table_oid, name, valid), or None.
    A partitioned index is built one partition at a time: its build is the one of the partition's
    index pg_index names after it (``partition_indexes``: their names, see partition_index_names)."""
    direct = next((row for row in builds if row["index_relid"] == index["oid"]
                   or (row.get("index_name") and row["index_name"] in partition_indexes)), None)
    if direct is not None:
        return direct
    if leftover_type(index["name"]) != "invalid":
        reindex = next((row for row in builds
                        if row["command"] == REINDEX_CONCURRENTLY and row["relid"] == index["table_oid"]), None)
        if reindex is not None:
            return reindex
    if not index["valid"]:
        return next((row for row in builds if row["relid"] is None), None)
    return None


def is_waiting(row):
    """A build waits when its phase is one of the 'waiting for ...' phases, or its backend waits
    for a heavyweight lock (e.g. a plain CREATE INDEX queued behind a writer)."""
    return (row.get("phase") or "").startswith(WAITING_PHASE_PREFIX) or row.get("wait_event_type") == "Lock"


def locker_pids(row):
    """The pid the progress view says a waiting phase waits on (current_locker_pid), if any."""
    pid = row.get("current_locker_pid")
    return [pid] if pid and (row.get("phase") or "").startswith(WAITING_PHASE_PREFIX) else []


def waiting_entry(row):
    return {key: row.get(key) for key in ("pid", "query", "state", "xact_age_s", "lock_mode", "wait_event_type",
                                          "wait_event", "application_name")}


def build_summary(row, waiting_on=()):
    """The <build> shape for one progress row; details are None when this role cannot see them."""
    if row is None:
        return None
    visible = row["relid"] is not None
    percent = percent_done(row) if visible else None
    application = row.get("application_name") or ""
    waiting = visible and is_waiting(row)
    on = [waiting_entry(item) for item in waiting_on] if waiting else []
    summary = {
        "pid": row["pid"],
        "command": row.get("command"),
        "phase": row.get("phase") if visible else None,
        "percent": percent,
        "phase_percent": phase_percent(row) if visible else None,
        **{key: (row.get(key) if visible else None) for key in BUILD_COUNTERS},
        "elapsed_s": row.get("elapsed_s"),
        "eta_s": eta_s(row, percent, row.get("elapsed_s")) if visible else None,
        "index_schema": row.get("index_schema"),
        "index_name": row.get("index_name"),
        "table_schema": row.get("table_schema"),
        "table": row.get("table"),
        "application_name": row.get("application_name"),
        "indexops": application.startswith(INDEXOPS_APPLICATION_PREFIX),
        "waiting": waiting,
        "waiting_on": on,
        "waiting_for_pid": (locker_pids(row) or [item["pid"] for item in on] or [None])[0] if waiting else None,
        "details_visible": visible,
    }
    return summary


def leftover(row, builds, summarize):
    build = build_of(row, builds)
    return {
        "schema": row["schema"],
        "name": row["name"],
        "table": row["table"],
        "leftover_type": leftover_type(row["name"]),
        "kind": leftover_type(row["name"]),  # deprecated (RETURN): the same as leftover_type, kept for callers
        "valid": row["valid"],
        "ready": row["ready"],
        "being_built": build is not None,
        "build": summarize(build),
        "size_bytes": row["size_bytes"],
        "definition": row["definition"],
    }


def locate(item, what="indexes[]"):
    """(schema, name) of one index option entry: name may be 'schema.name'."""
    parts = check_qualified_name(item.get("name"), f"{what}.name")
    schema = item.get("schema")
    if len(parts) == 2:
        if schema and schema != parts[0]:
            raise input_error(f"index {item['name']!r} names schema {parts[0]!r} but schema is {schema!r}",
                              "the schema given once, in name or in schema")
        return parts
    return check_identifier(schema or "public", f"{what}.schema"), parts[0]


def check_change(item):
    """One entry of the changes option, validated before connecting: (id, action, schema, name,
    table, environment)."""
    change_id = item.get("id")
    if not isinstance(change_id, str) or not change_id.strip():
        raise input_error("changes[].id is empty", "the id of the change file (changes/<id>.yml)")
    index = item.get("index") or {}
    if not index.get("name"):
        raise input_error(f"change {change_id!r} has no index.name", "changes[].index.name, the index it changes")
    schema, name = locate(index, f"change {change_id!r}: index")
    table = index.get("table")
    if table:
        check_qualified_name(table, f"change {change_id!r}: index.table")
    database = item.get("database")
    if database is not None:
        fleet.check_name(database, f"change {change_id!r}: database")
    return {"id": change_id, "action": item.get("action") or "create", "schema": schema, "name": name,
            "table": table, "environment": item.get("environment"), "database": database}


def missing_index(schema, name, table=None):
    return {"schema": schema, "name": name, "table": table, "exists": False, "valid": False, "ready": False,
            "state": states.index_state(False, False, False), "definition": "", "size_bytes": 0, "scans": None,
            "building": False, "build": None}


def same_table(row, item, index):
    """Whether index ``row`` is on the change's table (given as [schema.]table, or the index's own);
    True when neither names one."""
    wanted = item["table"] or index["table"]
    if not wanted:
        return True
    parts = wanted.split(".")
    schema = parts[0] if len(parts) == 2 else item["schema"]
    return (row.get("table_schema") or schema, row["table"]) == (schema, parts[-1])


class Status:
    """One status read: connects, reads, closes. ``warnings`` collects what the caller should say."""

    def __init__(self, connect, ledger_owner=None):
        self.connect = connect
        self.ledger_owner = ledger_owner
        self.conn = None
        self.warnings = []
        self.builds = []
        self.summaries = {}

    def run(self, *, leftovers=True, indexes=(), changes=(), builds=True, ledger_jobs=True, change_id=None,
            environment=None):
        # Bad input fails here, before connecting.
        wanted = [locate(item) for item in indexes]
        wanted_changes = [check_change(item) for item in changes]
        if change_id is not None and not change_id.strip():
            raise input_error("change_id is empty", "the id of a change file, or no change_id at all")
        self.conn = self.connect()
        try:
            self.prepare()
            return self.read(leftovers, wanted, wanted_changes, builds, ledger_jobs, change_id, environment)
        except psycopg2.errors.LockNotAvailable as exc:
            raise self.lock_error(exc) from None
        except psycopg2.Error as exc:
            raise IndexOpsError(f"reading the index status failed: {str(exc).strip()}",
                                expected="the catalogs and pg_stat_progress_create_index to be readable "
                                         "(pg_monitor is enough)",
                                hint="Nothing was changed; running again is safe.", retry_safe=True) from None
        finally:
            self.conn.close()

    def read(self, leftovers, wanted, wanted_changes, builds, ledger_jobs, change_id, environment):
        version = queries.server_version(self.conn)
        self.builds = queries.build_details(self.conn)
        access = self.ledger_access() if (ledger_jobs or wanted_changes or change_id) else None
        readable = bool(access and access["readable"])
        result = {
            "changed": False,
            "database": queries.session(self.conn)["database"],
            "server_version": version["version"],
            "progress_visible": queries.stats_visible(self.conn),
            "builds": [self.summarize(row) for row in self.builds] if builds else [],
            "leftovers": [leftover(row, self.builds, self.summarize) for row in self.invalid_indexes()]
            if leftovers else [],
            "indexes": [self.index_entry(schema, name) for schema, name in wanted],
            "changes": [self.change_entry(item, readable and ledger_jobs) for item in wanted_changes],
            "lost_jobs": [dict(job) for job in ledger.running_jobs(self.conn) if job["lost"]]
            if readable and ledger_jobs else [],
        }
        if change_id is not None:
            result["ledger"] = self.change_ledger(access, change_id, environment)
        result["warnings"] = list(self.warnings)
        return result

    # ------------------------------------------------------------------ builds

    def summarize(self, row):
        """<build> for a progress row, with the sessions it waits on; read once per pid."""
        if row is None:
            return None
        pid = row["pid"]
        if pid not in self.summaries:
            waiting_on = []
            if row["relid"] is not None and is_waiting(row):
                waiting_on = queries.waiting_on(self.conn, pid, row["relid"], locker_pids(row))
            self.summaries[pid] = build_summary(row, waiting_on)
        return self.summaries[pid]

    # ------------------------------------------------------------------ catalog

    def invalid_indexes(self):
        try:
            return queries.invalid_indexes(self.conn)
        except psycopg2.errors.LockNotAvailable:
            self.warn_locked("the leftovers")
            return queries.invalid_indexes_unlocked(self.conn)

    def relation(self, schema, name):
        try:
            return catalog.relation(self.conn, schema, name)
        except psycopg2.errors.LockNotAvailable:
            self.warn_locked(f"index {schema}.{name}")
            return queries.relation_unlocked(self.conn, schema, name)

    def warn_locked(self, what):
        holders = "; ".join(f"pid {row['pid']} {'holds' if row['granted'] else 'awaits'} ACCESS EXCLUSIVE on "
                            f"{row['relation']} ({row['query'] or 'query hidden'})"
                            for row in queries.exclusive_lockers(self.conn)) or "a session that has since finished"
        self.warnings.append(
            f"reading {what} waited {LOCK_TIMEOUT} for a lock held by DDL ({holders}): its definition is unknown "
            f"(null) and its size is estimated from pg_class.relpages. Nothing was changed; run status again "
            f"once the DDL is over.")

    def index_entry(self, schema, name, table=None):
        row = self.relation(schema, name)
        if row is None or row["relkind"] not in INDEX_RELKINDS:
            return missing_index(schema, name, table)
        build = build_of({**row, "name": name}, self.builds, self.partition_index_names(row, name))
        return {"schema": schema, "name": name, "table": row["table"], "exists": True, "valid": row["valid"],
                "ready": row["ready"], "state": states.index_state(True, row["valid"], build is not None),
                "definition": row["definition"],
                "size_bytes": row["size_bytes"], "scans": queries.index_scans(self.conn, row["oid"]),
                "building": build is not None, "build": self.summarize(build)}

    def partition_index_names(self, row, name):
        """For an unfinished partitioned index: the names pg_index gives its partitions' indexes."""
        if row["relkind"] != "I" or row["valid"] or not self.builds:
            return ()
        return {partition_index_name(name, table) for table in queries.partition_table_names(self.conn,
                                                                                            row["table_oid"])}

    # ------------------------------------------------------------------ ledger

    def ledger_access(self):
        access = ledger.read_access(self.conn)
        if access["exists"] and not access["readable"]:
            role = queries.session(self.conn)["role"]
            self.warnings.append(
                f"role {role} may not read the ledger indexops.jobs: job states, lost jobs and the recorded "
                f"definitions are not reported (only the catalog state is). Expected: {READ_LEDGER_GRANTS}. "
                f"Nothing was changed.")
            return access
        _, distrusted = ledger.distrust(self.conn, self.ledger_owner)
        if distrusted:
            # A ledger another role controls is never read: a SELECT could run its rules, policies or
            # column types' functions. Status goes on from the catalog alone.
            self.warnings.append(f"{distrusted.msg} The ledger was not read: job states come from the catalog only.")
            return {**access, "readable": False, "trusted": False}
        return access

    def change_entry(self, item, read_jobs):
        index = self.index_entry(item["schema"], item["name"], item["table"])
        jobs = ledger.change_jobs(self.conn, item["id"], item["environment"]) if read_jobs else []
        build = index["build"] or (self.replacement_build(item, index) if item["action"] == "replace" else None)
        entry = {
            "id": item["id"],
            "action": item["action"],
            "index": {"schema": item["schema"], "name": item["name"], "table": item["table"] or index["table"]},
            "state": states.change_state(item["action"], index, jobs, build),
            "index_state": index,
            "build": build,
            "job": jobs[-1] if jobs else None,
            "made_by": states.made_by(jobs),
        }
        # What the controller prints about it, decided here so that the plugins only display.
        return {**entry, "line": states.progress_line(entry), "row": states.change_row(entry, time.time())}

    def replacement_build(self, item, index):
        """The build of <name>_indexops_new (pg_index's replacement index, see plan.py) on the
        change's table: while a replace runs, that is the change's build."""
        row = self.relation(item["schema"], replacement_name(item["name"]))
        if row is None or row["relkind"] not in INDEX_RELKINDS or not same_table(row, item, index):
            return None
        return self.summarize(build_of(row, self.builds))

    def change_ledger(self, access, change_id, environment):
        if not access["readable"]:
            return {"exists": access["exists"], "readable": False, "trusted": access.get("trusted", True), "jobs": [],
                    "definition_before": None}
        return {"exists": True, "readable": True, "trusted": True,
                "jobs": [dict(job) for job in ledger.change_jobs(self.conn, change_id, environment)],
                "definition_before": ledger.definition_before_in(self.conn, change_id, environment)}

    # ------------------------------------------------------------------ session

    def lock_error(self, exc):
        return IndexOpsError(
            f"reading the index status waited longer than lock_timeout ({LOCK_TIMEOUT}) for a lock: "
            f"{str(exc).strip()}",
            expected="no DDL holding ACCESS EXCLUSIVE on the catalogs or tables read",
            hint="Nothing was changed; running again is safe once the DDL is over.", retry_safe=True)

    def prepare(self):
        queries.read_only_session(self.conn, True)
        with self.conn.cursor() as cur:
            for name, value in SESSION_SETTINGS:
                cur.execute("SELECT pg_catalog.set_config(%s, %s, false)", (name, value))


# ---------------------------------------------------------------------- many databases of one server

FLEET_READ_KEYS = ("leftovers", "indexes", "builds", "change_id", "environment")


def check_input(params):
    """Every option checked before anything connects, as the one-database path does in Status.run."""
    for item in params.get("indexes") or []:
        locate(item)
    for item in params.get("changes") or []:
        check_change(item)
    if params.get("change_id") is not None and not params["change_id"].strip():
        raise input_error("change_id is empty", "the id of a change file, or no change_id at all")
    fleet.check_options(params)


def read_fleet(params, connect_to):
    """The status of every database the fleet options select, one Status run per database, at most
    max_connections at a time. ``connect_to(database)`` opens a connection to that database.

    Each database's answer is one entry of database_results, shaped as the one-database result plus
    ``failed`` (and ``msg`` / ``retry_safe`` when it could not be read). A change naming a database is
    read there only; any other change in every database."""
    check_input(params)
    changes = params.get("changes") or []
    named = [item["database"] for item in changes if item.get("database")]
    databases = fleet.databases_of(params, connect_to, named)

    def read_one(database):
        mine = [item for item in changes if item.get("database") in (None, database)]
        status = Status(lambda: connect_to(database), ledger_owner=params.get("ledger_owner"))
        return status.run(changes=mine, ledger_jobs=params.get("ledger", True),
                          **{key: params.get(key) for key in FLEET_READ_KEYS if params.get(key) is not None})

    entries = fleet.each(databases, read_one, params.get("max_connections") or fleet.DEFAULT_MAX_CONNECTIONS)
    warnings = fleet.prefixed_warnings(entries)
    if not databases:
        warnings.append(fleet.nothing_selected_warning(params))
    read = [entry for entry in entries if not entry["failed"]]
    # The one-database keys stay (a contract): the lists are empty here, each database's are in its entry.
    return {"changed": False, "database": params.get("db"),
            "server_version": read[0]["server_version"] if read else None,
            "progress_visible": bool(read) and all(entry["progress_visible"] for entry in read),
            "builds": [], "leftovers": [], "indexes": [], "changes": [], "lost_jobs": [],
            "database_results": entries, **fleet.summary(entries), "warnings": warnings}
