"""pg_index_status on builds in progress, index changes and ledger jobs, against a real PostgreSQL.

Builds are real: CREATE INDEX CONCURRENTLY / REINDEX CONCURRENTLY run in background sessions and
are held in a waiting phase by an open transaction, or slowed down by an index expression that
costs time per row (so percent can be watched moving). Ledger jobs are written by pg_index itself,
or - for a job whose runner died with its session - by the ledger's own start() on the session
that then builds and is terminated.
"""

from __future__ import annotations

import contextlib
import re
import threading

import psycopg2
import pytest
from psycopg2 import sql

from ansible_collections.indexops.core.plugins.module_utils import ledger as ledger_utils
from ansible_collections.indexops.core.plugins.module_utils.connection import connect
from ansible_collections.indexops.core.plugins.module_utils.status_read import Status
from tests.integration.helpers_catalog import Background, Blocker, create_table, snapshot, wait_until
from tests.integration.helpers_roles import Roles
from tests.integration.test_pg_index_failures import in_background
from tests.integration.test_status_leftovers import by_name, held_build, status
from tests.pg_index_runner import run_module, run_pg_index

BUILD_KEYS = {"pid", "command", "phase", "percent", "phase_percent", "blocks_done", "blocks_total", "tuples_done",
              "tuples_total", "partitions_done", "partitions_total", "lockers_done", "lockers_total", "elapsed_s",
              "eta_s", "index_schema", "index_name", "table_schema", "table", "application_name", "indexops",
              "waiting", "waiting_on", "details_visible"}
JOB_KEYS = {"job_id", "change_id", "kind", "action", "environment", "state", "lost", "started_at", "finished_at",
            "duration_s", "attempts", "owner", "operator", "last_error", "backend_pid"}
ISO_UTC = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"


@pytest.fixture
def tdb(db):
    create_table(db)
    return db


@pytest.fixture
def make_role(db):
    with Roles(db) as roles:
        yield roles.make


def ledger_args(change_id="c1", kind="apply", environment="staging"):
    return {"change_id": change_id, "spec_digest": "0" * 64, "kind": kind, "environment": environment,
            "owner": "team-db", "rollback_note": "drop it", "operator": "tester"}


def change(change_id="c1", name="t_a_idx", action="create", **extra):
    return {"id": change_id, "action": action, "index": {"name": name, "table": "public.t"}, **extra}


def ledger_rows(db):
    return db.fetchall("SELECT * FROM indexops.jobs ORDER BY job_id")


# --------------------------------------------------------------------------- a build that waits

def test_a_build_held_by_an_open_transaction_shows_its_phase_and_who_it_waits_on(tdb):
    with held_build(tdb, "CREATE INDEX CONCURRENTLY t_a_idx ON t (a)") as (background, blocker):
        result = status(tdb, changes=[change()])

        assert [build["pid"] for build in result["builds"]] == [background.pid]
        build = result["builds"][0]
        assert BUILD_KEYS <= set(build)
        assert (build["command"], build["phase"]) == ("CREATE INDEX CONCURRENTLY", "waiting for writers before build")
        assert (build["index_schema"], build["index_name"], build["table_schema"], build["table"]) == (
            "public", "t_a_idx", "public", "t")
        assert (build["waiting"], build["indexops"], build["details_visible"]) == (True, False, True)
        assert build["eta_s"] is None  # a wait has no rate
        assert 1 <= build["percent"] <= 3
        assert build["lockers_total"] >= 1
        on = by_pid(build["waiting_on"])
        assert blocker.pid in on, build["waiting_on"]
        holder = on[blocker.pid]
        assert holder["state"] == "idle in transaction"
        assert holder["query"] == "SELECT pg_backend_pid()"  # its last statement, as pg_stat_activity shows
        assert holder["xact_age_s"] >= 0
        assert "RowExclusiveLock" in holder["lock_mode"]
        assert build["waiting_for_pid"] == blocker.pid

        entry = result["changes"][0]
        assert (entry["state"], entry["index_state"]["state"], entry["job"]) == ("building", "building", None)
        assert entry["build"] == build
        assert entry["index"] == {"schema": "public", "name": "t_a_idx", "table": "public.t"}

        blocker.release()
        background.join()
        assert background.error is None

    after = status(tdb, changes=[change()])
    assert after["builds"] == []
    assert (after["changes"][0]["state"], after["changes"][0]["index_state"]["state"]) == ("done", "valid")
    assert after["changes"][0]["index_state"]["scans"] == 0


def by_pid(entries):
    return {entry["pid"]: entry for entry in entries}


def test_a_reindex_started_by_plain_sql_outside_indexops_is_seen(tdb):
    tdb.execute("CREATE INDEX t_a_idx ON t (a)")
    with held_build(tdb, "REINDEX INDEX CONCURRENTLY t_a_idx", command="REINDEX CONCURRENTLY") as (background, _):
        result = status(tdb, indexes=[{"name": "t_a_idx"}])

        build = by_pid(result["builds"])[background.pid]
        assert (build["command"], build["index_name"], build["table"]) == ("REINDEX CONCURRENTLY", "t_a_idx", "t")
        assert (build["application_name"], build["indexops"]) == ("test/held-build", False)
        index = result["indexes"][0]
        # A rebuild of a valid index: still valid, and someone works on it.
        assert (index["valid"], index["state"], index["build"]["pid"]) == (True, "building", background.pid)


# --------------------------------------------------------------------------- percent over time

SLOW_FUNCTION = """
CREATE FUNCTION public.slow_identity(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM pg_catalog.pg_sleep(0.0002);  -- a costly expression: makes a small table build like a large one
    RETURN v;
END $$
"""


def test_percent_rises_between_polls_of_a_long_build(db):
    create_table(db, rows=60_000)
    db.execute(SLOW_FUNCTION)
    # One process scans (no parallel workers), so blocks_done follows the expression's cost.
    build = RecordedBuild(db, "CREATE INDEX CONCURRENTLY t_slow_idx ON t (public.slow_identity(a))",
                          application_name="indexops/c-slow", options="-c max_parallel_maintenance_workers=0")
    seen = []
    try:
        def poll():
            builds = [item for item in status(db, leftovers=False)["builds"] if item["pid"] == build.pid]
            # Before its first block the server briefly reports blocks_done = blocks_total (seen on
            # PostgreSQL 15 and 18): only a poll inside the scan counts.
            if builds and builds[0]["phase"] == "building index: scanning table" \
                    and 0 < builds[0]["blocks_done"] < builds[0]["blocks_total"]:
                seen.append(builds[0])
                return builds[0]
            return None

        first = wait_until(poll, what="the build to scan the table")
        wait_until(lambda: (poll() or first)["percent"] > first["percent"],
                   what=f"percent to rise past the first poll's: {first}")
    finally:
        build.close(db)

    percents = [item["percent"] for item in seen]
    assert percents == sorted(percents), percents
    last = seen[-1]
    assert 3 < first["percent"] < last["percent"] < 50  # inside the table scan's band
    assert last["blocks_done"] > first["blocks_done"]
    assert last["blocks_total"] == first["blocks_total"] > last["blocks_done"]
    assert 0 < last["phase_percent"] < 100
    assert last["indexops"] is True and last["waiting"] is False and last["waiting_on"] == []
    assert last["elapsed_s"] > 0
    if last["percent"] >= 1:
        assert last["eta_s"] > 0  # a scan has a rate once something is done


class RecordedBuild:
    """One build statement on its own session in a thread; ``job_id`` is set when the session first
    recorded itself in the ledger as a running job, with the same ledger.start pg_index uses (so
    backend_pid is this session's): a runner whose job is running."""

    def __init__(self, db, statement, application_name, change_id=None, **conn_options):
        self.conn = db.connect(application_name=application_name, **conn_options)
        self.job_id = None
        if change_id is not None:
            ledger_utils.ensure(self.conn)
            self.job_id = ledger_utils.start(self.conn, {
                **ledger_args(change_id), "action": None, "index_schema": "public", "index_name": "t_a_idx",
                "table_name": "t", "definition_before": None, "expected": {}, "override_reason": None})
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            self.pid = cur.fetchone()[0]
        self.errors = []
        self.thread = threading.Thread(target=self.run, args=(statement,), daemon=True)
        self.thread.start()

    def run(self, statement):
        try:
            with self.conn.cursor() as cur:
                cur.execute(statement)
        except psycopg2.Error as exc:
            self.errors.append(exc)

    def close(self, db):
        if self.thread.is_alive():
            db.execute("SELECT pg_cancel_backend(%s)", (self.pid,))
            self.thread.join(30)
        with contextlib.suppress(psycopg2.Error):
            self.conn.close()


# --------------------------------------------------------------------------- ledger jobs

def test_a_terminated_build_is_an_invalid_leftover_and_its_job_is_lost(tdb):
    blocker = Blocker(tdb)
    build = RecordedBuild(tdb, "CREATE INDEX CONCURRENTLY t_a_idx ON t (a)", "indexops/c1", change_id="c1")
    job_id, pid = build.job_id, build.pid
    try:
        wait_until(lambda: any(build["pid"] == pid and build["waiting"] for build in status(tdb)["builds"]),
                   what="the recorded build to wait for the writer")
        during = status(tdb, changes=[change()])
        assert during["changes"][0]["state"] == "building"
        assert (during["changes"][0]["job"]["state"], during["changes"][0]["job"]["lost"]) == ("running", False)
        assert during["lost_jobs"] == []

        tdb.execute("SELECT pg_terminate_backend(%s)", (pid,))
        build.thread.join(30)
        assert build.errors, "the terminated build did not fail"
        wait_until(lambda: not tdb.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)),
                   what="the terminated session to go")
    finally:
        blocker.release()
        build.close(tdb)

    result = status(tdb, changes=[change()], change_id="c1", environment="staging")

    entry = result["changes"][0]
    assert entry["state"] == "lost"
    assert (entry["index_state"]["state"], entry["index_state"]["exists"], entry["build"]) == ("invalid", True, None)
    job = entry["job"]
    assert JOB_KEYS <= set(job)
    assert (job["job_id"], job["state"], job["lost"], job["backend_pid"]) == (job_id, "running", True, pid)
    assert job["finished_at"] is None
    assert job["started_at"] and re.match(ISO_UTC, job["started_at"])
    assert [lost["job_id"] for lost in result["lost_jobs"]] == [job_id]
    leftover = by_name(result["leftovers"])["t_a_idx"]
    assert (leftover["leftover_type"], leftover["being_built"]) == ("invalid", False)
    assert result["ledger"]["exists"] is True
    assert [item["job_id"] for item in result["ledger"]["jobs"]] == [job_id]


def session_gone(db, pid):
    return not db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))


def jobs_of(db, change_id="c1", environment="staging"):
    """The change's jobs as the ledger's read-only query returns them, with ``lost``."""
    conn = db.connect()
    try:
        return ledger_utils.change_jobs(conn, change_id, environment)
    finally:
        conn.close()


def lost_job(db, environment):
    """A running job of change c1 whose session has ended; returns its job_id."""
    conn = db.connect(application_name="indexops/c1")
    ledger_utils.ensure(conn)
    job_id = ledger_utils.start(conn, {
        **ledger_args("c1", environment=environment), "action": None, "index_schema": "public",
        "index_name": "t_a_idx", "table_name": "t", "definition_before": None, "expected": {}, "override_reason": None})
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    conn.close()
    wait_until(lambda: session_gone(db, pid), what="the lost job's session to go")
    return job_id


def test_a_lost_job_whose_build_the_server_finished_is_done_and_the_next_job_closes_it(tdb):
    # The runner's session builds the index to its end, then goes away without recording the end:
    # what happens when async stops pg_index at its time limit while the server finishes the build.
    build = RecordedBuild(tdb, "CREATE INDEX CONCURRENTLY t_a_idx ON t (a)", "indexops/c1", change_id="c1")
    build.thread.join(60)
    assert not build.errors
    build.conn.close()
    wait_until(lambda: session_gone(tdb, build.pid), what="the runner's session to go")
    elsewhere = lost_job(tdb, environment="production")

    entry = status(tdb, changes=[change(environment="staging")])["changes"][0]

    assert (entry["state"], entry["index_state"]["state"]) == ("done", "valid")
    assert (entry["job"]["job_id"], entry["job"]["state"], entry["job"]["lost"]) == (build.job_id, "running", True)

    again = run_pg_index(tdb, name="t_a_idx", table="t", columns=["a"], ledger=ledger_args("c1"))

    assert (again.get("failed"), again["action"]) == (None, "none"), again
    lost, rerun = jobs_of(tdb)
    assert (lost["job_id"], lost["state"], lost["lost"]) == (build.job_id, "failed", False)
    assert lost["finished_at"] is not None
    assert lost["last_error"].startswith(f"session lost: the session (pid {build.pid}) that ran this job ended")
    assert f"closed by job {rerun['job_id']}" in lost["last_error"]
    assert (rerun["state"], rerun["action"]) == ("succeeded", "none")
    # Another environment's lost job is not this run's to close.
    [production] = jobs_of(tdb, environment="production")
    assert (production["job_id"], production["state"], production["lost"]) == (elsewhere, "running", True)
    assert status(tdb, changes=[change(environment="staging")])["changes"][0]["state"] == "done"


def test_a_running_job_whose_session_is_alive_is_not_closed_by_the_next_job(tdb):
    alive = RecordedBuild(tdb, "SELECT 1", "indexops/c1", change_id="c1")
    alive.thread.join(30)
    try:
        result = run_pg_index(tdb, name="t_b_idx", table="t", columns=["b"], ledger=ledger_args("c1"))
        assert result["changed"] is True, result
        first, _ = jobs_of(tdb)
        assert (first["job_id"], first["state"], first["lost"]) == (alive.job_id, "running", False)
    finally:
        alive.conn.close()


def test_a_job_that_reconnects_after_its_session_died_names_the_new_session_and_is_not_lost(tdb):
    blocker = Blocker(tdb)  # holds the build, then the cleanup's DROP INDEX CONCURRENTLY of its leftover
    try:
        with in_background(tdb, run_pg_index, tdb, name="t_a_idx", table="t", columns=["a"], lock_timeout="10min",
                           ledger=ledger_args("c1")) as future:
            [old_pid] = wait_until(lambda: tdb.fetchone(
                "SELECT p.pid FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.index_relid "
                "WHERE c.relname = 't_a_idx' AND p.datname = current_database()"), what="the build to start")
            tdb.execute("SELECT pg_terminate_backend(%s)", (old_pid,))
            [new_pid] = wait_until(lambda: tdb.fetchone(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'indexops/%%' AND pid <> %s "
                "AND query LIKE 'DROP INDEX CONCURRENTLY%%' AND wait_event_type = 'Lock' "
                "AND datname = current_database()", (old_pid,)),
                what="the job to reconnect and wait to drop its invalid leftover")

            [job] = jobs_of(tdb)
            assert (job["state"], job["lost"], job["backend_pid"]) == ("running", False, new_pid)

            blocker.release()
            result = future.result(timeout=120)
    finally:
        blocker.release()

    assert result.get("failed") is True and "terminated" in result["msg"], result
    [job] = jobs_of(tdb)
    assert (job["state"], job["lost"], job["backend_pid"]) == ("failed", False, new_pid)
    assert tdb.fetchval("SELECT to_regclass('public.t_a_idx')") is None  # the leftover was dropped


def test_a_replace_reports_the_build_of_its_replacement_index(tdb):
    tdb.execute("CREATE INDEX t_a_idx ON t (a)")
    with held_build(tdb, "CREATE INDEX CONCURRENTLY t_a_idx_indexops_new ON t (a, b)") as (background, blocker):
        replace, create = status(tdb, changes=[change(action="replace"), change("c2")])["changes"]

        assert replace["state"] == "building"
        build = replace["build"]
        assert (build["pid"], build["index_name"], build["table"]) == (background.pid, "t_a_idx_indexops_new", "t")
        assert build["phase"] == "waiting for writers before build" and build["percent"] is not None
        assert replace["index_state"]["state"] == "valid"  # the index itself is not being built
        # Only a replace follows the replacement index.
        assert (create["state"], create["build"]) == ("done", None)

        blocker.release()
        background.join()
        assert background.error is None


def test_a_replacement_index_on_another_table_is_not_the_change_build(tdb):
    tdb.execute("CREATE INDEX t_a_idx ON t (a)")
    create_table(tdb, table="t2", rows=100)
    blocker = Blocker(tdb, table="t2")
    background = Background(tdb, "CREATE INDEX CONCURRENTLY t_a_idx_indexops_new ON t2 (a)")
    try:
        wait_until(lambda: any(row["index_name"] == "t_a_idx_indexops_new" for row in status(tdb)["builds"]),
                   what="the build on t2 to start")

        [replace] = status(tdb, changes=[change(action="replace")])["changes"]

        assert (replace["state"], replace["build"]) == ("done", None)
    finally:
        blocker.release()
        background.join()
        background.close(tdb)


def test_change_states_follow_the_ledger_and_the_catalog(tdb):
    assert status(tdb, changes=[change()])["changes"][0]["state"] == "pending"  # no ledger at all: not an error

    created = run_pg_index(tdb, name="t_a_idx", table="t", columns=["a"], ledger=ledger_args("c1"))
    assert created["changed"] is True, created
    done = status(tdb, changes=[change(), change("c2", "t_b_idx")])["changes"]
    assert [(item["id"], item["state"]) for item in done] == [("c1", "done"), ("c2", "pending")]
    assert (done[0]["job"]["kind"], done[0]["job"]["state"], done[0]["job"]["action"]) == (
        "apply", "succeeded", "created")
    assert done[0]["job"]["definition_after"] == done[0]["index_state"]["definition"]

    # Someone recreates it by hand with another definition under the same name.
    tdb.execute("DROP INDEX t_a_idx")
    tdb.execute("CREATE INDEX t_a_idx ON t (a, b)")
    assert status(tdb, changes=[change()])["changes"][0]["state"] == "mismatch"
    # Only jobs of the environment asked for count: production has none.
    assert status(tdb, changes=[change(environment="production")])["changes"][0]["state"] == "done"

    rolled = run_pg_index(tdb, name="t_a_idx", table="t", state="absent", ledger=ledger_args("c1", kind="rollback"))
    assert rolled["changed"] is True, rolled
    assert status(tdb, changes=[change()])["changes"][0]["state"] == "rolled_back"

    tdb.execute("CREATE INDEX t_b_idx ON t (b)")
    dropped = run_pg_index(tdb, name="t_b_idx", table="t", state="absent", ledger=ledger_args("c3"))
    assert dropped["changed"] is True, dropped
    result = status(tdb, changes=[change("c3", "t_b_idx", action="drop")], change_id="c3", environment="staging")
    assert result["changes"][0]["state"] == "done"
    assert result["ledger"]["definition_before"] == "CREATE INDEX t_b_idx ON public.t USING btree (b)"
    assert [(job["kind"], job["action"], job["state"]) for job in result["ledger"]["jobs"]] == [
        ("apply", "dropped", "succeeded")]
    elsewhere = status(tdb, change_id="c3", environment="production")["ledger"]
    assert (elsewhere["jobs"], elsewhere["definition_before"]) == ([], None)


def test_a_change_id_without_a_ledger_is_an_empty_history(tdb):
    result = status(tdb, change_id="c1", environment="staging")

    assert result["ledger"] == {"exists": False, "readable": False, "trusted": True, "jobs": [],
                                "definition_before": None}
    assert tdb.fetchval("SELECT to_regnamespace('indexops') IS NULL") is True


@pytest.mark.parametrize(("args", "message"), [
    ({"changes": [{"id": "c1", "index": {"name": "x'; DROP TABLE t; --"}}]},
     "contains characters that are not allowed"),
    ({"changes": [{"id": " ", "index": {"name": "t_a_idx"}}]}, "changes[].id is empty"),
    ({"changes": [{"id": "c1", "action": "explode", "index": {"name": "t_a_idx"}}]}, "value of action must be one of"),
    ({"environment": "staging"}, "missing parameter(s) required by 'environment': change_id"),
])
def test_bad_change_input_is_refused_before_connecting(tdb, args, message):
    # A port nobody listens on: a refusal that mentions the input, not the connection, came first.
    result = run_module("pg_index_status", {**tdb.params, "login_port": 1, **args})

    assert result["failed"] is True
    assert message in result["msg"], result["msg"]


# --------------------------------------------------------------------------- who may read

def test_a_monitoring_role_with_select_on_the_ledger_sees_builds_jobs_and_changes_nothing(tdb, make_role):
    created = run_pg_index(tdb, name="t_a_idx", table="t", columns=["a"], ledger=ledger_args("c1"))
    assert created["changed"] is True, created
    role, params = make_role("GRANT pg_monitor TO {role}", "GRANT USAGE ON SCHEMA indexops TO {role}",
                             "GRANT SELECT ON indexops.jobs TO {role}")
    for privilege in ("INSERT", "UPDATE", "DELETE"):
        assert tdb.fetchval("SELECT has_table_privilege(%s, 'indexops.jobs', %s)", (role, privilege)) is False
    assert tdb.fetchval("SELECT has_table_privilege(%s, 'public.t', 'SELECT')", (role,)) is False
    catalog_before, ledger_before = snapshot(tdb), ledger_rows(tdb)

    with held_build(tdb, "CREATE INDEX CONCURRENTLY t_d_idx ON t (d)") as (background, blocker):
        # The ledger belongs to the role that applied the change: the policy names it (ledger_owner).
        result = status(tdb, params, changes=[change(), change("c2", "t_d_idx")], change_id="c1",
                        ledger_owner=tdb.fetchval("SELECT current_user"))

    # (The in-process runner keeps other tests' warnings: look for this role's.)
    assert not [item for item in result.get("warnings", []) if role in str(item)], result["warnings"]
    assert result["progress_visible"] is True
    c1, c2 = result["changes"]
    assert (c1["state"], c1["job"]["state"], c1["index_state"]["definition"]) == (
        "done", "succeeded", "CREATE INDEX t_a_idx ON public.t USING btree (a)")
    assert (c2["state"], c2["build"]["pid"], c2["build"]["phase"]) == (
        "building", background.pid, "waiting for writers before build")
    assert blocker.pid in by_pid(c2["build"]["waiting_on"])
    assert by_pid(c2["build"]["waiting_on"])[blocker.pid]["state"] == "idle in transaction"
    assert [job["change_id"] for job in result["ledger"]["jobs"]] == ["c1"]
    # Nothing changed: the ledger is the same, the catalog differs only by the build the test ran.
    assert ledger_rows(tdb) == ledger_before
    assert [row for row in snapshot(tdb) if row[1] != "t_d_idx"] == catalog_before


def test_a_role_that_may_not_read_the_ledger_gets_a_warning_and_the_catalog_state(tdb, make_role):
    run_pg_index(tdb, name="t_a_idx", table="t", columns=["a"], ledger=ledger_args("c1"))
    role, params = make_role("GRANT pg_monitor TO {role}")

    result = status(tdb, params, changes=[change()], change_id="c1")

    assert any(f"role {role} may not read the ledger indexops.jobs" in str(warning)
               for warning in result["warnings"]), result
    assert (result["changes"][0]["state"], result["changes"][0]["job"]) == ("done", None)
    assert result["ledger"] == {"exists": True, "readable": False, "trusted": True, "jobs": [],
                                "definition_before": None}


# --------------------------------------------------------------------------- locks

def test_ddl_holding_access_exclusive_gives_a_warning_not_a_hang(tdb):
    tdb.execute("CREATE INDEX t_a_idx ON t (lower(email))")
    holder = tdb.connect(autocommit=False, application_name="test-ddl")
    try:
        with holder.cursor() as cur:
            cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier("public", "t")))
            cur.execute("SELECT pg_backend_pid()")
            holder_pid = cur.fetchone()[0]
        result = status(tdb, indexes=[{"name": "t_a_idx"}])
    finally:
        holder.rollback()
        holder.close()

    index = result["indexes"][0]
    assert (index["exists"], index["valid"], index["definition"]) == (True, True, None)
    assert index["size_bytes"] > 0
    warning = " ".join(str(item) for item in result["warnings"])
    assert f"pid {holder_pid} holds ACCESS EXCLUSIVE on t" in warning
    assert "run status again" in warning


def test_a_statement_tried_again_after_a_lock_timeout_says_which_attempt_it_is_on(tdb):
    """A retry restarts the build (percent and elapsed start over): the line and the row say
    'attempt n/N' while the job runs (issue 16 item 18)."""
    seen = []
    # Read in this thread through Status itself: run_module captures the process's stdout, which the
    # pg_index run in the background holds.
    read = Status(lambda: connect({**tdb.params, "connect_timeout": 10}, "test/status"))

    def on_a_retry():
        entry = read.run(changes=[change()])["changes"][0]
        seen.append(entry)
        return ((entry["job"] or {}).get("attempt") or 0) >= 2

    with contextlib.closing(tdb.connect(autocommit=False, application_name="test/blocker")) as blocker:
        with blocker.cursor() as cur:
            # Reads go on (the job starts), CREATE INDEX CONCURRENTLY cannot get its lock.
            cur.execute("LOCK TABLE public.t IN SHARE UPDATE EXCLUSIVE MODE")
        with in_background(tdb, run_pg_index, tdb, name="t_a_idx", table="t", columns=["a"], lock_timeout="200ms",
                           lock_retries=30, lock_retry_delay=0.1, lock_retry_max_delay=0.2,
                           ledger=ledger_args()) as future:
            wait_until(on_a_retry, "the job to record its second attempt")
            blocker.rollback()
            result = future.result(timeout=60)

    entry = seen[-1]
    attempt = entry["job"]["attempt"]
    assert entry["state"] == "building" and entry["job"]["attempts_max"] == 30, entry
    assert f"attempt {attempt}/30" in entry["line"] and f"attempt {attempt}/30" in entry["row"]["progress"], entry
    assert result.get("failed") is not True and result["attempts"] >= attempt, result
    finished = status(tdb, changes=[change()])["changes"][0]
    assert finished["state"] == "done" and "attempt" not in finished["line"], finished
