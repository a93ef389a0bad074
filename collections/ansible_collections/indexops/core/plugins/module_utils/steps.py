"""Carrying out a plan's steps: each DDL statement under lock_timeout with retries, CONCURRENTLY
ones watched by a second session, the invalid index a failed build leaves dropped again, and every
failure phrased for the person on call (what was tried, what it waited on, what is left behind).
"""

from __future__ import annotations

import psycopg2

from ansible_collections.indexops.core.plugins.module_utils import catalog, humanize, sqlcompose, waits
from ansible_collections.indexops.core.plugins.module_utils.errors import RERUN_SAFE, IndexOpsError
from ansible_collections.indexops.core.plugins.module_utils.retry import (
    RetryBudgetExhausted,
    RetryCounter,
    run_with_retries,
)
from ansible_collections.indexops.core.plugins.module_utils.session import RECONNECT_S
from ansible_collections.indexops.core.plugins.module_utils.waits import TransactionWaitExceeded, WatchLost

NOTHING_LEFT = "Nothing was left behind."


class StepRunner:
    """Runs steps through a Session; keeps what ran, what was tried and the time spent waiting."""

    def __init__(self, session, on_reconnect=None, on_attempt=None, on_partition=None):
        self.session = session
        self.on_reconnect = on_reconnect  # called after the main session was opened again
        self.on_attempt = on_attempt  # called with (attempt, of) before each retry of a statement
        self.on_partition = on_partition  # called with (k, of, name) before a step on leaf partition k
        self.statements = []  # statements that succeeded
        self.tried = []  # every statement started, retries once, cleanups included: what a failure reports
        self.cleaned = []  # invalid indexes this run left and dropped again
        self.transactions_waited_s = 0.0

    @property
    def conn(self):
        return self.session.conn

    @property
    def safety(self):
        return self.session.safety

    def run_step(self, step, schema):
        schema = step.schema or schema  # a step on a partition works in the partition's schema
        if step.partition and self.on_partition:  # so that status can say "partition 3/8"
            self.on_partition(*step.partition)
        numbers = iter(range(1, self.safety.lock_retries + 1))

        def attempt():
            number = next(numbers, self.safety.lock_retries)
            if number > 1 and self.on_attempt:  # so that status can say "attempt 2/5" while it runs
                self.on_attempt(number, self.safety.lock_retries)
            try:
                self.execute(step.statement, watched=step.watched, build_wait_timeout_s=self.build_wait_left())
            except (psycopg2.Error, waits.LockWaitCut, TransactionWaitExceeded, WatchLost):
                self.clean_up_after(step, schema)
                raise
            self.statements.append(step.statement.as_string(self.conn))

        try:
            run_with_retries(attempt, self.session.delays(), self.session.counter,
                             sleep=self.session.sleep)
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
        self.session.set_lock_timeout("0")
        watch = waits.StatementWatch(self.session.watch_session(), self.conn, lock_timeout_s=self.safety.lock_timeout_s,
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
            self.session.set_lock_timeout(self.safety.lock_timeout)

    def why_cut(self, watch, exc):
        """The error to raise for a watched statement that failed: the watcher's reason, if it cut it."""
        if getattr(exc, "pgcode", None) != "57014" or watch.cut is None:
            return exc
        if watch.cut == waits.LOCK:
            return waits.LockWaitCut(watch.cut_wait.waited_s, watch.blockers)
        if watch.cut == waits.TRANSACTIONS:
            return TransactionWaitExceeded(self.transactions_waited_s + watch.transactions_waited_s, watch.blockers)
        return WatchLost(watch.error)

    def clean_up_after(self, step, schema):
        """A failed CONCURRENTLY build leaves an invalid index; drop it before reporting."""
        if self.conn.closed:
            self.session.conn = self.reconnect_or_explain(step, schema)
            self.session.apply_settings()
            self.session.relock()
            if self.on_reconnect is not None:
                self.on_reconnect()  # the ledger names the new session, else status would call the job lost
        if step.cleanup:
            leftover = self.session.index_row(schema, step.cleanup)
            if leftover and not leftover["valid"] and not catalog.builds_of(self.conn, leftover["oid"]):
                self.drop_quietly(schema, step.cleanup)
                self.cleaned.append(step.cleanup)
        table_oid = self.table_oid_of(step)
        if step.cleanup_cc_of and table_oid:
            for leftover in catalog.cc_leftovers(self.conn, table_oid, step.cleanup_cc_of):
                if not catalog.builds_of(self.conn, leftover["oid"]):
                    self.drop_quietly(schema, leftover["name"])
                    self.cleaned.append(leftover["name"])

    def table_oid_of(self, step):
        """The table the step works on: its partition's, else the run's."""
        return step.table_oid or (self.session.table_row or {}).get("oid")

    def reconnect_or_explain(self, step, schema):
        try:
            return self.session.reconnect()
        except IndexOpsError as exc:
            left = step.cleanup or step.drops or (f"{step.cleanup_cc_of}_ccnew" if step.cleanup_cc_of else None)
            leftover = (f"An invalid index {schema}.{left} may be left behind: running again repairs it, or "
                        "playbooks/cleanup.yml drops it." if left else "")
            raise IndexOpsError(
                f"the connection to the server was lost while running `{step.text}` "
                f"and could not be opened again within {humanize.duration(RECONNECT_S)} ({exc.what}). {leftover}",
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
            run_with_retries(attempt, self.session.delays(), RetryCounter(), sleep=self.session.sleep)
        except (RetryBudgetExhausted, psycopg2.Error, TransactionWaitExceeded, WatchLost) as exc:
            raise IndexOpsError(
                f"the build failed and its invalid index {schema}.{name} could not be dropped ({exc})",
                expected="the leftover to be dropped",
                hint=f"Drop it by hand: {statement.as_string(self.conn)}") from None
        self.statements.append(statement.as_string(self.conn))

    def budget_error(self, step, schema, exc):
        blockers = getattr(exc.last_error, "blockers", None)
        if blockers is None:  # the server's own lock timeout (an unwatched statement)
            blockers, who = self.session.blockers_of(self.table_oid_of(step))
        else:
            who = "; ".join(waits.describe_session(row) for row in blockers[:3]) or "no blocking session is visible"
        left = self.left_behind(step, schema)
        return IndexOpsError(
            f"could not get the locks for `{step.statement.as_string(self.conn)}` within lock_timeout "
            f"{self.safety.lock_timeout} in {exc.attempts} attempts ({humanize.duration(exc.lock_wait_s)} waited). "
            f"Waiting on: {who}",
            expected="the conflicting transactions to finish within the retry budget",
            hint=(RERUN_SAFE if left == NOTHING_LEFT else f"{left} Running again is safe.")
            + " Rerun when they finish, or raise lock_retries.",
            retry_safe=True, blockers=blockers)

    def transaction_wait_error(self, step, schema, exc):
        oldest = "; ".join(waits.describe_session(row) for row in exc.blockers[:3]) or "no session is visible any more"
        return IndexOpsError(
            f"`{step.statement.as_string(self.conn)}` waited {humanize.duration(exc.waited_s)} for other transactions "
            f"to finish, "
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
                index = self.session.index_row(schema, step.drops)
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

