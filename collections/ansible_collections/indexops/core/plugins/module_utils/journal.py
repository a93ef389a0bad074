"""The ledger side of one pg_index run: the job's row in indexops.jobs, from start to finish.

A job is recorded as running before its first DDL statement (a crash never leaves an unrecorded
change), names its sessions so that status can tell a job whose process is gone, and is finished
as succeeded or failed; a refusal before any DDL still leaves a failed row that says why. The SQL
and the trust check are ledger.py's; this is when each is used.
"""

from __future__ import annotations

import psycopg2

from ansible_collections.indexops.core.plugins.module_utils import ledger
from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError

# Keys of the module's ledger option copied into the job row.
LEDGER_FIELDS = ("change_id", "spec_digest", "kind", "environment", "owner", "rollback_note", "operator",
                 "override_reason")


def observed(result):
    """What the job row keeps of a finished run's result. definition_after stays pg_get_indexdef alone
    (status compares it with the index); the constraint the index backs, if any, is kept here."""
    keys = ("action", "valid", "size_bytes", "duration_s", "attempts", "lock_wait_s", "txn_wait_s", "table_bytes",
            "table_rows_estimate", "constraint")
    return {key: result.get(key) for key in keys}


class Journal:
    """The job row of one run; ``record`` is the module's ledger option (None: no ledger)."""

    def __init__(self, session, record, *, expected=None, ledger_owner=None, check_mode=False):
        self.session = session
        self.record = record
        self.expected = expected
        self.ledger_owner = ledger_owner  # a shared ledger owner the ledger may belong to besides the login role
        self.check_mode = check_mode
        self.job_id = None

    @property
    def conn(self):
        return self.session.conn

    def verify(self):
        """Refuse a foreign ledger before anything else runs (the definition check's temporary table,
        the job lock, any DDL), in check mode too."""
        if self.record:
            ledger.verify(self.conn, self.ledger_owner)

    def start(self, plan, schema, name):
        """Record the job as running before any DDL, so a crash leaves a trace."""
        if not self.record:
            return None
        ledger.ensure(self.conn, self.ledger_owner)
        # The job's client session (see Session.watch_session) is opened first: a run that cannot open
        # its second connection (max_connections) stops here, before it records a job it cannot run.
        client = self.session.watch_session()
        job_id = ledger.start(self.conn, {
            **{key: self.record.get(key) for key in LEDGER_FIELDS},
            "action": plan.action, "index_schema": schema, "index_name": name,
            "table_name": (self.session.table_row or {}).get("table"),
            "definition_before": plan.definition_before or None, "expected": self.expected or {},
        })
        # Earlier runs of this change whose session is gone can never record their end: close them.
        ledger.close_lost(self.conn, self.record.get("change_id"), self.record.get("environment"), job_id)
        self.job_id = job_id
        ledger.name_client(self.conn, job_id, client.get_backend_pid())
        return job_id

    def refused(self, exc, plan, schema, name):
        """A run refused before any DDL still leaves a failed job, so the ledger says why."""
        conn = self.conn
        if not self.record or self.check_mode or self.job_id is not None or conn is None or conn.closed:
            return
        try:
            self.start(plan, schema, name)
            self.finish(state="failed", last_error=exc.msg if hasattr(exc, "msg") else str(exc))
        except (psycopg2.Error, IndexOpsError):
            pass  # the original error is the one to report; a ledger that cannot be written is secondary

    def finish(self, **fields):
        if self.job_id is None:
            return
        if self.conn.closed:
            self.session.conn = self.session.reconnect()
        ledger.finish(self.conn, self.job_id, attempts=self.session.counter.attempts, **fields)

    def failed(self, action, exc, waits):
        """Finish the job as failed; when even the ledger cannot be reached (the server is down),
        the failure itself is still what is reported, and it says what status will show."""
        try:
            self.finish(state="failed", action=action, last_error=str(exc), observed=waits)
        except (psycopg2.Error, IndexOpsError) as ledger_exc:
            if isinstance(exc, IndexOpsError):
                exc.hint = (f"{exc.hint} The ledger could not record this failure "
                            f"({' '.join(str(ledger_exc).split())[:200]}): status shows job {self.job_id} as lost.")

    def close_rolled_back(self):
        """A successful rollback marks the runs it undid, so the ledger says the change is gone."""
        if self.job_id is None or self.record.get("kind") != "rollback":
            return []
        return ledger.mark_rolled_back(self.conn, self.record["change_id"], self.record["environment"], self.job_id)

    def note_attempt(self, attempt, of):
        """A statement is tried again after a lock timeout: the job row says which attempt it is on."""
        if self.job_id is not None and not self.check_mode:
            ledger.note_attempt(self.conn, self.job_id, self.session.counter.attempts, attempt, of)

    def note_partition(self, number, of, partition):
        """A step on leaf partition ``number`` of ``of`` starts: the job row says which."""
        if self.job_id is not None and not self.check_mode:
            ledger.note_partition(self.conn, self.job_id, number, of, partition)

    def name_client(self, pid):
        """The watching session was (re)opened: it is the job's client now."""
        if self.job_id is not None and not self.check_mode:
            ledger.name_client(self.conn, self.job_id, pid)

    def follow_session(self):
        """The main session was reopened: name it as the running job's backend."""
        if self.job_id is not None:
            ledger.follow_session(self.conn, self.job_id)
