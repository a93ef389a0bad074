"""pg_index when things go wrong, against a real PostgreSQL.

Every failure the server can throw at a concurrent build is provoked for real: duplicate keys,
statement timeout, a terminated backend, lock timeouts (with and without a retry budget left),
a deadlock, a second job on the same table, hostile option values and an unreachable server.
Each test checks the result the operator sees *and* the state the database is left in: no
invalid index behind, nothing changed by a refusal.

Concurrent sessions are plain psycopg2 connections; the module runs in a worker thread when a
test has to act while it is busy. Waits poll the server's own views (pg_locks,
pg_stat_progress_create_index, pg_stat_activity) with generous deadlines, never fixed sleeps.
"""

from __future__ import annotations

import contextlib
import json
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import psycopg2.errors
import pytest
from psycopg2 import sql

from ansible_collections.indexops.core.plugins.module_utils import catalog
from scripts.sandbox import free_port
from tests.integration.helpers_catalog import wait_until
from tests.pg_index_runner import run_pg_index

INDEXOPS_APPS = "indexops/%"

# --------------------------------------------------------------------------- helpers


def catalog_snapshot(db):
    """Every user relation (with index validity and definition), every schema, and the canary.

    pg_get_indexdef needs a lock on the table, so never take a snapshot while a test's blocker
    holds ACCESS EXCLUSIVE; the lock_timeout makes such a mistake fail instead of hang.
    """
    db.execute("SET lock_timeout = '20s'")
    relations = db.fetchall(
        "SELECT n.nspname, c.relname, c.relkind, c.oid::bigint, i.indisvalid, i.indisready, "
        "       CASE WHEN c.relkind IN ('i', 'I') THEN pg_get_indexdef(c.oid) END "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_index i ON i.indexrelid = c.oid "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)' "
        "ORDER BY 1, 2")
    schemas = db.fetchall("SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_(toast|temp_|toast_temp_)' "
                          "ORDER BY 1")
    canary = None
    if db.fetchval("SELECT to_regclass('public.canary') IS NOT NULL"):
        canary = db.fetchone("SELECT count(*), sum(id), string_agg(note, ',' ORDER BY id) FROM public.canary")
    return {"relations": relations, "schemas": schemas, "canary": canary}


def invalid_indexes(db):
    """(schema, index name) of every index in the database that is not valid or not ready."""
    return db.fetchall(
        "SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT (i.indisvalid AND i.indisready) ORDER BY 1, 2")


def index_state(db, name, schema="public"):
    """(valid, ready) of index ``schema.name``, or None when it does not exist."""
    return db.fetchone(
        "SELECT i.indisvalid, i.indisready FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, name))


def make_canary(db):
    db.execute("CREATE TABLE public.canary (id int PRIMARY KEY, note text NOT NULL)")
    db.execute("INSERT INTO public.canary VALUES (1, 'alive'), (2, 'still alive'), (3, 'very much alive')")


def make_table(db, table="t", rows=2000):
    """A small table with a plain, a text and a low-cardinality column."""
    db.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, email text NOT NULL, status text NOT NULL)").format(
        sql.Identifier(table)))
    db.execute(sql.SQL("INSERT INTO {} SELECT g, 'user' || g || '@example.com', "
                       "CASE WHEN g %% 10 = 0 THEN 'open' ELSE 'closed' END "
                       "FROM generate_series(1, %s) g").format(sql.Identifier(table)), (rows,))


def indexops_backends(db):
    """pids of the module's sessions (application_name indexops/...) in this database."""
    return [row[0] for row in db.fetchall(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE %s "
        "AND pid <> pg_backend_pid()", (INDEXOPS_APPS,))]


def waiting_lock_requests(db, table, app_pattern=INDEXOPS_APPS):
    """pids of sessions matching ``app_pattern`` whose lock request on ``table`` is queued (not granted)."""
    return [row[0] for row in db.fetchall(
        "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'relation' AND l.relation = to_regclass(%s) AND NOT l.granted "
        "AND a.datname = current_database() "
        "AND a.application_name LIKE %s", (table, app_pattern))]


def build_in_progress(db, app_pattern=INDEXOPS_APPS, phase_like="%"):
    """(pid, phase, index name) of a CREATE INDEX whose catalog entry is already committed."""
    return db.fetchone(
        "SELECT p.pid, p.phase, c.relname FROM pg_stat_progress_create_index p "
        "JOIN pg_stat_activity a ON a.pid = p.pid "
        "JOIN pg_class c ON c.oid = p.index_relid "
        "WHERE p.datname = current_database() AND a.application_name LIKE %s AND p.phase LIKE %s",
        (app_pattern, phase_like))


@contextlib.contextmanager
def session(db, application_name, *statements, autocommit=False):
    """An extra connection that runs ``statements`` (in one open transaction unless autocommit)
    and keeps it open until the block ends; rolled back and closed on exit."""
    conn = db.connect(autocommit=autocommit, application_name=application_name)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        yield conn
    finally:
        with contextlib.suppress(psycopg2.Error):
            conn.rollback()
        conn.close()


def snapshot_holder(db):
    """A REPEATABLE READ transaction that holds a snapshot but no lock on the test tables.

    CREATE INDEX CONCURRENTLY waits for every such transaction before it can finish
    ('waiting for old snapshots'), so a build started while it is open stays busy, with its
    invalid catalog entry committed, until the holder ends.
    """
    return session(db, "test/snapshot-holder", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                   "SELECT count(*) FROM pg_catalog.pg_namespace")


@contextlib.contextmanager
def in_background(db, function, *args, **kwargs):
    """Run ``function`` in a worker thread; on exit make sure it has ended.

    If the block is left while the worker is still busy (a failing assertion), the worker's
    sessions (application_name indexops/... or test/worker...) are terminated so it cannot hang
    the suite behind a blocker that is about to be released.
    """
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(function, *args, **kwargs)
    try:
        yield future
    finally:
        if not future.done():
            with contextlib.suppress(psycopg2.Error):
                db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                           "AND (application_name LIKE %s OR application_name LIKE %s)",
                           (INDEXOPS_APPS, "test/worker%"))
        pool.shutdown(wait=True)


def assert_clean_failure(result):
    assert result.get("failed") is True, result
    assert result.get("msg"), result
    assert not result.get("changed"), result


# --------------------------------------------------------------------------- unique violation


def test_unique_build_on_duplicates_fails_names_key_and_leaves_no_invalid_index(db):
    make_table(db)
    db.execute("INSERT INTO t VALUES (100001, 'dup@example.com', 'open'), (100002, 'dup@example.com', 'open')")
    before = catalog_snapshot(db)

    result = run_pg_index(db, name="t_email_uq", table="t", columns=["email"], unique=True)

    assert_clean_failure(result)
    assert "Key (email)=(dup@example.com) is duplicated" in result["msg"]
    assert index_state(db, "t_email_uq") is None  # the invalid leftover was dropped
    assert invalid_indexes(db) == []
    assert catalog_snapshot(db) == before
    # An invalid UNIQUE index would still be maintained and reject this duplicate.
    assert db.execute("INSERT INTO t VALUES (100003, 'dup@example.com', 'open')") == 1
    assert db.fetchval("SELECT count(*) FROM t WHERE email = 'dup@example.com'") == 3


# --------------------------------------------------------------------------- statement timeout


def test_statement_timeout_cancels_build_and_cleans_up(db):
    make_canary(db)
    make_table(db)
    before = catalog_snapshot(db)
    with snapshot_holder(db):
        # The build cannot finish while the snapshot is held; lock_timeout is longer than
        # statement_timeout, so the wait ends with a statement-timeout cancel, not a lock timeout.
        result = run_pg_index(db, name="t_status_idx", table="t", columns=["status"],
                              statement_timeout="1s", lock_timeout="60s", lock_retries=1)
    assert_clean_failure(result)
    assert "cancel" in result["msg"].lower()
    assert "statement timeout" in result["msg"]
    assert result["retry_safe"] is True
    assert index_state(db, "t_status_idx") is None
    assert invalid_indexes(db) == []
    assert catalog_snapshot(db) == before


# --------------------------------------------------------------------------- terminated backend


def test_terminated_build_cleans_up_and_rerun_creates(db):
    make_canary(db)
    make_table(db)
    before = catalog_snapshot(db)
    with snapshot_holder(db) as holder:
        with in_background(db, run_pg_index, db, name="t_email_idx", table="t", columns=["email"],
                           lock_timeout="10s") as future:
            pid, _, index = wait_until(lambda: build_in_progress(db), "pg_index's build to show in progress")
            assert index == "t_email_idx"
            assert index_state(db, "t_email_idx")[0] is False  # committed, not yet valid
            assert db.fetchval("SELECT pg_terminate_backend(%s)", (pid,)) is True
            result = future.result(timeout=60)
        holder.rollback()

    assert_clean_failure(result)
    assert "terminated" in result["msg"]
    assert result["retry_safe"] is True
    # The session it reconnected with for the cleanup is closed too (backends exit asynchronously).
    wait_until(lambda: not indexops_backends(db), "the module's sessions to end")
    assert index_state(db, "t_email_idx") is None, "the module left its invalid index behind"
    assert invalid_indexes(db) == []
    assert catalog_snapshot(db) == before

    rerun = run_pg_index(db, name="t_email_idx", table="t", columns=["email"])
    assert rerun.get("failed") is not True, rerun
    assert rerun["changed"] is True
    assert rerun["action"] == "created"
    assert rerun["valid"] is True
    assert index_state(db, "t_email_idx") == (True, True)


def test_raw_concurrent_build_killed_midway_is_repaired_by_rerun(db):
    make_table(db)

    def raw_build():
        with contextlib.closing(db.connect(application_name="test/worker-raw-cic")) as conn, conn.cursor() as cur:
            cur.execute("CREATE INDEX CONCURRENTLY t_email_idx ON public.t (email)")

    with snapshot_holder(db) as holder:
        with in_background(db, raw_build) as future:
            pid, _, index = wait_until(lambda: build_in_progress(db, "test/worker-raw-cic"),
                                       "the raw CREATE INDEX CONCURRENTLY to show in progress")
            assert index == "t_email_idx"
            assert db.fetchval("SELECT pg_terminate_backend(%s)", (pid,)) is True
            with pytest.raises(psycopg2.OperationalError):
                future.result(timeout=60)
        wait_until(lambda: db.fetchval("SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)", (pid,)),
                   "the terminated backend to exit")
        holder.rollback()

    assert index_state(db, "t_email_idx")[0] is False
    assert invalid_indexes(db) == [("public", "t_email_idx")]

    result = run_pg_index(db, name="t_email_idx", table="t", columns=["email"])
    assert result.get("failed") is not True, result
    assert result["changed"] is True
    assert result["action"] == "repaired_invalid"
    assert result["valid"] is True
    assert any(s.startswith("DROP INDEX CONCURRENTLY") for s in result["sql"]), result["sql"]
    assert any(s.startswith("CREATE INDEX CONCURRENTLY") for s in result["sql"]), result["sql"]
    assert index_state(db, "t_email_idx") == (True, True)
    assert invalid_indexes(db) == []
    assert db.fetchval("SELECT count(*) FROM pg_indexes WHERE tablename = 't' AND indexname = 't_email_idx'") == 1


# --------------------------------------------------------------------------- lock timeout and retries

LOCK_MODES = ["SHARE ROW EXCLUSIVE", "ACCESS EXCLUSIVE"]


@pytest.mark.parametrize("mode", LOCK_MODES)
def test_lock_timeout_is_retried_until_blocker_ends(db, mode):
    make_table(db)
    lock = sql.SQL("LOCK TABLE public.t IN {} MODE").format(sql.SQL(mode))
    with session(db, "test/blocker", lock) as blocker:
        with in_background(db, run_pg_index, db, name="t_status_idx", table="t", columns=["status"],
                           lock_timeout="200ms", lock_retries=20, lock_retry_delay=0.2,
                           lock_retry_max_delay=1.0) as future:
            # Release only after one attempt has timed out: seen queued, then seen not queued
            # while the blocker still holds the lock (the module is between attempts).
            wait_until(lambda: waiting_lock_requests(db, "public.t") or future.done(),
                       "pg_index to queue for its lock")
            wait_until(lambda: not waiting_lock_requests(db, "public.t") or future.done(),
                       "pg_index's first attempt to time out")
            assert not future.done(), future.result()
            blocker.rollback()
            result = future.result(timeout=60)

    assert result.get("failed") is not True, result
    assert result["changed"] is True
    assert result["action"] == "created"
    assert result["attempts"] > 1
    assert result["lock_wait_s"] > 0
    assert result["valid"] is True
    assert index_state(db, "t_status_idx") == (True, True)
    assert invalid_indexes(db) == []


@pytest.mark.parametrize("mode", LOCK_MODES)
def test_lock_retry_budget_exhausted_names_blocker(db, mode):
    make_canary(db)
    make_table(db)
    lock = sql.SQL("LOCK TABLE public.t IN {} MODE").format(sql.SQL(mode))
    before = catalog_snapshot(db)
    with session(db, "test/blocker", lock) as blocker:
        blocker_pid = blocker.get_backend_pid()
        result = run_pg_index(db, name="t_status_idx", table="t", columns=["status"],
                              lock_timeout="200ms", lock_retries=3, lock_retry_delay=0.2)
    after = catalog_snapshot(db)
    assert_clean_failure(result)
    msg = result["msg"]
    assert f"pid {blocker_pid}" in msg, msg
    assert f"LOCK TABLE public.t IN {mode} MODE" in msg, msg
    assert "3 attempts" in msg, msg
    assert "running again is safe" in msg, msg
    assert result["retry_safe"] is True
    assert after == before
    assert invalid_indexes(db) == []
    assert index_state(db, "t_status_idx") is None


def test_writers_are_not_queued_behind_a_waiting_build(db):
    make_table(db)
    rows_before = db.fetchval("SELECT count(*) FROM t")
    with session(db, "test/blocker", "LOCK TABLE public.t IN SHARE UPDATE EXCLUSIVE MODE") as blocker:
        with in_background(db, run_pg_index, db, name="t_status_idx", table="t", columns=["status"],
                           lock_timeout="60s", lock_retries=1) as future:
            waiter = wait_until(lambda: waiting_lock_requests(db, "public.t"), "pg_index to queue for its lock")
            with session(db, "test/writer", "SET lock_timeout = '2s'",
                         "INSERT INTO t VALUES (-1, 'writer@example.com', 'open')") as writer:
                writer.commit()  # the INSERT got its ROW EXCLUSIVE lock past the queued build
            # The build was still queued the whole time: the writer overtook it, it did not win a race.
            assert waiting_lock_requests(db, "public.t") == waiter
            assert not future.done()
            blocker.rollback()
            result = future.result(timeout=60)
    assert result.get("failed") is not True, result
    assert result["action"] == "created"
    assert db.fetchval("SELECT count(*) FROM t") == rows_before + 1
    assert index_state(db, "t_status_idx") == (True, True)


def test_control_a_waiting_plain_build_does_queue_writers(db):
    """The check above can fail: a queued SHARE lock (non-concurrent CREATE INDEX) blocks the INSERT."""
    make_table(db)
    with session(db, "test/blocker", "LOCK TABLE public.t IN SHARE UPDATE EXCLUSIVE MODE") as blocker:
        with in_background(db, run_pg_index, db, name="t_status_idx", table="t", columns=["status"],
                           concurrently=False, lock_timeout="60s", lock_retries=1) as future:
            waiter = wait_until(lambda: waiting_lock_requests(db, "public.t"), "pg_index to queue for its lock")
            with pytest.raises(psycopg2.errors.LockNotAvailable):
                with session(db, "test/writer", "SET lock_timeout = '2s'",
                             "INSERT INTO t VALUES (-1, 'writer@example.com', 'open')"):
                    pass
            assert waiting_lock_requests(db, "public.t") == waiter  # the build was still queued
            blocker.rollback()
            result = future.result(timeout=60)
    assert result.get("failed") is not True, result
    assert result["action"] == "created"
    assert db.fetchval("SELECT count(*) FROM t WHERE id = -1") == 0


# --------------------------------------------------------------------------- deadlock


def test_deadlock_is_retried(db):
    """A writer that then asks for the build's table lock deadlocks with the build.

    The writer holds ROW EXCLUSIVE (an open INSERT), so the build waits for it ('waiting for
    writers before build'); the writer then requests SHARE UPDATE EXCLUSIVE, which the build
    holds. The build's session (deadlock_timeout 5s from the database) runs the deadlock check
    long before the writer's (1h), so the build is the victim: 40P01, which pg_index retries.
    """
    make_table(db)
    db.execute(sql.SQL("ALTER DATABASE {} SET deadlock_timeout = '5s'").format(sql.Identifier(db.name)))
    deadlocks_before = db.fetchval("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")

    writer = db.connect(autocommit=False, application_name="test/worker-writer")
    try:
        with writer.cursor() as cur:
            cur.execute("SET deadlock_timeout = '1h'")
            cur.execute("INSERT INTO t VALUES (-1, 'writer@example.com', 'open')")
            writer_pid = writer.get_backend_pid()

        def writer_takes_table_lock():
            with writer.cursor() as cur:
                cur.execute("LOCK TABLE public.t IN SHARE UPDATE EXCLUSIVE MODE")
            writer.commit()

        with in_background(db, run_pg_index, db, name="t_status_idx", table="t", columns=["status"],
                           lock_timeout="60s", lock_retries=5, lock_retry_delay=0.2) as future:
            wait_until(lambda: db.fetchval(
                "SELECT 1 FROM pg_stat_progress_create_index p JOIN pg_stat_activity a ON a.pid = p.pid "
                "WHERE a.application_name LIKE 'indexops/%%' AND p.current_locker_pid = %s "
                "AND p.datname = current_database()", (writer_pid,)),
                "the build to wait for the writer")
            with in_background(db, writer_takes_table_lock) as writer_future:
                writer_future.result(timeout=60)
            result = future.result(timeout=60)
    finally:
        writer.close()

    assert result.get("failed") is not True, result
    assert result["action"] == "created"
    assert result["attempts"] >= 2
    assert result["valid"] is True
    assert invalid_indexes(db) == []
    assert db.fetchval("SELECT count(*) FROM t WHERE id = -1") == 1

    def deadlock_counted():
        db.execute("SELECT pg_stat_clear_snapshot()")
        return db.fetchval("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()") \
            > deadlocks_before

    wait_until(deadlock_counted, "pg_stat_database to count the deadlock")


# --------------------------------------------------------------------------- one job per table


def test_second_job_on_same_table_names_holder_and_changes_nothing(db):
    make_canary(db)
    make_table(db, "t")
    make_table(db, "u")
    table_oid = db.fetchval("SELECT 'public.t'::regclass::oid")
    namespace, key = catalog.advisory_key(table_oid)
    with session(db, "indexops/other", autocommit=True) as other:
        with other.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s, %s)", (namespace, key))
            assert cur.fetchone()[0] is True
        other_pid = other.get_backend_pid()
        before = catalog_snapshot(db)

        refused = run_pg_index(db, name="t_status_idx", table="t", columns=["status"], job_lock_timeout=1)

        assert_clean_failure(refused)
        assert f"pid {other_pid}" in refused["msg"], refused["msg"]
        assert "indexops/other" in refused["msg"], refused["msg"]
        assert refused["retry_safe"] is True
        assert catalog_snapshot(db) == before

        # Another table is not held by that job.
        other_table = run_pg_index(db, name="u_status_idx", table="u", columns=["status"], job_lock_timeout=1)
        assert other_table.get("failed") is not True, other_table
        assert other_table["action"] == "created"
        assert index_state(db, "u_status_idx") == (True, True)

        with other.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", (namespace, key))
            assert cur.fetchone()[0] is True

    result = run_pg_index(db, name="t_status_idx", table="t", columns=["status"], job_lock_timeout=1)
    assert result.get("failed") is not True, result
    assert result["action"] == "created"
    assert index_state(db, "t_status_idx") == (True, True)
    # The module let go of its own job lock when it finished.
    # (pg_locks is cluster-wide: count only this database's advisory locks.)
    assert db.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s::oid "
                       "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                       (namespace,)) == 0


# --------------------------------------------------------------------------- injection

PAYLOADS = [
    'x"; DROP TABLE canary; --',
    "1); DROP TABLE canary; --",
    "lower(email)); DROP TABLE canary; --",
    "(SELECT pg_sleep(1))",
    "now(); DROP TABLE canary",
    "x'; DROP TABLE canary; --",
    "email /* */; DROP TABLE canary",
]
# Names go to the server only as quoted identifiers, so a name is refused for the characters every
# break-out needs (quotes, ';', comment markers). A name made only of letters, spaces and
# parentheses, such as "(SELECT pg_sleep(1))", is a legal PostgreSQL identifier: it is tested
# below as a name that is quoted, never run.
NAME_PAYLOADS = [p for p in PAYLOADS if any(mark in p for mark in ('"', "'", ";", "--", "/*"))]
BASE_ARGS = {"name": "t_email_idx", "table": "t", "columns": ["email"]}


def _with(**changes):
    return lambda payload: {**BASE_ARGS, **{k: v(payload) for k, v in changes.items()}}


# option -> (payloads, how a payload is placed in the module arguments, text the message must contain)
INJECTION_TARGETS = {
    "name": (NAME_PAYLOADS, _with(name=lambda p: p), "name"),
    "table": (NAME_PAYLOADS, _with(table=lambda p: p), "table"),
    "schema": (NAME_PAYLOADS, _with(schema=lambda p: p), "schema"),
    "columns.name": (NAME_PAYLOADS, _with(columns=lambda p: [{"name": p}]), "columns[0].name"),
    "columns.expression": (PAYLOADS, _with(columns=lambda p: [{"expression": p}]), "columns[0].expression"),
    "columns.opclass": (NAME_PAYLOADS, _with(columns=lambda p: [{"name": "email", "opclass": p}]), "opclass"),
    "columns.collation": (NAME_PAYLOADS, _with(columns=lambda p: [{"name": "email", "collation": p}]),
                          "collation"),
    "include": (NAME_PAYLOADS, _with(include=lambda p: [p]), "include"),
    "where": (PAYLOADS, _with(where=lambda p: p), "where"),
    "tablespace": (NAME_PAYLOADS, _with(tablespace=lambda p: p), "tablespace"),
    "storage.key": (PAYLOADS, _with(storage=lambda p: {p: 50}), "storage parameter"),
    "storage.value": (PAYLOADS, _with(storage=lambda p: {"fillfactor": p}), "storage parameter"),
    "method": (PAYLOADS, _with(method=lambda p: p), "method"),
    "lock_timeout": (PAYLOADS, _with(lock_timeout=lambda p: p), "lock_timeout"),
    "statement_timeout": (PAYLOADS, _with(statement_timeout=lambda p: p), "statement_timeout"),
    "maintenance_work_mem": (PAYLOADS, _with(maintenance_work_mem=lambda p: p), "maintenance_work_mem"),
    "absent.name": (NAME_PAYLOADS, lambda p: {"state": "absent", "name": p, "table": "t"}, "name"),
    "rebuilt.name": (NAME_PAYLOADS, lambda p: {"state": "rebuilt", "name": p, "table": "t"}, "name"),
    "rebuilt.table": (NAME_PAYLOADS, lambda p: {"state": "rebuilt", "name": "t_pkey", "table": p}, "table"),
}


@pytest.mark.parametrize("target", list(INJECTION_TARGETS))
def test_injection_text_is_rejected_and_changes_nothing(db, target):
    make_canary(db)
    make_table(db)
    payloads, place, must_name = INJECTION_TARGETS[target]
    before = catalog_snapshot(db)
    for payload in payloads:
        result = run_pg_index(db, **place(payload))
        assert result.get("failed") is True, (payload, result)
        assert must_name in result["msg"], (payload, result["msg"])
        assert result.get("changed") is not True, (payload, result)
        assert catalog_snapshot(db) == before, payload
    assert db.fetchone("SELECT count(*), string_agg(note, ',' ORDER BY id) FROM public.canary") == (
        3, "alive,still alive,very much alive")


def test_name_that_looks_like_sql_is_a_quoted_identifier_not_a_query(db):
    make_canary(db)
    make_table(db)
    name = "(SELECT pg_sleep(1))"
    result = run_pg_index(db, name=name, table="t", columns=["email"])
    assert result.get("failed") is not True, result
    assert result["action"] == "created"
    assert result["sql"] == ['CREATE INDEX CONCURRENTLY "(SELECT pg_sleep(1))" ON "public"."t" USING "btree" ("email")']
    assert db.fetchall("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "WHERE i.indrelid = 'public.t'::regclass AND i.indisvalid ORDER BY 1") == [(name,), ("t_pkey",)]
    dropped = run_pg_index(db, state="absent", name=name, table="t")
    assert dropped.get("failed") is not True, dropped
    assert dropped["action"] == "dropped"
    assert index_state(db, name) is None
    assert db.fetchone("SELECT count(*) FROM public.canary") == (3,)


@pytest.mark.parametrize("option, text", [
    ("expression", "lower(email) -- ); DROP TABLE canary"),
    ("where", "status = 'open' /* ; DROP TABLE canary */"),
])
def test_text_hidden_in_comments_never_reaches_the_server(db, option, text):
    """A fragment that parses as one expression runs as the parser printed it: comments are gone."""
    make_canary(db)
    make_table(db)
    args = dict(BASE_ARGS)
    if option == "expression":
        args["columns"] = [{"expression": text}]
    else:
        args["where"] = text
    result = run_pg_index(db, **args)
    assert result.get("failed") is not True, result
    assert result["action"] == "created"
    assert all("canary" not in statement and "--" not in statement and "/*" not in statement
               for statement in result["sql"]), result["sql"]
    assert "canary" not in result["definition"]
    assert db.fetchone("SELECT count(*) FROM public.canary") == (3,)


# --------------------------------------------------------------------------- secrets and connections


def test_login_password_never_appears_in_the_result(db):
    make_table(db)
    # The test server trusts local connections and ignores the password; one given by the DSN is
    # used as is (and must not leak either).
    secret = db.params.get("login_password") or "Sup3r-S3cret-indexops-pw-9f1c"
    ok = run_pg_index(db, name="t_email_idx", table="t", columns=["email"], login_password=secret)
    assert ok.get("failed") is not True, ok
    assert secret not in json.dumps(ok)

    failed = run_pg_index(db, name="t_email_idx", table="t", columns=["missing_column"], login_password=secret)
    assert failed.get("failed") is True
    assert secret not in json.dumps(failed)

    unreachable = run_pg_index(db, name="t_email_idx", table="t", columns=["email"], login_password=secret,
                               login_host="127.0.0.1", login_port=free_port(), connect_timeout=5)
    assert unreachable.get("failed") is True
    assert secret not in json.dumps(unreachable)


def test_unreachable_server_fails_saying_retry_is_safe(db):
    make_canary(db)
    make_table(db)
    before = catalog_snapshot(db)
    result = run_pg_index(db, name="t_email_idx", table="t", columns=["email"],
                          login_host="127.0.0.1", login_port=free_port(), connect_timeout=5)
    assert_clean_failure(result)
    assert "could not connect" in result["msg"]
    assert "running again is safe" in result["msg"]
    # One line, as the operator reads it: libpq's advice on its second, tab-indented line is joined
    # in, and the sentence ends once (issue 16 item 8).
    assert "\n" not in result["msg"] and "\t" not in result["msg"] and "?." not in result["msg"], result["msg"]
    assert "Connection refused; Is the server running" in result["msg"], result["msg"]
    assert result["retry_safe"] is True
    assert catalog_snapshot(db) == before
