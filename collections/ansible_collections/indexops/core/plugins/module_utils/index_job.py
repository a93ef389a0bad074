"""One pg_index run: inspect the target, decide, and carry out the plan safely.

The job is deliberately linear: connect -> guard the server -> check the ledger is ours -> find the
table -> take the per-table job lock -> read the facts (session.py) -> plan (plan.py, pure) ->
(check mode stops here) -> record the job (journal.py) -> run each step under lock_timeout with
retries (steps.py) -> verify and check the change's expectations (expectations.py).
"""

from __future__ import annotations

import time

import psycopg2

from ansible_collections.indexops.core.plugins.module_utils import constraint_catalog, constraints, expectations
from ansible_collections.indexops.core.plugins.module_utils import plan as planner
from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError
from ansible_collections.indexops.core.plugins.module_utils.journal import Journal, observed
from ansible_collections.indexops.core.plugins.module_utils.plan import Plan
from ansible_collections.indexops.core.plugins.module_utils.session import WAIT_POLL_S, Session
from ansible_collections.indexops.core.plugins.module_utils.steps import StepRunner


class IndexJob:
    def __init__(self, connect, safety, *, check_mode=False, rng=None, sleep=time.sleep, ledger=None,
                 expected=None, watch_connect=None, ledger_owner=None):
        self.safety = safety
        self.check_mode = check_mode
        self.expected = expected
        self.session = Session(connect, safety, watch_connect=watch_connect, check_mode=check_mode, rng=rng,
                               sleep=sleep)
        self.journal = Journal(self.session, ledger, expected=expected, ledger_owner=ledger_owner,
                               check_mode=check_mode)
        # The ledger follows the job's sessions: a reopened watcher is its client, a reopened main
        # session its backend (else status would call the job lost).
        self.session.on_watch_opened = self.journal.name_client
        self.steps = StepRunner(self.session, on_reconnect=self.journal.follow_session,
                                on_attempt=self.journal.note_attempt, on_partition=self.journal.note_partition)
        self.started = time.monotonic()
        self.backing = None  # the constraint the index backs after the run (constraint_catalog.backing)
        self.spec = None  # the spec of state present: its constraint is checked after the run

    # ----------------------------------------------------------------- entry points per state
    def state_present(self, spec):
        session = self.open(nulls_not_distinct=spec.nulls_not_distinct)
        session.table_row = session.require_table(spec.schema, spec.table)
        session.require_columns(spec.referenced_columns)
        session.lock_table()
        wanted = session.canonical_definition(spec)
        self.spec = spec
        plan = self.decide(lambda: self.present_plan(spec, wanted))
        return self.finish(plan, spec.schema, spec.name)

    def present_plan(self, spec, wanted):
        """plan.py's plan for the index, then constraints.py's for a wanted constraint on it."""
        facts = self.session.present_facts(spec, wanted)
        outcome = planner.plan_present(facts, self.safety)
        if spec.constraint is None:
            return outcome
        found = constraint_catalog.read(self.session.conn, self.session.table_row,
                                        facts.existing.row if facts.existing else None, constraints.key_columns(spec))
        return constraints.plan_present(outcome, facts, found, self.safety)

    def state_absent(self, name, schema, table, drop_constraint=False):
        session = self.open()
        existing = session.existing_index(schema, name, table=table)
        if existing is None:
            return self.finish(Plan("none"), schema, name)
        session.table_row = session.require_table(existing["table_schema"], existing["table"])
        session.lock_table()
        plan = self.decide(lambda: self.absent_plan(schema, name, table, drop_constraint))
        return self.finish(plan, schema, name)

    def absent_plan(self, schema, name, table, drop_constraint):
        """An index that backs a constraint is constraints.py's to drop; any other, plan.py's."""
        facts = self.session.existing_facts(schema, name, table)
        found = constraint_catalog.read(self.session.conn, self.session.table_row,
                                        facts.existing.row if facts.existing else None)
        return constraints.plan_absent(facts, found, self.safety, drop_constraint)

    def state_rebuilt(self, name, schema, table):
        session = self.open()
        existing = session.existing_index(schema, name, table=table)
        if existing is None:
            raise planner.plan_rebuilt(planner.ExistingFacts(schema, name), self.safety).error
        session.table_row = session.require_table(existing["table_schema"], existing["table"])
        session.lock_table()
        plan = self.decide(lambda: planner.plan_rebuilt(session.existing_facts(schema, name, table, leftovers=True),
                                                        self.safety))
        return self.finish(plan, schema, name)

    def open(self, nulls_not_distinct=False):
        """Connect, guard the server, and refuse a foreign ledger before anything else runs."""
        self.session.open(concurrent=self.safety.concurrently, nulls_not_distinct=nulls_not_distinct)
        self.journal.verify()
        return self.session

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
            self.session.sleep(WAIT_POLL_S)

    # ----------------------------------------------------------------- carrying out a plan
    def finish(self, plan, schema, name):
        session = self.session
        sql_text = [step.statement.as_string(session.conn) for step in plan.steps]
        for step, text in zip(plan.steps, sql_text, strict=True):
            step.text = text
        if self.check_mode:
            final = session.existing_index(schema, name)
            return self.with_constraint(self.result(plan, schema, name, sql_text, final), final)
        self.journal.start(plan, schema, name)
        done = []
        try:
            for step in plan.steps:
                self.steps.run_step(step, schema)
                done.append(step)
            final = session.existing_index(schema, name)
            if plan.steps and plan.action != "dropped" and not (final and final["valid"]):
                raise IndexOpsError(f"index {schema}.{name} is not valid after {plan.action}",
                                    expected="a valid index", hint="Run pg_index_status and the cleanup playbook.")
            result = self.with_constraint(self.result(plan, schema, name, sql_text, final), final, verify=True)
            result["expectations"] = expectations.check(session.conn, self.expected, result, schema, name)
        except Exception as exc:
            self.undo_checks(done, schema, exc)
            self.journal.failed(plan.action, exc, {"txn_wait_s": round(self.steps.transactions_waited_s, 3),
                                                   "lock_wait_s": round(session.counter.lock_wait_s, 3)})
            if isinstance(exc, IndexOpsError):
                exc.details.update(self.measured_so_far())
                exc.hint = f"{exc.hint} {self.unfinished_partitioned(plan, schema, name)}".strip()
            raise
        unmet = [item for item in result["expectations"] if not item["met"]]
        self.journal.finish(state="failed" if unmet else "succeeded", action=plan.action,
                            last_error="; ".join(item["message"] for item in unmet) or None,
                            definition_after=result["definition"], observed=observed(result))
        result["rolled_back_jobs"] = [] if unmet else self.journal.close_rolled_back()
        session.release()
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
        table_row = self.session.table_row or {}
        return {
            "changed": bool(plan.steps),
            "action": plan.action,
            "sql": sql_text,
            "definition": final.get("definition", ""),
            "valid": bool(final.get("valid")),
            "size_bytes": final.get("size_bytes") or 0,
            "duration_s": round(time.monotonic() - self.started, 3),
            "attempts": self.session.counter.attempts,
            "lock_wait_s": round(self.session.counter.lock_wait_s, 3),
            "txn_wait_s": round(self.steps.transactions_waited_s, 3),
            "diff": {"before": plan.before + "\n" if plan.before else "",
                     "after": plan.after + "\n" if plan.after else ""},
            "schema": schema,
            "name": name,
            "table": table_row.get("table"),
            "table_bytes": table_row.get("table_bytes"),
            "table_rows_estimate": table_row.get("estimated_rows"),
            "definition_before": plan.definition_before,
            "expectations": [],
            "rolled_back_jobs": [],
            "partitions": plan.partitions,
        }

    def unfinished_partitioned(self, plan, schema, name):
        """What a failed partitioned build leaves: the partitioned index, INVALID, with the partitions
        built so far attached. It has no storage of its own (queries on the partitions use the parts
        that are done), so it is left for a rerun to finish rather than thrown away with them."""
        if not plan.partitions:
            return ""
        try:
            index = self.session.index_row(schema, name)
        except (IndexOpsError, psycopg2.Error):
            return ""
        if index is None or index["valid"]:
            return ""
        return (f"The partitioned index {schema}.{name} is left INVALID with the partitions finished so far "
                "attached: running again finishes it without building those again; state: absent drops it.")

    def undo_checks(self, done, schema, exc):
        """Drop the NOT NULL checks of a failed run (constraints.undo_steps); the error says what happened."""
        for step in constraints.undo_steps(done):
            name = step.check[2]
            try:
                step.text = step.statement.as_string(self.session.conn)
                self.steps.run_step(step, schema)
                note = f"The NOT NULL check {name} this run added was dropped again."
            except (IndexOpsError, psycopg2.Error) as undo_exc:  # the first failure is the one to report
                note = (f"The NOT NULL check {name} this run added could not be dropped ({undo_exc}); it rejects "
                        f"NULLs in new rows until it is: running again finishes the change, or drop it by hand.")
            if isinstance(exc, IndexOpsError):
                exc.hint = f"{exc.hint} {note}"

    def with_constraint(self, result, final, verify=False):
        """The ``constraint`` the index backs afterwards, in the result; with ``verify``, the wanted one."""
        self.backing = constraint_catalog.backing(self.session.conn, final)
        result["constraint"] = constraints.result_of(self.backing)
        unmet = constraints.unmet(self.spec, self.backing) if verify and self.spec and final else None
        if unmet:
            raise IndexOpsError(unmet, expected="the wanted constraint after the run",
                                hint="Run pg_index_status; running again adds what is missing.")
        return result

    def measured_so_far(self):
        """What a failed run did, for its result: the statements tried and the waits, so that a report
        of a failure never says that nothing ran."""
        return {"sql": list(self.steps.tried), "attempts": self.session.counter.attempts,
                "lock_wait_s": round(self.session.counter.lock_wait_s, 3),
                "txn_wait_s": round(self.steps.transactions_waited_s, 3),
                "duration_s": round(time.monotonic() - self.started, 3)}

    def record_refusal(self, exc, schema, name):
        """A run refused before any DDL still leaves a failed job, so the ledger says why."""
        self.journal.refused(exc, Plan(action="none"), schema, name)

    def close(self):
        self.session.close()
