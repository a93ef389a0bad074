"""pg_index on a busy database, against a real PostgreSQL: the two waits of a concurrent statement.

Production always has some statement that is seconds old. A concurrent build must wait for such
statements (old snapshots, writers, readers) without failing, because nobody queues behind that
wait; only a wait for a relation lock, which others do queue behind, is cut at lock_timeout.

The load here is real: reporting statements of several seconds on another table, started so that
one is always running, and a writer on the indexed table whose own lock_timeout is the target
(lock_timeout + 250 ms): a write that waited longer for a lock fails with 55P03 and fails the test.
"""

from __future__ import annotations

import contextlib
import threading
import time

import psycopg2
import psycopg2.errors

from tests.integration.helpers_catalog import wait_until
from tests.integration.test_pg_index_failures import (
    in_background,
    index_state,
    invalid_indexes,
    make_table,
    session,
    snapshot_holder,
)
from tests.pg_index_runner import run_pg_index

LOCK_TIMEOUT = "200ms"
WRITE_STALL_LIMIT = "450ms"  # lock_timeout + 250 ms
LOAD_LIMIT_S = 120.0  # every load thread stops by itself after this long


def ledger(change_id="busy"):
    return {"change_id": change_id, "spec_digest": "0" * 64, "kind": "apply", "environment": "staging",
            "owner": "team-db", "rollback_note": "drop it", "operator": "tester"}


class ReportingLoad:
    """Read statements of ``statement_s`` on public.reports, a new one every ``every_s``.

    Each thread runs its statements back to back, the threads offset by ``every_s``, so from the
    first second on some statement (and its snapshot) is always older than lock_timeout.
    """

    def __init__(self, db, statement_s=2.0, every_s=0.5):
        self.db = db
        self.statement_s = statement_s
        self.every_s = every_s
        self.stop = threading.Event()
        self.errors = []
        self.statements = 0
        count = max(int(round(statement_s / every_s)), 1)
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(count)]

    def run(self, slot):
        deadline = time.monotonic() + LOAD_LIMIT_S
        if self.stop.wait(slot * self.every_s):
            return
        try:
            with contextlib.closing(self.db.connect(application_name=f"test/report-{slot}")) as conn:
                with conn.cursor() as cur:
                    while not self.stop.is_set() and time.monotonic() < deadline:
                        cur.execute("SELECT count(*), pg_catalog.pg_sleep(%s) FROM public.reports",
                                    (self.statement_s,))
                        self.statements += 1
        except psycopg2.Error as exc:
            if not self.stop.is_set():  # the load's own cancel at the end is not an error
                self.errors.append(exc)

    def running(self):
        return self.db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND application_name LIKE 'test/report-%%' AND state = 'active'")

    def __enter__(self):
        self.db.execute("CREATE TABLE IF NOT EXISTS public.reports AS SELECT g AS id FROM generate_series(1, 1000) g")
        for thread in self.threads:
            thread.start()
        wait_until(lambda: self.running() >= len(self.threads), "every reporting statement to run")
        return self

    def __exit__(self, *exc):
        self.stop.set()
        with contextlib.suppress(psycopg2.Error):
            self.db.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND application_name LIKE 'test/report-%%'")
        for thread in self.threads:
            thread.join(timeout=30)


class Writer:
    """Inserts into the indexed table in a loop; a write whose lock wait passes the limit fails."""

    def __init__(self, db, table="t", limit=WRITE_STALL_LIMIT):
        self.db = db
        self.table = table
        self.limit = limit
        self.stop = threading.Event()
        self.writes = 0
        self.errors = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        deadline = time.monotonic() + LOAD_LIMIT_S
        next_id = -1
        with contextlib.closing(self.db.connect(application_name="test/writer-load")) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT set_config('lock_timeout', %s, false)", (self.limit,))
                while not self.stop.wait(0.02) and time.monotonic() < deadline:
                    try:
                        cur.execute("INSERT INTO public.t VALUES (%s, 'w@example.com', 'open')", (next_id,))
                        self.writes += 1
                        next_id -= 1
                    except psycopg2.Error as exc:
                        self.errors.append(f"{exc.pgcode}: {exc}")

    def __enter__(self):
        self.thread.start()
        wait_until(lambda: self.writes > 0 or self.errors, "the writer's first write")
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)


def txn_wait_of(db, pattern="indexops/%"):
    """Whether a session of the module waits on another transaction (a virtualxid/transactionid lock)."""
    return db.fetchval(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE NOT l.granted AND l.locktype IN ('virtualxid', 'transactionid') AND a.application_name LIKE %s "
        "AND a.datname = current_database()", (pattern,))


def assert_no_write_stall(writer):
    assert writer.errors == [], writer.errors  # 55P03 here: a write waited longer than lock_timeout + 250 ms
    assert writer.writes > 0


# --------------------------------------------------------------------------- builds finish


def test_build_under_steady_multisecond_statements_succeeds_in_one_attempt(db):
    """On today's main this failed: every attempt met a snapshot older than lock_timeout."""
    make_table(db, rows=20_000)
    with ReportingLoad(db) as load, Writer(db) as writer:
        result = run_pg_index(db, name="t_status_idx", table="t", columns=["status"], lock_timeout=LOCK_TIMEOUT,
                              lock_retries=3, ledger=ledger())
    assert result.get("failed") is not True, result
    assert result["action"] == "created"
    assert result["attempts"] == 1, result
    assert result["lock_wait_s"] == 0
    # It waited for the reporting statements' snapshots, far longer than lock_timeout, and finished.
    assert result["txn_wait_s"] > 0.5, result
    assert index_state(db, "t_status_idx") == (True, True)
    assert invalid_indexes(db) == []
    assert load.errors == []
    assert_no_write_stall(writer)
    observed = db.fetchval("SELECT observed FROM indexops.jobs WHERE change_id = 'busy'")
    assert observed["txn_wait_s"] == result["txn_wait_s"]


def test_rebuild_under_steady_multisecond_statements_succeeds_in_one_attempt(db):
    make_table(db, rows=20_000)
    db.execute("CREATE INDEX t_status_idx ON t (status)")
    oid_before = db.fetchval("SELECT 'public.t_status_idx'::regclass::oid")
    with ReportingLoad(db), Writer(db) as writer:
        result = run_pg_index(db, name="t_status_idx", table="t", state="rebuilt", lock_timeout=LOCK_TIMEOUT,
                              lock_retries=3)
    assert result.get("failed") is not True, result
    assert result["action"] == "rebuilt"
    assert result["attempts"] == 1, result
    assert result["txn_wait_s"] > 0.5, result
    assert db.fetchval("SELECT 'public.t_status_idx'::regclass::oid") != oid_before  # really rebuilt
    assert index_state(db, "t_status_idx") == (True, True)
    assert invalid_indexes(db) == []
    assert_no_write_stall(writer)


def test_drop_waits_for_a_long_reader_of_the_table_without_stalling_writes(db):
    """DROP INDEX CONCURRENTLY waits for every transaction that used the table: a wait for others."""
    make_table(db)
    db.execute("CREATE INDEX t_status_idx ON t (status)")
    with session(db, "test/long-reader", "SELECT count(*) FROM public.t") as reader:
        with Writer(db) as writer:
            with in_background(db, run_pg_index, db, name="t_status_idx", table="t", state="absent",
                               lock_timeout=LOCK_TIMEOUT, lock_retries=2) as future:
                wait_until(lambda: txn_wait_of(db), "the drop to wait for the reader")
                time.sleep(1.5)  # several lock_timeouts: the old behaviour failed the attempt by now
                assert not future.done(), future.result()
                reader.rollback()
                result = future.result(timeout=60)
    assert result.get("failed") is not True, result
    assert result["action"] == "dropped"
    assert result["attempts"] == 1, result
    assert result["txn_wait_s"] >= 1.0, result
    assert index_state(db, "t_status_idx") is None
    assert_no_write_stall(writer)


# --------------------------------------------------------------------------- the limit for waits on others


def test_build_wait_timeout_stops_the_build_names_the_transaction_and_leaves_nothing(db):
    make_table(db)
    with snapshot_holder(db) as holder:
        holder_pid = holder.get_backend_pid()
        result = run_pg_index(db, name="t_status_idx", table="t", columns=["status"], lock_timeout=LOCK_TIMEOUT,
                              build_wait_timeout="1s", ledger=ledger())
        assert invalid_indexes(db) == []  # cleaned up while the holder is still there
    assert result.get("failed") is True, result
    assert result["retry_safe"] is True
    msg = result["msg"]
    assert "longer than build_wait_timeout 1s" in msg, msg
    assert f"pid {holder_pid} (test/snapshot-holder" in msg, msg
    assert "SELECT count(*) FROM pg_catalog.pg_namespace" in msg, msg
    assert "was dropped, so nothing is left behind" in msg, msg
    assert "Running again is safe" in msg, msg
    assert [row["pid"] for row in result["blockers"]] == [holder_pid]
    assert index_state(db, "t_status_idx") is None
    state, last_error = db.fetchone("SELECT state, last_error FROM indexops.jobs WHERE change_id = 'busy'")
    assert state == "failed" and "build_wait_timeout" in last_error
    # Once the transaction has ended, the same run succeeds.
    again = run_pg_index(db, name="t_status_idx", table="t", columns=["status"], lock_timeout=LOCK_TIMEOUT,
                         build_wait_timeout="1s")
    assert again.get("failed") is not True, again
    assert index_state(db, "t_status_idx") == (True, True)


def test_build_wait_timeout_is_a_total_not_a_cut_per_wait(db):
    """Waits shorter than the limit pass, however many there are, until their sum reaches it."""
    make_table(db, rows=20_000)
    with ReportingLoad(db, statement_s=1.0, every_s=0.25):
        result = run_pg_index(db, name="t_status_idx", table="t", columns=["status"], lock_timeout=LOCK_TIMEOUT,
                              build_wait_timeout="30s")
    assert result.get("failed") is not True, result
    assert 0.2 < result["txn_wait_s"] < 30, result


# --------------------------------------------------------------------------- relation locks are still cut


def test_drop_behind_a_lock_on_the_index_itself_is_cut_at_lock_timeout(db):
    """A lock on the index (here COMMENT ON INDEX in an open transaction: SHARE UPDATE EXCLUSIVE on
    the index only) is a relation lock: the drop must not wait behind it past lock_timeout.

    DROP INDEX CONCURRENTLY's final ACCESS EXCLUSIVE lock on the index is the same kind of wait, but
    no reader can be made to hold it up from a test: the drop first waits out every transaction
    that used the table, and after that no query opens the (no longer live) index.
    """
    make_table(db)
    db.execute("CREATE INDEX t_status_idx ON t (status)")
    with session(db, "test/index-locker", "COMMENT ON INDEX public.t_status_idx IS 'in use'") as locker:
        locker_pid = locker.get_backend_pid()
        with Writer(db) as writer:
            result = run_pg_index(db, name="t_status_idx", table="t", state="absent", lock_timeout=LOCK_TIMEOUT,
                                  lock_retries=3, lock_retry_delay=0.1)
        assert_no_write_stall(writer)
    assert result.get("failed") is True, result
    msg = result["msg"]
    assert "within lock_timeout 200ms in 3 attempts" in msg, msg
    assert f"pid {locker_pid} (test/index-locker" in msg, msg
    assert "Nothing was changed or left behind" in msg, msg
    assert result["retry_safe"] is True
    assert index_state(db, "t_status_idx") == (True, True)


def test_drop_past_build_wait_timeout_stops_half_way_says_so_and_a_rerun_finishes(db):
    """The drop marks the index invalid, then waits for the table's readers: stopped there, the
    index is left invalid (queries no longer use it) and the message says a rerun finishes it."""
    make_table(db)
    db.execute("CREATE INDEX t_status_idx ON t (status)")
    with session(db, "test/long-reader", "SELECT count(*) FROM public.t") as reader:
        reader_pid = reader.get_backend_pid()
        result = run_pg_index(db, name="t_status_idx", table="t", state="absent", lock_timeout=LOCK_TIMEOUT,
                              build_wait_timeout="1s")
    assert result.get("failed") is True, result
    msg = result["msg"]
    assert f"pid {reader_pid} (test/long-reader" in msg, msg
    assert "The drop stopped half way: public.t_status_idx is still there and INVALID" in msg, msg
    assert result["retry_safe"] is True
    assert index_state(db, "t_status_idx") == (False, True)
    again = run_pg_index(db, name="t_status_idx", table="t", state="absent", lock_timeout=LOCK_TIMEOUT)
    assert again.get("failed") is not True, again
    assert again["action"] == "dropped"
    assert index_state(db, "t_status_idx") is None


def test_relation_lock_wait_is_cut_at_lock_timeout_then_retried_to_success(db):
    """An ACCESS EXCLUSIVE holder: each attempt is cut, and the run succeeds once it is gone."""
    make_table(db)
    waits_seen = set()

    def queued_attempts():
        # Each attempt queues anew for the table's lock: count the distinct wait start times.
        rows = db.fetchall(
            "SELECT l.waitstart FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND l.locktype = 'relation' AND a.application_name LIKE 'indexops/%%' "
            "AND a.datname = current_database()")
        waits_seen.update(row[0] for row in rows if row[0] is not None)
        return len(waits_seen) >= 3

    with session(db, "test/blocker", "LOCK TABLE public.t IN ACCESS EXCLUSIVE MODE") as blocker:
        with in_background(db, run_pg_index, db, name="t_status_idx", table="t", columns=["status"],
                           lock_timeout=LOCK_TIMEOUT, lock_retries=30, lock_retry_delay=0.1,
                           lock_retry_max_delay=0.2) as future:
            wait_until(queued_attempts, "three attempts queued behind the blocker")
            blocker.rollback()
            result = future.result(timeout=60)
    assert result.get("failed") is not True, result
    assert result["attempts"] >= 3, result
    assert result["lock_wait_s"] >= 0.4, result
    assert index_state(db, "t_status_idx") == (True, True)


def test_unwatched_statements_keep_the_servers_lock_timeout(db):
    """concurrently: false runs plain DDL under the server's own lock_timeout (no watcher)."""
    make_table(db)
    with session(db, "test/blocker", "LOCK TABLE public.t IN ACCESS SHARE MODE") as blocker:
        blocker_pid = blocker.get_backend_pid()
        with session(db, "test/writer-txn", "INSERT INTO t VALUES (-5, 'x@example.com', 'open')"):
            result = run_pg_index(db, name="t_status_idx", table="t", columns=["status"], concurrently=False,
                                  lock_timeout=LOCK_TIMEOUT, lock_retries=2, lock_retry_delay=0.1)
    assert result.get("failed") is True, result
    assert "within lock_timeout 200ms in 2 attempts" in result["msg"]
    assert f"pid {blocker_pid}" in result["msg"]
    assert index_state(db, "t_status_idx") is None


def test_rebuild_past_build_wait_timeout_keeps_the_old_index_and_leaves_no_ccnew(db):
    make_table(db)
    db.execute("CREATE INDEX t_status_idx ON t (status)")
    oid_before = db.fetchval("SELECT 'public.t_status_idx'::regclass::oid")
    with snapshot_holder(db) as holder:
        holder_pid = holder.get_backend_pid()
        result = run_pg_index(db, name="t_status_idx", table="t", state="rebuilt", lock_timeout=LOCK_TIMEOUT,
                              build_wait_timeout="1s")
    assert result.get("failed") is True, result
    assert f"pid {holder_pid} (test/snapshot-holder" in result["msg"], result["msg"]
    assert "longer than build_wait_timeout 1s" in result["msg"]
    assert result["retry_safe"] is True
    # REINDEX CONCURRENTLY stopped before its swap: the original index is untouched and valid.
    assert db.fetchval("SELECT 'public.t_status_idx'::regclass::oid") == oid_before
    assert index_state(db, "t_status_idx") == (True, True)
    assert invalid_indexes(db) == []  # its t_status_idx_ccnew was dropped


def test_rebuild_behind_a_table_lock_is_cut_at_lock_timeout_and_retried(db):
    make_table(db)
    db.execute("CREATE INDEX t_status_idx ON t (status)")
    with session(db, "test/blocker", "LOCK TABLE public.t IN SHARE ROW EXCLUSIVE MODE") as blocker:
        blocker_pid = blocker.get_backend_pid()
        result = run_pg_index(db, name="t_status_idx", table="t", state="rebuilt", lock_timeout=LOCK_TIMEOUT,
                              lock_retries=3, lock_retry_delay=0.1)
    assert result.get("failed") is True, result
    assert "within lock_timeout 200ms in 3 attempts" in result["msg"], result["msg"]
    assert f"pid {blocker_pid} (test/blocker" in result["msg"], result["msg"]
    assert index_state(db, "t_status_idx") == (True, True)
    assert invalid_indexes(db) == []
