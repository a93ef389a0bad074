"""The fault matrix (runbook.md, "When things break"), against real PostgreSQL, on every version.

Each test provokes one fault a production run meets and checks what the operator reads and the
state the database and the ledger are left in. Rows of the matrix that live elsewhere:

- connection cut mid-build (backend terminated):
  test_pg_index_failures.py::test_terminated_build_cleans_up_and_rerun_creates
- statement_timeout mid-build: test_pg_index_failures.py::test_statement_timeout_cancels_build_and_cleans_up
- the background job's processes killed while apply waits, the control node dies:
  tests/playbooks/test_status.py (test_apply_notices_its_background_job_died..., test_a_killed_apply...)

A server restart and a hot standby need a server of the test's own: ``fault_server`` starts one with
the same binaries as the server under test (only for servers the suite started itself; restarting
or replicating a server given by DSN is not the suite's to do).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import threading
import uuid

import pytest
from psycopg2 import sql

from scripts.sandbox import Sandbox, free_port
from tests.conftest import ROOT, PgServer, TestDatabase, start_sandbox, worker_dir
from tests.integration.helpers_catalog import wait_until
from tests.integration.helpers_roles import Roles
from tests.integration.test_pg_index_failures import in_background, index_state, invalid_indexes, make_table, session
from tests.pg_index_runner import run_module, run_pg_index


def ledger(change_id="fault"):
    return {"change_id": change_id, "spec_digest": "0" * 64, "kind": "apply", "environment": "staging",
            "owner": "team-db", "rollback_note": "drop it", "operator": "tester"}


def one_clear_line(result):
    """A failure the operator can act on: one message, retry-safe, no traceback."""
    assert result.get("failed") is True, result
    assert "exception" not in result, result.get("exception")
    assert "MODULE FAILURE" not in result["msg"] and "Traceback" not in result["msg"]
    assert "\n" not in result["msg"].strip(), result["msg"]


# --------------------------------------------------------------------------- a server of the test's own

@pytest.fixture(scope="module")
def fault_server(pg_server):
    if pg_server.sandbox is None:
        pytest.skip(f"{pg_server.id} was not started by the suite: restarting or replicating it is not ours to do "
                    "(its version runs this test on a server the suite starts, see INDEXOPS_TEST_PG_VERSIONS)")
    sandbox = start_sandbox(worker_dir(f"faults-{pg_server.id}"), pg_server.sandbox.bin_dir)
    server = PgServer(id=f"faults-{pg_server.id}", kind="faults", conn_params=sandbox.conn_params("postgres"),
                      sandbox=sandbox, server_version_num=pg_server.server_version_num)
    yield server
    sandbox.stop(mode="immediate")


@pytest.fixture
def fault_db(fault_server):
    name = f"indexops_f_{uuid.uuid4().hex[:12]}"
    with contextlib.closing(fault_server.connect()) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    database = TestDatabase(server=fault_server, name=name)
    yield database
    database.close()
    with contextlib.closing(fault_server.connect()) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def restart(sandbox: Sandbox):
    """A fast shutdown and start: what a crash restart or a failover back looks like to a client."""
    sandbox.stop(mode="fast")
    sandbox.start()
    sandbox.wait_ready()


# --------------------------------------------------------------------------- server restart mid-build

def test_server_restart_mid_build_fails_clearly_and_a_rerun_ends_with_one_valid_index(fault_db, fault_server):
    make_table(fault_db)
    holder = fault_db.connect(autocommit=False, application_name="test/snapshot-holder")
    with holder.cursor() as cur:  # keeps the build waiting for old snapshots, mid-build
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("SELECT count(*) FROM pg_catalog.pg_class")
    with in_background(fault_db, run_pg_index, fault_db, name="t_status_idx", table="t", columns=["status"],
                       ledger=ledger()) as future:
        wait_until(lambda: fault_db.fetchval(
            "SELECT count(*) FROM pg_stat_progress_create_index WHERE phase LIKE 'waiting for%%' "
            "AND datid = (SELECT oid FROM pg_database WHERE datname = current_database())"),
            "the build to wait mid-way")
        fault_db.close()
        restart(fault_server.sandbox)
        result = future.result(timeout=120)
    holder.close()

    one_clear_line(result)
    assert result["retry_safe"] is True
    assert "was terminated or lost its connection" in result["msg"], result["msg"]
    assert "Running again is safe" in result["msg"]
    # The reconnect after the restart dropped the invalid index the build left.
    assert "was dropped, so nothing is left behind" in result["msg"], result["msg"]
    assert invalid_indexes(fault_db) == []
    state, last_error = fault_db.fetchone("SELECT state, last_error FROM indexops.jobs WHERE change_id = 'fault'")
    assert state == "failed" and "terminated or lost its connection" in last_error

    again = run_pg_index(fault_db, name="t_status_idx", table="t", columns=["status"], ledger=ledger())
    assert again.get("failed") is not True, again
    assert again["action"] == "created"
    assert index_state(fault_db, "t_status_idx") == (True, True)
    assert invalid_indexes(fault_db) == []


# --------------------------------------------------------------------------- a hot standby by mistake

@pytest.fixture
def standby(fault_server, fault_db):
    """A streaming replica of ``fault_server`` (pg_basebackup -R), holding ``fault_db``'s table."""
    make_table(fault_db)
    primary = fault_server.sandbox
    base = worker_dir(f"standby-{fault_server.id}")
    replica = Sandbox(base / "data", free_port(), bin_dir=primary.bin_dir)
    if replica.is_running():
        Sandbox(replica.pgdata, replica.running_port() or replica.port, bin_dir=primary.bin_dir).stop(mode="immediate")
    replica._prepare()
    for child in replica.pgdata.iterdir():
        raise AssertionError(f"{replica.pgdata} is not empty ({child}); remove it")
    replica._run(["pg_basebackup", "-D", str(replica.pgdata), "-h", primary.host, "-p", str(primary.port),
                  "-U", primary.user, "-R", "-X", "stream", "-c", "fast"])
    replica.start()
    replica.wait_ready()
    server = PgServer(id=f"standby-{fault_server.id}", kind="standby", conn_params=replica.conn_params("postgres"),
                      sandbox=replica, server_version_num=fault_server.server_version_num)
    yield TestDatabase(server=server, name=fault_db.name)
    replica.stop(mode="immediate")
    shutil.rmtree(replica.pgdata, ignore_errors=True)


def test_a_hot_standby_is_refused_before_any_ddl_with_one_line(standby, fault_db):
    assert standby.fetchval("SELECT pg_is_in_recovery()") is True
    result = run_pg_index(standby, name="t_status_idx", table="t", columns=["status"], ledger=ledger())
    one_clear_line(result)
    assert "the server is a hot standby (a read-only replica in recovery)" in result["msg"], result["msg"]
    assert "point login_host (indexops_login_host) at the primary" in result["msg"]
    assert index_state(fault_db, "t_status_idx") is None  # nothing was built on the primary either
    assert fault_db.fetchval("SELECT to_regclass('indexops.jobs')") is None  # nor a ledger written

    checked = run_module("pg_index_preflight", {**standby.params, "change": {
        "id": "fault", "owner": "team-db", "reason": "test", "action": "create",
        "index": {"name": "t_status_idx", "table": "public.t", "columns": ["status"]}}})
    assert checked["go"] is False
    assert any("hot standby" in reason for reason in checked["reasons"]), checked["reasons"]


# --------------------------------------------------------------------------- resources and privileges

def test_temp_space_exhausted_mid_build_drops_the_leftover_and_names_the_cause(db):
    """temp_file_limit stands in for a full temp filesystem: the same failure (the build's sort cannot
    write its temporary files) without filling a disk of the test machine."""
    db.execute("CREATE TABLE t AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS note "
               "FROM generate_series(1, 100000) g")
    db.execute(sql.SQL("ALTER DATABASE {} SET temp_file_limit = '256kB'").format(sql.Identifier(db.name)))
    result = run_pg_index(db, name="t_note_idx", table="t", columns=["note"], maintenance_work_mem="1MB",
                          ledger=ledger())
    one_clear_line(result)
    msg = result["msg"]
    assert "the server ran out of a resource" in msg and "temp_file_limit" in msg, msg
    assert "was dropped, so nothing is left behind" in msg, msg
    assert result["retry_safe"] is True
    assert invalid_indexes(db) == []
    assert index_state(db, "t_note_idx") is None
    assert db.fetchval("SELECT state FROM indexops.jobs WHERE change_id = 'fault'") == "failed"


def test_a_role_that_cannot_create_the_ledger_is_refused_before_any_ddl(db):
    make_table(db)
    with Roles(db) as roles:
        role, params = roles.make()
        refused_role_run(db, role, params)


def refused_role_run(db, role, params):
    db.execute(sql.SQL("ALTER TABLE t OWNER TO {}").format(sql.Identifier(role)))
    db.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db.name)))
    result = run_module("pg_index", {**params, "name": "t_status_idx", "table": "t", "columns": ["status"],
                                     "ledger": ledger()})
    one_clear_line(result)
    assert "cannot create the ledger" in result["msg"], result["msg"]
    assert "CREATE privilege on the database" in result["msg"], result["msg"]
    assert index_state(db, "t_status_idx") is None  # nothing built without a ledger record
    assert db.fetchval("SELECT to_regnamespace('indexops')") is None


# --------------------------------------------------------------------------- two operators at once

def pg_index_process(db, **args):
    """pg_index in a process of its own, as a second operator's run is: (Popen, stdout file)."""
    payload = json.dumps({**db.params, **args})
    code = ("import json, sys; import tests.conftest; from tests.pg_index_runner import run_module; "
            "print(json.dumps(run_module('pg_index', json.loads(sys.argv[1]))))")
    return subprocess.Popen([sys.executable, "-c", code, payload], cwd=ROOT, stdout=subprocess.PIPE, text=True)


def test_two_runs_of_the_same_change_never_make_two_builds(db):
    """Two operators apply the same change at once. The second waits for the first one's job lock,
    then finds the index built and changes nothing; with a short job_lock_timeout it refuses instead,
    naming the first run's session. Never two builds, never a dropped build."""
    make_table(db)
    with session(db, "test/writer", "INSERT INTO t VALUES (-1, 'w@example.com', 'open')") as writer:
        first = pg_index_process(db, name="t_status_idx", table="t", columns=["status"], ledger=ledger())
        try:
            # index_relid is 0 until the build has created its catalog entry. Only this database's builds
            # count: a server shared with other tests (INDEXOPS_TEST_DSNS) runs theirs too.
            build = wait_until(lambda: db.fetchone(
                "SELECT pid, index_relid::bigint FROM pg_stat_progress_create_index WHERE index_relid <> 0 "
                "AND datid = (SELECT oid FROM pg_database WHERE datname = current_database())"),
                "the first build", timeout=120)
            refused = run_pg_index(db, name="t_status_idx", table="t", columns=["status"], job_lock_timeout=1,
                                   ledger=ledger())
            never_two = db.fetchval("SELECT count(*) FROM pg_stat_progress_create_index WHERE "
                                    "datid = (SELECT oid FROM pg_database WHERE datname = current_database())")
            assert never_two == 1  # never a second build
            threading.Timer(2.0, writer.rollback).start()  # the first build can finish while the second waits
            waited = run_pg_index(db, name="t_status_idx", table="t", columns=["status"], job_lock_timeout=60,
                                  ledger=ledger())
            built = json.loads(first.communicate(timeout=120)[0])
        finally:
            if first.poll() is None:
                first.kill()
    assert refused.get("failed") is True and refused["retry_safe"] is True
    assert "another indexops job holds table public.t" in refused["msg"], refused["msg"]
    assert built.get("failed") is not True and built["action"] == "created", built
    assert waited.get("failed") is not True and waited["action"] == "none" and waited["changed"] is False, waited
    assert db.fetchval("SELECT 'public.t_status_idx'::regclass::oid::bigint") == build[1]  # the first one's index
    assert index_state(db, "t_status_idx") == (True, True)
    assert invalid_indexes(db) == []


def test_the_matrix_in_the_runbook_names_a_test_for_every_row():
    """runbook.md's fault matrix and these tests stay one table: every row names its test."""
    runbook = (ROOT / "runbook.md").read_text()
    section = runbook.split("### The fault matrix", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| fault")]
    rows = [row for row in rows if not set(row) <= set("|- ")]
    assert len(rows) >= 9, section
    for row in rows:
        test = row.rstrip(" |").rsplit("|", 1)[1].strip().strip("`")
        path, _, name = test.partition("::")
        source = (ROOT / path).read_text()
        assert f"def {name}(" in source, f"{test} (runbook.md fault matrix) does not exist"
