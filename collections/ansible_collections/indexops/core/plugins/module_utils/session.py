"""The sessions of one pg_index run and everything it reads through them.

The main session runs every catalog read and every DDL statement with the run's settings
(lock_timeout, statement_timeout, maintenance_work_mem); reads that lock the table are retried
like DDL (look_up). A second session watches the waits of CONCURRENTLY statements and stays open,
idle, for the whole job, so that the server ends it at once when this process dies. The job lock
(one indexops job per table) is a session advisory lock of the main session. What was read is
handed to plan.py as facts; nothing here decides what to do with them.
"""

from __future__ import annotations

import random
import time

import psycopg2

from ansible_collections.indexops.core.plugins.module_utils import catalog, humanize, partitions, sqlcompose
from ansible_collections.indexops.core.plugins.module_utils import plan as planner
from ansible_collections.indexops.core.plugins.module_utils.errors import RERUN_SAFE, IndexOpsError, input_error
from ansible_collections.indexops.core.plugins.module_utils.names import replacement_name
from ansible_collections.indexops.core.plugins.module_utils.retry import (
    RetryBudgetExhausted,
    RetryCounter,
    backoff_delays,
    is_retryable,
    run_with_retries,
)
from ansible_collections.indexops.core.plugins.module_utils.safety import guard_server

SHADOW_TABLE = "indexops_shadow"
SHADOW_INDEX = "indexops_shadow_idx"
WAIT_POLL_S = 1.0
# After a lost connection, how long to keep trying to connect again (a restart or failover).
RECONNECT_S = 30.0
RECONNECT_POLL_S = 1.0


def describe_blocker(row):
    age = f", transaction open {humanize.duration(row['xact_age_s'])}" if row.get("xact_age_s") is not None else ""
    lock = f", holds {row['lock_mode']}" if row.get("lock_mode") else ""
    return f"pid {row['pid']} ({row.get('state') or 'unknown'}{age}{lock}): {row.get('query') or ''}".strip()


class Session:
    """The main and the watching session of one run, with its safety options."""

    def __init__(self, connect, safety, *, watch_connect=None, check_mode=False, rng=None, sleep=time.sleep):
        self.connect = connect
        self.watch_connect = watch_connect or connect
        self.safety = safety
        self.check_mode = check_mode
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.conn = None
        self.watch_conn = None  # the second session that watches concurrent statements' waits
        self.on_watch_opened = None  # called with the watching session's pid each time it is opened
        self.server_version = None
        self.counter = RetryCounter()  # attempts and lock waits of the whole run, look-ups included
        self.table_row = None
        self.locked = False

    def open(self, *, concurrent, nulls_not_distinct=False):
        self.conn = self.connect()
        self.server_version = catalog.server_version_num(self.conn)
        guard_server(self.server_version, concurrent=concurrent, nulls_not_distinct=nulls_not_distinct,
                     standby=catalog.in_recovery(self.conn))
        self.apply_settings()

    def apply_settings(self):
        with self.conn.cursor() as cur:
            for name, value in self.safety.session_settings().items():
                try:
                    cur.execute(sqlcompose.SET_CONFIG, (name, str(value)))
                except psycopg2.Error as exc:
                    raise input_error(f"{name} {value!r} was refused by the server: {str(exc).strip()}",
                                      f"a valid value for {name}") from None

    def reconnect(self):
        """A new session after the old one was lost. The server may be restarting (a crash restart or
        a failover takes seconds), so connecting is retried for RECONNECT_S before giving up."""
        deadline = time.monotonic() + RECONNECT_S
        while True:
            try:
                return self.connect()
            except IndexOpsError:
                if time.monotonic() >= deadline:
                    raise
                self.sleep(RECONNECT_POLL_S)

    def watch_session(self):
        """The watching session, opened on first use and opened again when it was lost.

        It stays open, idle, for the whole job and the ledger names it as the job's client (on_watch_opened): when
        this process dies, the server ends that session at once, so status can tell a job whose
        pg_index process is gone even while its build goes on in the server.
        """
        if self.watch_conn is not None and not self.watch_conn.closed:
            try:
                with self.watch_conn.cursor() as cur:
                    cur.execute("SELECT 1")
                return self.watch_conn
            except psycopg2.Error:
                self.watch_conn.close()
        self.watch_conn = self.watch_connect()
        with self.watch_conn.cursor() as cur:
            # An idle session is what it is for: idle_session_timeout (PostgreSQL 14+) must not end it.
            cur.execute(sqlcompose.SET_CONFIG, ("idle_session_timeout", "0"))
        if self.on_watch_opened is not None:
            self.on_watch_opened(self.watch_conn.get_backend_pid())
        return self.watch_conn

    def set_lock_timeout(self, value):
        """Best effort: a session that was lost gets its settings again when it reconnects."""
        if self.conn.closed:
            return
        try:
            with self.conn.cursor() as cur:
                cur.execute(sqlcompose.SET_CONFIG, ("lock_timeout", value))
        except psycopg2.Error:
            pass

    def delays(self):
        return backoff_delays(self.safety.lock_retries, self.safety.retry_delay_s, self.safety.retry_max_delay_s,
                              self.rng)

    def blockers_of(self, table_oid):
        blockers = catalog.blockers(self.conn, table_oid, self.safety.lock_timeout_s) if table_oid else []
        return blockers, "; ".join(describe_blocker(row) for row in blockers[:3]) or "no blocking session is visible"

    def look_up(self, what, schema, name, read):
        """Run a catalog read that locks the table (sizes, pg_get_indexdef, LIKE) like a DDL step.

        A session holding ACCESS EXCLUSIVE blocks even these reads; they wait under lock_timeout,
        are retried on the same schedule, and a spent budget names the blocker instead of hanging.
        """
        counter = RetryCounter()
        try:
            return run_with_retries(read, self.delays(), counter, sleep=self.sleep)
        except RetryBudgetExhausted as exc:
            blockers, who = self.blockers_of(catalog.table_oid_of(self.conn, schema, name))
            raise IndexOpsError(
                f"could not read {what} {schema}.{name}: another session holds a lock that blocks even reading "
                f"its definition, longer than lock_timeout {self.safety.lock_timeout} in {exc.attempts} attempts "
                f"({humanize.duration(exc.lock_wait_s)} waited). Waiting on: {who}",
                expected="the conflicting transactions to finish within the retry budget",
                hint=RERUN_SAFE + " Rerun when they finish, or raise lock_retries.",
                retry_safe=True, blockers=blockers) from None
        finally:
            # Only the retries count as extra attempts: a read that got its lock at once is free.
            self.counter.attempts += max(counter.attempts - 1, 0)
            self.counter.lock_wait_s += counter.lock_wait_s

    def require_table(self, schema, name):
        row = self.look_up("table", schema, name, lambda: catalog.table(self.conn, schema, name))
        if row is None or row["relkind"] not in ("r", "p", "m"):
            raise input_error(f"table {schema}.{name} does not exist in database {self.conn.info.dbname}",
                              "an existing table (check table, schema and db)")
        return row

    def require_columns(self, names):
        present = catalog.column_names(self.conn, self.table_row["oid"])
        missing = [name for name in names if name not in present]
        if missing:
            table = f"{self.table_row['schema']}.{self.table_row['table']}"
            raise input_error(f"column {missing[0]!r} does not exist in table {table}",
                              f"columns of {table}: {', '.join(sorted(present))}")

    def index_row(self, schema, name):
        """The index ``schema.name`` on whatever table (a partition's, for cleanup), or None."""
        row = self.look_up("index", schema, name, lambda: catalog.relation(self.conn, schema, name))
        return row if row is not None and row["relkind"] in ("i", "I") else None

    def existing_index(self, schema, name, table=None):
        row = self.look_up("index", schema, name, lambda: catalog.relation(self.conn, schema, name))
        if row is None:
            return None
        if row["relkind"] not in ("i", "I"):
            raise input_error(f"{schema}.{name} exists and is not an index (relkind {row['relkind']})",
                              "a name no other table, view or sequence uses")
        on_other_table = self.table_row and row["table_oid"] != self.table_row["oid"]
        other_table = on_other_table or (table and row["table"] != table)
        if other_table:
            wanted = table or self.table_row["table"]
            raise input_error(f"index {schema}.{name} exists on table {row['table_schema']}.{row['table']}",
                              f"the index on table {wanted}; index names are unique per schema")
        return row

    def canonical_definition(self, spec):
        """Build the spec on an empty temporary copy of the table and read back its definition.

        The server itself validates the spec (opclasses, collations, immutability, types) and
        renders it exactly as pg_get_indexdef renders the existing index. Everything happens in a
        transaction that is rolled back and touches no object of the target.
        """
        return self.look_up("table", spec.schema, spec.table, lambda: self.shadow_definition(spec))

    def shadow_definition(self, spec):
        self.conn.autocommit = False
        try:
            with self.conn.cursor() as cur:
                cur.execute(sqlcompose.shadow_table(spec.schema, spec.table, SHADOW_TABLE))
                cur.execute(sqlcompose.create_index(spec, name=SHADOW_INDEX, relation=("pg_temp", SHADOW_TABLE),
                                                    concurrently=False, tablespace=False))
                cur.execute("SELECT pg_catalog.pg_get_indexdef(pg_catalog.to_regclass(%s))",
                            (f"pg_temp.{SHADOW_INDEX}",))
                return cur.fetchone()[0]
        except psycopg2.Error as exc:
            if is_retryable(exc):
                raise  # LIKE waits for a lock on the table: retried by look_up, not a bad definition
            message = (exc.diag.message_primary if exc.diag else None) or str(exc).strip()
            raise input_error(f"PostgreSQL rejected the index definition: {message}",
                              "a definition the server accepts (check opclass, collation, functions and types)"
                              ) from None
        finally:
            self.conn.rollback()
            self.conn.autocommit = True

    def index_facts(self, schema, name, table=None):
        row = self.existing_index(schema, name, table=table)
        return None if row is None else planner.Index(row, catalog.builds_of(self.conn, row["oid"]))

    def present_facts(self, spec, wanted):
        default_tablespace = catalog.default_tablespace(self.conn)
        # Read last, so that while a job waits for another session's build (wait: true) its session's
        # last statement, in pg_stat_activity, is the look at that build.
        existing = self.index_facts(spec.schema, spec.name)
        # Only a valid index is ever replaced: a replacement leftover matters (and is read) only then.
        replaceable = existing is not None and existing.row["valid"] and existing.row["ready"]
        # Without CONCURRENTLY a plain CREATE INDEX on the parent builds every partition in one statement.
        tree = self.partition_facts(self.table_row) if self.table_row["relkind"] == "p" and self.safety.concurrently \
            else None
        return planner.PresentFacts(
            spec=spec, wanted=wanted, table_oid=self.table_row["oid"], default_tablespace=default_tablespace,
            existing=existing,
            replacement=self.index_facts(spec.schema, replacement_name(spec.name)) if replaceable and tree is None
            else None, partitioned=tree)

    def existing_facts(self, schema, name, table, leftovers=False):
        existing = self.index_facts(schema, name, table=table)
        found, tree, part_leftovers = [], None, {}
        if existing is not None and existing.row["relkind"] == "I":
            table_row = {"oid": existing.row["table_oid"], "schema": existing.row["table_schema"],
                         "table": existing.row["table"]}
            tree = self.partition_facts(table_row)
            if leftovers:
                part_leftovers = {index.row["name"]: self.cc_leftover_facts(part.row["oid"], index.row["name"])
                                  for part, index in partitions.attached_leaves(tree, existing.row["oid"])}
        elif leftovers and existing is not None:
            found = self.cc_leftover_facts(existing.row["table_oid"], name)
        return planner.ExistingFacts(schema, name, existing, found, partitioned=tree,
                                     partition_leftovers=part_leftovers)

    def cc_leftover_facts(self, table_oid, name):
        return [planner.Index(row, catalog.builds_of(self.conn, row["oid"]))
                for row in catalog.cc_leftovers(self.conn, table_oid, name)]

    def partition_facts(self, table_row):
        """The partition tree below a partitioned table, each partition with its indexes (and the
        sessions building those that are not valid yet) and, for a partitioned one, its key."""
        def read():
            rows = catalog.partitions(self.conn, table_row["oid"])
            by_table = {}
            for index in catalog.partition_indexes(self.conn, [row["oid"] for row in rows]):
                builds = [] if index["valid"] else catalog.builds_of(self.conn, index["oid"])
                by_table.setdefault(index["table_oid"], []).append(planner.Index(index, builds))
            keys = catalog.partition_keys(self.conn, [table_row["oid"]] + [row["oid"] for row in rows
                                                                            if not row["leaf"]])
            return partitions.PartitionedFacts(
                key=keys.get(table_row["oid"], []),
                partitions=[partitions.Partition(row, by_table.get(row["oid"], []), keys.get(row["oid"], []))
                            for row in rows])
        return self.look_up("table", table_row["schema"], table_row["table"], read)

    # ----------------------------------------------------------------- one job per table
    def lock_table(self):
        """Session advisory lock on the table: a second indexops job waits, then names the holder."""
        if self.check_mode:
            return
        oid = self.table_row["oid"]
        deadline = time.monotonic() + self.safety.job_lock_timeout_s
        while not catalog.try_advisory_lock(self.conn, oid):
            if time.monotonic() >= deadline:
                holder = catalog.advisory_holder(self.conn, oid) or {}
                raise IndexOpsError(
                    f"another indexops job holds table {self.table_row['schema']}.{self.table_row['table']}: "
                    f"pid {holder.get('pid')} ({holder.get('application_name')}, user {holder.get('usename')}, "
                    f"from {holder.get('client_addr') or 'local socket'})",
                    expected=f"no other job on this table within job_lock_timeout {self.safety.job_lock_timeout_s:g}s",
                    hint="Nothing was changed; run again when that job ends.", retry_safe=True, holder=holder)
            self.sleep(WAIT_POLL_S)
        self.locked = True

    def relock(self):
        """After a reconnect: the job lock died with the old session; take it again (never wait for
        it) so the final unlock matches what this session holds."""
        self.locked = bool(self.table_row) and catalog.try_advisory_lock(self.conn, self.table_row["oid"])

    def release(self):
        if self.conn is not None and not self.conn.closed:
            if self.locked:
                catalog.advisory_unlock(self.conn, self.table_row["oid"])
                self.locked = False

    def close(self):
        for conn in (self.conn, self.watch_conn):
            if conn is not None and not conn.closed:
                conn.close()
