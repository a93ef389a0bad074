"""One pg_index run: inspect the target, decide, and carry out the plan safely.

The job is deliberately linear: connect -> guard the server -> find the table -> take the
per-table job lock -> inspect -> plan a list of steps -> (check mode stops here) -> run each step
under lock_timeout with retries -> verify. Each state (present/absent/rebuilt) only builds a plan.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import psycopg2

from ansible.module_utils.indexops import catalog, ledger, sqlcompose, waits
from ansible.module_utils.indexops import plan as planner
from ansible.module_utils.indexops.changefile import size_bytes
from ansible.module_utils.indexops.errors import RERUN_SAFE, IndexOpsError, input_error
from ansible.module_utils.indexops.fragments import select_statement
from ansible.module_utils.indexops.plan import Plan
from ansible.module_utils.indexops.retry import (
    RetryBudgetExhausted,
    RetryCounter,
    backoff_delays,
    is_retryable,
    run_with_retries,
)
from ansible.module_utils.indexops.spec import duration_seconds
from ansible.module_utils.indexops.waits import TransactionWaitExceeded, WatchLost

MIN_SERVER = 140000
# PostgreSQL 14.0-14.3 could corrupt indexes built or rebuilt CONCURRENTLY (fixed in 14.4).
CONCURRENT_BROKEN = range(140000, 140004)
NULLS_NOT_DISTINCT_SINCE = 150000
SHADOW_TABLE = "indexops_shadow"
SHADOW_INDEX = "indexops_shadow_idx"
WAIT_POLL_S = 1.0
NOTHING_LEFT = "Nothing was left behind."
# After a lost connection, how long to keep trying to connect again (a restart or failover).
RECONNECT_S = 30.0
RECONNECT_POLL_S = 1.0


@dataclass
class Safety:
    """The safety options of one run, already validated."""

    concurrently: bool = True
    lock_timeout: str = "1s"
    lock_retries: int = 5
    retry_delay_s: float = 0.5
    retry_max_delay_s: float = 30.0
    statement_timeout: str | None = None
    build_wait_timeout: str | None = None
    on_invalid: str = "rebuild"
    on_mismatch: str = "fail"
    maintenance_work_mem: str | None = None
    max_parallel_maintenance_workers: int | None = None
    analyze: bool = False
    wait: bool = False
    wait_timeout_s: float = 600.0
    job_lock_timeout_s: float = 30.0

    @property
    def lock_timeout_s(self):
        return duration_seconds(self.lock_timeout, "lock_timeout")

    @property
    def build_wait_timeout_s(self):
        if self.build_wait_timeout is None:
            return None
        return duration_seconds(self.build_wait_timeout, "build_wait_timeout")

    def session_settings(self):
        """GUCs set on every connection that runs DDL."""
        settings = {"lock_timeout": self.lock_timeout, "statement_timeout": self.statement_timeout or "0"}
        if self.maintenance_work_mem:
            settings["maintenance_work_mem"] = self.maintenance_work_mem
        if self.max_parallel_maintenance_workers is not None:
            settings["max_parallel_maintenance_workers"] = str(self.max_parallel_maintenance_workers)
        return settings


# Keys of the module's ledger option copied into the job row.
LEDGER_FIELDS = ("change_id", "spec_digest", "kind", "environment", "owner", "rollback_note", "operator",
                 "override_reason")


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


def observed(result):
    keys = ("action", "valid", "size_bytes", "duration_s", "attempts", "lock_wait_s", "txn_wait_s", "table_bytes",
            "table_rows_estimate")
    return {key: result.get(key) for key in keys}


def describe_blocker(row):
    age = f", transaction open {row['xact_age_s']:.0f}s" if row.get("xact_age_s") is not None else ""
    lock = f", holds {row['lock_mode']}" if row.get("lock_mode") else ""
    return f"pid {row['pid']} ({row.get('state') or 'unknown'}{age}{lock}): {row.get('query') or ''}".strip()


def guard_server(version, *, concurrent, nulls_not_distinct=False, standby=False):
    """Refuse servers that are too old, known to corrupt concurrent builds, or read-only replicas."""
    if standby:
        raise IndexOpsError(
            "the server is a hot standby (a read-only replica in recovery): no index can be created or dropped on it",
            expected="the primary server of the cluster (indexes reach the standbys through replication)",
            hint="Nothing was changed; point login_host (indexops_login_host) at the primary and run again.")
    if version < MIN_SERVER:
        raise IndexOpsError(f"the server runs PostgreSQL {version}, older than 14",
                            expected="PostgreSQL 14.4 or newer", hint="Nothing was changed.")
    if concurrent and version in CONCURRENT_BROKEN:
        raise IndexOpsError(
            f"the server runs PostgreSQL {version}; 14.0-14.3 can silently corrupt indexes built CONCURRENTLY",
            expected="PostgreSQL 14.4 or newer (upgrade the minor version first)", hint="Nothing was changed.")
    if nulls_not_distinct and version < NULLS_NOT_DISTINCT_SINCE:
        raise input_error(f"nulls_not_distinct needs PostgreSQL 15 or newer; the server runs {version}",
                          "nulls_not_distinct: false on PostgreSQL 14")


class IndexJob:
    def __init__(self, connect, safety, *, check_mode=False, rng=None, sleep=time.sleep, ledger=None,
                 expected=None, watch_connect=None, ledger_owner=None):
        self.connect = connect
        self.watch_connect = watch_connect or connect
        self.watch_conn = None  # the second session that watches concurrent statements' waits
        self.transactions_waited_s = 0.0
        self.ledger = ledger
        self.ledger_owner = ledger_owner  # a shared ledger owner the ledger may belong to besides the login role
        self.expected = expected
        self.safety = safety
        self.check_mode = check_mode
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.conn = None
        self.counter = RetryCounter()
        self.statements = []
        self.tried = []  # every statement started, retries once, cleanups included: what a failure reports
        self.started = time.monotonic()
        self.table_row = None
        self.locked = False
        self.job_id = None
        self.cleaned = []  # invalid indexes this run left and dropped again

    # ----------------------------------------------------------------- entry points per state
    def state_present(self, spec):
        self.open(concurrent=self.safety.concurrently, nulls_not_distinct=spec.nulls_not_distinct)
        self.table_row = self.require_table(spec.schema, spec.table)
        self.require_columns(spec.referenced_columns)
        self.lock_table()
        wanted = self.canonical_definition(spec)
        plan = self.decide(lambda: planner.plan_present(self.present_facts(spec, wanted), self.safety))
        return self.finish(plan, spec.schema, spec.name)

    def state_absent(self, name, schema, table):
        self.open(concurrent=self.safety.concurrently)
        existing = self.existing_index(schema, name, table=table)
        if existing is None:
            return self.finish(Plan("none"), schema, name)
        self.table_row = self.require_table(existing["table_schema"], existing["table"])
        self.lock_table()
        plan = self.decide(lambda: planner.plan_absent(self.existing_facts(schema, name, table), self.safety))
        return self.finish(plan, schema, name)

    def state_rebuilt(self, name, schema, table):
        self.open(concurrent=self.safety.concurrently)
        existing = self.existing_index(schema, name, table=table)
        if existing is None:
            raise planner.plan_rebuilt(planner.ExistingFacts(schema, name), self.safety).error
        self.table_row = self.require_table(existing["table_schema"], existing["table"])
        self.lock_table()
        plan = self.decide(lambda: planner.plan_rebuilt(self.existing_facts(schema, name, table, leftovers=True),
                                                        self.safety))
        return self.finish(plan, schema, name)

    # ----------------------------------------------------------------- facts for the plan (plan.py decides)
    def decide(self, make_plan):
        """The plan; while another session builds the index, wait for it (wait: true) up to
        wait_timeout, reading the facts again each time, else refuse."""
        deadline = time.monotonic() + self.safety.wait_timeout_s
        while True:
            outcome = make_plan()
            if isinstance(outcome, Plan):
                return outcome
            if outcome.code != planner.BEING_BUILT or not self.safety.wait or time.monotonic() >= deadline:
                raise outcome.error
            self.sleep(WAIT_POLL_S)

    def index_facts(self, schema, name, table=None):
        row = self.existing_index(schema, name, table=table)
        return None if row is None else planner.Index(row, catalog.builds_of(self.conn, row["oid"]))

    def present_facts(self, spec, wanted):
        existing = self.index_facts(spec.schema, spec.name)
        # Only a valid index is ever replaced: a replacement leftover matters (and is read) only then.
        replaceable = existing is not None and existing.row["valid"] and existing.row["ready"]
        return planner.PresentFacts(
            spec=spec, wanted=wanted, table_oid=self.table_row["oid"],
            default_tablespace=catalog.default_tablespace(self.conn), existing=existing,
            replacement=self.index_facts(spec.schema, planner.replacement_name(spec.name)) if replaceable else None)

    def existing_facts(self, schema, name, table, leftovers=False):
        existing = self.index_facts(schema, name, table=table)
        found = []
        if leftovers and existing is not None:
            found = [planner.Index(row, catalog.builds_of(self.conn, row["oid"]))
                     for row in catalog.cc_leftovers(self.conn, existing.row["table_oid"], name)]
        return planner.ExistingFacts(schema, name, existing, found)

    # ----------------------------------------------------------------- carrying out a plan
    def finish(self, plan, schema, name):
        sql_text = [step.statement.as_string(self.conn) for step in plan.steps]
        for step, text in zip(plan.steps, sql_text, strict=True):
            step.text = text
        if self.check_mode:
            return self.result(plan, schema, name, sql_text, self.existing_index(schema, name))
        job_id = self.job_id = self.record_start(plan, schema, name)
        try:
            for step in plan.steps:
                self.run_step(step, schema)
            final = self.existing_index(schema, name)
            if plan.steps and plan.action != "dropped" and not (final and final["valid"]):
                raise IndexOpsError(f"index {schema}.{name} is not valid after {plan.action}",
                                    expected="a valid index", hint="Run pg_index_status and the cleanup playbook.")
            result = self.result(plan, schema, name, sql_text, final)
            result["expectations"] = self.expectations(result, schema, name)
        except Exception as exc:
            self.record_failure(job_id, plan.action, exc)
            if isinstance(exc, IndexOpsError):
                exc.details.update(self.measured_so_far())
            raise
        unmet = [item for item in result["expectations"] if not item["met"]]
        self.record_finish(job_id, state="failed" if unmet else "succeeded", action=plan.action,
                           last_error="; ".join(item["message"] for item in unmet) or None,
                           definition_after=result["definition"], observed=observed(result))
        result["rolled_back_jobs"] = [] if unmet else self.close_rolled_back(job_id)
        self.release()
        if unmet:
            raise IndexOpsError(
                f"{plan.action} of {schema}.{name} finished but did not meet the change's expectations: "
                + "; ".join(item["message"] for item in unmet),
                expected="every expectation in the change file to hold",
                hint="The index was left as it is; roll back with the rollback playbook if it must go.",
                result=result)
        return result

    def result(self, plan, schema, name, sql_text, final):
        final = final or {}
        return {
            "changed": bool(plan.steps),
            "action": plan.action,
            "sql": sql_text,
            "definition": final.get("definition", ""),
            "valid": bool(final.get("valid")),
            "size_bytes": final.get("size_bytes") or 0,
            "duration_s": round(time.monotonic() - self.started, 3),
            "attempts": self.counter.attempts,
            "lock_wait_s": round(self.counter.lock_wait_s, 3),
            "txn_wait_s": round(self.transactions_waited_s, 3),
            "diff": {"before": plan.before + "\n" if plan.before else "",
                     "after": plan.after + "\n" if plan.after else ""},
            "schema": schema,
            "name": name,
            "table": (self.table_row or {}).get("table"),
            "table_bytes": (self.table_row or {}).get("table_bytes"),
            "table_rows_estimate": (self.table_row or {}).get("estimated_rows"),
            "definition_before": plan.definition_before,
            "expectations": [],
            "rolled_back_jobs": [],
        }

    # ----------------------------------------------------------------- ledger and expectations
    def record_start(self, plan, schema, name):
        """Record the job as running before any DDL, so a crash leaves a trace."""
        if not self.ledger:
            return None
        ledger.ensure(self.conn, self.ledger_owner)
        # The job's client session (see watch_session) is opened first: a run that cannot open its
        # second connection (max_connections) stops here, before it records a job it cannot run.
        client = self.watch_session()
        job_id = ledger.start(self.conn, {
            **{key: self.ledger.get(key) for key in LEDGER_FIELDS},
            "action": plan.action, "index_schema": schema, "index_name": name,
            "table_name": (self.table_row or {}).get("table"), "definition_before": plan.definition_before or None,
            "expected": self.expected or {},
        })
        # Earlier runs of this change whose session is gone can never record their end: close them.
        ledger.close_lost(self.conn, self.ledger.get("change_id"), self.ledger.get("environment"), job_id)
        self.job_id = job_id
        ledger.name_client(self.conn, job_id, client.get_backend_pid())
        return job_id

    def record_refusal(self, exc, schema, name):
        """A run refused before any DDL still leaves a failed job, so the ledger says why."""
        if not self.ledger or self.check_mode or self.job_id is not None or self.conn is None or self.conn.closed:
            return
        try:
            plan = Plan(action="none")
            job_id = self.record_start(plan, schema, name)
            self.record_finish(job_id, state="failed", last_error=exc.msg if hasattr(exc, "msg") else str(exc))
        except (psycopg2.Error, IndexOpsError):
            pass  # the original error is the one to report; a ledger that cannot be written is secondary

    def record_finish(self, job_id, **fields):
        if job_id is None:
            return
        if self.conn.closed:
            self.conn = self.reconnect()
        ledger.finish(self.conn, job_id, attempts=self.counter.attempts, **fields)

    def measured_so_far(self):
        """What a failed run did, for its result: the statements tried and the waits, so that a report
        of a failure never says that nothing ran."""
        return {"sql": list(self.tried), "attempts": self.counter.attempts,
                "lock_wait_s": round(self.counter.lock_wait_s, 3),
                "txn_wait_s": round(self.transactions_waited_s, 3),
                "duration_s": round(time.monotonic() - self.started, 3)}

    def record_failure(self, job_id, action, exc):
        """Finish the job as failed; when even the ledger cannot be reached (the server is down),
        the failure itself is still what is reported, and it says what status will show."""
        try:
            self.record_finish(job_id, state="failed", action=action, last_error=str(exc),
                               observed={"txn_wait_s": round(self.transactions_waited_s, 3),
                                         "lock_wait_s": round(self.counter.lock_wait_s, 3)})
        except (psycopg2.Error, IndexOpsError) as ledger_exc:
            if isinstance(exc, IndexOpsError):
                exc.hint = (f"{exc.hint} The ledger could not record this failure "
                            f"({' '.join(str(ledger_exc).split())[:200]}): status shows job {job_id} as lost.")

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

    def close_rolled_back(self, job_id):
        """A successful rollback marks the runs it undid, so the ledger says the change is gone."""
        if job_id is None or self.ledger.get("kind") != "rollback":
            return []
        return ledger.mark_rolled_back(self.conn, self.ledger["change_id"], self.ledger["environment"], job_id)

    def expectations(self, result, schema, name):
        """Check the change's promises against what happened; each item says met or not."""
        checks = []
        wanted = self.expected or {}
        if "valid" in wanted:
            checks.append(("valid", wanted["valid"], result["valid"], result["valid"] == wanted["valid"]))
        if "max_duration" in wanted:
            limit = duration_seconds(wanted["max_duration"], "max_duration")
            checks.append(("max_duration", wanted["max_duration"], f"{result['duration_s']}s",
                           result["duration_s"] <= limit))
        if "max_size" in wanted:
            limit = size_bytes(wanted["max_size"], "max_size")
            checks.append(("max_size", wanted["max_size"], f"{result['size_bytes']} bytes",
                           result["size_bytes"] <= limit))
        if "plan_uses_index" in wanted:
            used = self.plan_uses(wanted["plan_uses_index"], name, schema)
            checks.append(("plan_uses_index", f"the plan uses {name}", "used" if used else "not used", used))
        return [{"name": key, "expected": exp, "observed": obs, "met": met,
                 "message": f"{key}: expected {exp}, observed {obs}"} for key, exp, obs, met in checks]

    def plan_uses(self, query, name, schema):
        """EXPLAIN (no ANALYZE: the query is planned, never run) in a read-only transaction.

        The query is the application's, pasted from the change file: its unqualified table names
        are qualified with the index's schema (fragments.select_statement), and it runs under the
        session's pinned search_path, so its functions and operators resolve in pg_catalog and
        nothing in the table's schema (which other roles may write to) is looked up for it.
        """
        statement = select_statement(query, schema)
        self.conn.autocommit = False
        try:
            with self.conn.cursor() as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                cur.execute(sqlcompose.explain_json(statement))
                plan = cur.fetchone()[0]
        finally:
            self.conn.rollback()
            self.conn.autocommit = True
        return name in plan_index_names(plan)

    def run_step(self, step, schema):
        def attempt():
            try:
                self.execute(step.statement, watched=step.watched, build_wait_timeout_s=self.build_wait_left())
            except (psycopg2.Error, waits.LockWaitCut, TransactionWaitExceeded, WatchLost):
                self.clean_up_after(step, schema)
                raise
            self.statements.append(step.statement.as_string(self.conn))

        try:
            run_with_retries(attempt, self.delays(), self.counter, sleep=self.sleep)
        except RetryBudgetExhausted as exc:
            raise self.budget_error(step, schema, exc) from None
        except TransactionWaitExceeded as exc:
            raise self.transaction_wait_error(step, schema, exc) from None
        except WatchLost as exc:
            raise self.watch_lost_error(step, schema, exc) from None
        except psycopg2.Error as exc:
            raise self.ddl_error(step, schema, exc) from None

    def note_tried(self, statement):
        text = statement.as_string(self.conn)
        if not self.tried or self.tried[-1] != text:
            self.tried.append(text)

    def build_wait_left(self):
        """What is left of build_wait_timeout, a budget for the whole run (None: no limit)."""
        limit = self.safety.build_wait_timeout_s
        return None if limit is None else max(limit - self.transactions_waited_s, 0.0)

    def execute(self, statement, *, watched, build_wait_timeout_s):
        """Run one DDL statement. A watched (CONCURRENTLY) one runs with the server's lock_timeout off
        while a second session cuts only its relation-lock waits at lock_timeout (waits.py)."""
        self.note_tried(statement)
        if not watched:
            with self.conn.cursor() as cur:
                cur.execute(statement)
            return
        self.set_lock_timeout("0")
        watch = waits.StatementWatch(self.watch_session(), self.conn, lock_timeout_s=self.safety.lock_timeout_s,
                                     build_wait_timeout_s=build_wait_timeout_s).start()
        try:
            with self.conn.cursor() as cur:
                cur.execute(statement)
        except psycopg2.Error as exc:
            watch.stop()
            raise self.why_cut(watch, exc) from exc
        finally:
            watch.stop()
            self.transactions_waited_s += watch.transactions_waited_s
            self.set_lock_timeout(self.safety.lock_timeout)

    def why_cut(self, watch, exc):
        """The error to raise for a watched statement that failed: the watcher's reason, if it cut it."""
        if getattr(exc, "pgcode", None) != "57014" or watch.cut is None:
            return exc
        if watch.cut == waits.LOCK:
            return waits.LockWaitCut(watch.cut_wait.waited_s, watch.blockers)
        if watch.cut == waits.TRANSACTIONS:
            return TransactionWaitExceeded(self.transactions_waited_s + watch.transactions_waited_s, watch.blockers)
        return WatchLost(watch.error)

    def watch_session(self):
        """The watching session, opened on first use and opened again when it was lost.

        It stays open, idle, for the whole job and the ledger names it as the job's client: when
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
        if self.job_id is not None and not self.check_mode:
            ledger.name_client(self.conn, self.job_id, self.watch_conn.get_backend_pid())
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

    def clean_up_after(self, step, schema):
        """A failed CONCURRENTLY build leaves an invalid index; drop it before reporting."""
        if self.conn.closed:
            self.conn = self.reconnect_or_explain(step, schema)
            self.apply_settings()
            # The job lock died with the old session; take it again (never wait for it) so the
            # final unlock matches what this session holds.
            self.locked = bool(self.table_row) and catalog.try_advisory_lock(self.conn, self.table_row["oid"])
            if self.job_id is not None:
                ledger.follow_session(self.conn, self.job_id)  # else status would call the job lost
        if step.cleanup:
            leftover = self.existing_index(schema, step.cleanup)
            if leftover and not leftover["valid"] and not catalog.builds_of(self.conn, leftover["oid"]):
                self.drop_quietly(schema, step.cleanup)
                self.cleaned.append(step.cleanup)
        if step.cleanup_cc_of and self.table_row:
            for leftover in catalog.cc_leftovers(self.conn, self.table_row["oid"], step.cleanup_cc_of):
                if not catalog.builds_of(self.conn, leftover["oid"]):
                    self.drop_quietly(schema, leftover["name"])
                    self.cleaned.append(leftover["name"])

    def reconnect_or_explain(self, step, schema):
        try:
            return self.reconnect()
        except IndexOpsError as exc:
            left = step.cleanup or step.drops or (f"{step.cleanup_cc_of}_ccnew" if step.cleanup_cc_of else None)
            leftover = (f"An invalid index {schema}.{left} may be left behind: running again repairs it, or "
                        "playbooks/cleanup.yml drops it." if left else "")
            raise IndexOpsError(
                f"the connection to the server was lost while running `{step.text}` "
                f"and could not be opened again within {RECONNECT_S:.0f}s ({exc.what}). {leftover}",
                expected="the server to stay reachable during the change",
                hint="Running again is safe once the server is back.", retry_safe=True) from None

    def drop_quietly(self, schema, name):
        """Cleanup gets its own retries, and a fresh build_wait_timeout; if even that fails, say
        exactly what is left."""
        statement = sqlcompose.drop_index(schema, name, concurrently=self.safety.concurrently)

        def attempt():
            self.execute(statement, watched=self.safety.concurrently,
                         build_wait_timeout_s=self.safety.build_wait_timeout_s)

        try:
            run_with_retries(attempt, self.delays(), RetryCounter(), sleep=self.sleep)
        except (RetryBudgetExhausted, psycopg2.Error, TransactionWaitExceeded, WatchLost) as exc:
            raise IndexOpsError(
                f"the build failed and its invalid index {schema}.{name} could not be dropped ({exc})",
                expected="the leftover to be dropped",
                hint=f"Drop it by hand: {statement.as_string(self.conn)}") from None
        self.statements.append(statement.as_string(self.conn))

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
                f"({exc.lock_wait_s:.1f}s waited). Waiting on: {who}",
                expected="the conflicting transactions to finish within the retry budget",
                hint=RERUN_SAFE + " Rerun when they finish, or raise lock_retries.",
                retry_safe=True, blockers=blockers) from None
        finally:
            # Only the retries count as extra attempts: a read that got its lock at once is free.
            self.counter.attempts += max(counter.attempts - 1, 0)
            self.counter.lock_wait_s += counter.lock_wait_s

    def budget_error(self, step, schema, exc):
        blockers = getattr(exc.last_error, "blockers", None)
        if blockers is None:  # the server's own lock timeout (an unwatched statement)
            blockers, who = self.blockers_of(self.table_row["oid"])
        else:
            who = "; ".join(waits.describe_session(row) for row in blockers[:3]) or "no blocking session is visible"
        left = self.left_behind(step, schema)
        return IndexOpsError(
            f"could not get the locks for `{step.statement.as_string(self.conn)}` within lock_timeout "
            f"{self.safety.lock_timeout} in {exc.attempts} attempts ({exc.lock_wait_s:.1f}s waited). "
            f"Waiting on: {who}",
            expected="the conflicting transactions to finish within the retry budget",
            hint=(RERUN_SAFE if left == NOTHING_LEFT else f"{left} Running again is safe.")
            + " Rerun when they finish, or raise lock_retries.",
            retry_safe=True, blockers=blockers)

    def transaction_wait_error(self, step, schema, exc):
        oldest = "; ".join(waits.describe_session(row) for row in exc.blockers[:3]) or "no session is visible any more"
        return IndexOpsError(
            f"`{step.statement.as_string(self.conn)}` waited {exc.waited_s:.1f}s for other transactions to finish, "
            f"longer than build_wait_timeout {self.safety.build_wait_timeout}, and was stopped. "
            f"Waiting on: {oldest}. {self.left_behind(step, schema)}",
            expected=f"the transactions the build waits for to end within build_wait_timeout "
                     f"{self.safety.build_wait_timeout}",
            hint="Running again is safe: rerun when those transactions have ended, or raise or unset "
                 "build_wait_timeout (waiting blocks no reads or writes).",
            retry_safe=True, blockers=exc.blockers)

    def watch_lost_error(self, step, schema, exc):
        return IndexOpsError(
            f"the session watching `{step.statement.as_string(self.conn)}` for lock waits failed ({exc}), so the "
            f"statement was stopped rather than left waiting unbounded. {self.left_behind(step, schema)}",
            expected="both sessions of the run to stay connected",
            hint="Running again is safe.", retry_safe=True)

    def left_behind(self, step, schema):
        """What a failed step left, in one sentence for its error."""
        if step.drops:
            try:
                index = self.existing_index(schema, step.drops)
            except (IndexOpsError, psycopg2.Error):
                return f"Whether {schema}.{step.drops} still exists could not be read; pg_index_status shows it."
            if index is not None and not index["valid"]:
                return (f"The drop stopped half way: {schema}.{step.drops} is still there and INVALID (queries do "
                        "not use it, writes still maintain it); running again finishes the drop.")
        if self.cleaned:
            return f"The invalid index it left ({', '.join(self.cleaned)}) was dropped, so nothing is left behind."
        return NOTHING_LEFT

    def ddl_error(self, step, schema, exc):
        code = getattr(exc, "pgcode", None)
        statement = step.statement.as_string(self.conn)
        diag = getattr(exc, "diag", None)
        detail = getattr(diag, "message_detail", None) if diag else None
        # libpq's own messages (a lost connection) span lines; the operator reads one line.
        message = " ".join(((getattr(diag, "message_primary", None) if diag else None) or str(exc)).split())
        left = self.left_behind(step, schema)
        detail = f"{detail.rstrip('.')}." if detail else ""
        if code == "23505":
            return IndexOpsError(
                " ".join(filter(None, (f"`{statement}` failed: {message}.", detail, left))),
                expected="no duplicate keys for a unique index",
                hint="Remove the duplicates (or drop unique), then run again.", sqlstate=code, detail=detail)
        if code == "57014":
            return IndexOpsError(
                f"`{statement}` was cancelled: {message}. {left}",
                expected=f"the build to finish within statement_timeout {self.safety.statement_timeout or 'none'}",
                hint="Running again is safe; raise statement_timeout if it was the timeout.",
                retry_safe=True, sqlstate=code)
        if code and code.startswith("53"):  # insufficient resources: disk full, out of memory, temp_file_limit
            return IndexOpsError(
                f"the server ran out of a resource while running `{statement}`: {message} (SQLSTATE {code}). {left}",
                expected="room for the build: free disk space where the server writes its temporary files "
                         "(temp_tablespaces) and the index, and temp_file_limit above the size of the build's sort",
                hint="Running again is safe once there is room: free space, or raise temp_file_limit or "
                     "maintenance_work_mem (a build sorts in memory up to maintenance_work_mem, then on disk).",
                retry_safe=True, sqlstate=code)
        if code in ("57P01", "57P02", "57P03") or code is None:
            return IndexOpsError(
                f"the session running `{statement}` was terminated or lost its connection ({message}). {left}",
                expected="the session to run until the statement finished",
                hint="Running again is safe.", retry_safe=True, sqlstate=code)
        return IndexOpsError(
            " ".join(filter(None, (f"PostgreSQL refused `{statement}`: {message} (SQLSTATE {code}).", detail, left))),
            expected="a statement the server accepts", hint="Fix the cause above, then run again.", sqlstate=code)

    # ----------------------------------------------------------------- inspection and guards
    def open(self, *, concurrent, nulls_not_distinct=False):
        self.conn = self.connect()
        self.server_version = catalog.server_version_num(self.conn)
        guard_server(self.server_version, concurrent=concurrent, nulls_not_distinct=nulls_not_distinct,
                     standby=catalog.in_recovery(self.conn))
        self.apply_settings()
        if self.ledger:
            # A foreign ledger is refused before anything else runs (the definition check's temporary
            # table, the job lock, any DDL), in check mode too.
            ledger.verify(self.conn, self.ledger_owner)

    def apply_settings(self):
        with self.conn.cursor() as cur:
            for name, value in self.safety.session_settings().items():
                try:
                    cur.execute(sqlcompose.SET_CONFIG, (name, str(value)))
                except psycopg2.Error as exc:
                    raise input_error(f"{name} {value!r} was refused by the server: {str(exc).strip()}",
                                      f"a valid value for {name}") from None

    def require_table(self, schema, name):
        row = self.look_up("table", schema, name, lambda: catalog.table(self.conn, schema, name))
        if row is None or row["relkind"] not in ("r", "p", "m"):
            raise input_error(f"table {schema}.{name} does not exist in database {self.conn.info.dbname}",
                              "an existing table (check table, schema and db)")
        if row["relkind"] == "p" and self.safety.concurrently:
            raise input_error(
                f"{schema}.{name} is a partitioned table; PostgreSQL cannot build or drop its indexes CONCURRENTLY",
                "an index per partition, or concurrently: false (which blocks writes for the whole build)")
        return row

    def require_columns(self, names):
        present = catalog.column_names(self.conn, self.table_row["oid"])
        missing = [name for name in names if name not in present]
        if missing:
            table = f"{self.table_row['schema']}.{self.table_row['table']}"
            raise input_error(f"column {missing[0]!r} does not exist in table {table}",
                              f"columns of {table}: {', '.join(sorted(present))}")

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

    def release(self):
        if self.conn is not None and not self.conn.closed:
            if self.locked:
                catalog.advisory_unlock(self.conn, self.table_row["oid"])
                self.locked = False

    def close(self):
        for conn in (self.conn, self.watch_conn):
            if conn is not None and not conn.closed:
                conn.close()
