"""pg_index over many databases of one server in one run (option databases): each database its own
connection, ledger job, result and cleanup, against a real PostgreSQL.

The fleet is 12 copies of a test database holding public.t; in one of them column d has duplicates,
so a UNIQUE build there fails (after CREATE INDEX CONCURRENTLY has made its invalid index).
"""

from __future__ import annotations

import contextlib

import pytest

from tests.conftest import TestDatabase
from tests.integration.helpers_catalog import create_table
from tests.integration.helpers_fleet import Fleet
from tests.integration.test_busy import LOCK_TIMEOUT, ReportingLoad, Writer, assert_no_write_stall
from tests.integration.test_pg_index_failures import index_state, make_table
from tests.pg_index_runner import run_module

COUNT = 12
INDEX = "t_d_uq"
LEDGER = {"change_id": "t-d-uq", "spec_digest": "0" * 64, "kind": "apply", "environment": "staging",
          "owner": "team-test", "operator": "tester"}


@pytest.fixture
def fleet(db):
    create_table(db, rows=2000)
    with Fleet(db, COUNT) as fleet:
        fleet.run(fleet.names[4], "UPDATE public.t SET d = 1 WHERE id IN (1, 2)")
        yield fleet


def build(fleet, names, check_mode=False, **args):
    params = {**fleet.db.params, "db": None, "databases": names, "max_connections": 3, "name": INDEX,
              "table": "public.t", "columns": ["d"], "unique": True, "ledger": LEDGER, **args}
    return run_module("pg_index", {key: value for key, value in params.items() if value is not None},
                      check_mode=check_mode)


def index_of(fleet, name):
    """(valid,) of public.t_d_uq in database ``name``, or None."""
    with contextlib.closing(fleet.connect(name)) as conn, conn.cursor() as cur:
        cur.execute("SELECT i.indisvalid FROM pg_catalog.pg_index i WHERE i.indexrelid = to_regclass('public.t_d_uq')")
        return cur.fetchone()


def jobs_of(fleet, name):
    with contextlib.closing(fleet.connect(name)) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('indexops.jobs') IS NOT NULL")
        if not cur.fetchone()[0]:
            return []
        cur.execute("SELECT kind, state FROM indexops.jobs WHERE change_id = %s ORDER BY job_id",
                    (LEDGER["change_id"],))
        return cur.fetchall()


def test_one_run_builds_in_every_database_and_a_failing_one_fails_alone_leaving_nothing(fleet):
    broken = fleet.names[4]

    result = build(fleet, fleet.names)

    assert result["failed"] is True
    assert result["msg"].startswith(f"1 of {COUNT} database(s) failed; the others are in database_results. "
                                    f"{broken}: "), result["msg"]
    assert "could not create unique index" in result["msg"], result["msg"]
    assert result["databases_failed"] == [broken]
    entries = {entry["database"]: entry for entry in result["database_results"]}
    assert [entry["database"] for entry in result["database_results"]] == fleet.names, "in the order given"
    assert entries[broken]["failed"] is True and "Key (d)=(1) is duplicated" in entries[broken]["msg"]
    assert all(entries[name]["action"] == "created" and entries[name]["valid"] is True
               for name in fleet.names if name != broken)
    # The database decided: a valid index in each database but one, and no invalid leftover there.
    assert all(index_of(fleet, name) == (True,) for name in fleet.names if name != broken)
    assert index_of(fleet, broken) is None, "the failed build's invalid index is dropped"
    assert jobs_of(fleet, broken) == [("apply", "failed")]
    assert all(jobs_of(fleet, name) == [("apply", "succeeded")] for name in fleet.names if name != broken)

    fleet.run(broken, "UPDATE public.t SET d = id")
    rerun = build(fleet, fleet.names)

    assert rerun.get("failed") is not True, rerun.get("msg")
    assert rerun["changed"] is True and rerun["databases_failed"] == []
    actions = {entry["database"]: entry["action"] for entry in rerun["database_results"]}
    assert actions == {name: "created" if name == broken else "none" for name in fleet.names}
    assert jobs_of(fleet, broken) == [("apply", "failed"), ("apply", "succeeded")]


def test_a_database_that_does_not_answer_is_its_own_failed_entry(fleet):
    missing = f"{fleet.db.name}_none"

    result = build(fleet, [fleet.names[0], missing, fleet.names[1]])

    assert result["failed"] is True and result["databases_failed"] == [missing]
    entry = result["database_results"][1]
    assert entry["database"] == missing and "does not exist" in entry["msg"], entry
    assert index_of(fleet, fleet.names[0]) == (True,) and index_of(fleet, fleet.names[1]) == (True,)


def test_check_mode_over_databases_says_what_would_run_and_changes_nothing(fleet):
    result = build(fleet, fleet.names[:3], check_mode=True)

    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True
    assert all(entry["sql"] and entry["sql"][0].startswith('CREATE UNIQUE INDEX CONCURRENTLY "t_d_uq"')
               for entry in result["database_results"]), result["database_results"]
    assert all(index_of(fleet, name) is None and jobs_of(fleet, name) == [] for name in fleet.names[:3])


@pytest.mark.parametrize(("args", "fragment"), [
    ({"lock_timeout": "soon"}, "lock_timeout"),
    ({"max_connections": 0}, "max_connections is 0"),
    ({"databases": ["ok", ""]}, "empty database name"),
    ({"columns": ["d; DROP TABLE t"]}, "d; DROP TABLE t"),
])
def test_bad_input_over_databases_is_refused_before_any_database_changes(fleet, args, fragment):
    names = fleet.names[:2]

    result = build(fleet, **{"names": names, **args})

    assert result["failed"] is True and fragment in result["msg"], result["msg"]
    assert "database_results" not in result, "refused once, before any database"
    assert result["retry_safe"] is False
    assert all(index_of(fleet, name) is None and jobs_of(fleet, name) == [] for name in names)


def test_over_databases_with_writers_and_multisecond_readers_every_build_finishes_and_no_write_stalls(db):
    """Production as it is: in two databases of the fleet a writer inserts into the indexed table (its own
    lock_timeout is lock_timeout + 250 ms) and reporting statements of 2 s always hold a snapshot."""
    make_table(db, rows=5000)
    db.execute("CREATE TABLE public.reports AS SELECT g AS id FROM generate_series(1, 1000) g")
    with Fleet(db, 4) as fleet:
        busy = [TestDatabase(db.server, name) for name in fleet.names[:2]]
        with contextlib.ExitStack() as load:
            readers = [load.enter_context(ReportingLoad(target)) for target in busy]
            writers = [load.enter_context(Writer(target)) for target in busy]
            result = run_module("pg_index", {**db.params, "databases": fleet.names, "max_connections": 2,
                                             "name": "t_status_idx", "table": "t", "columns": ["status"],
                                             "lock_timeout": LOCK_TIMEOUT, "lock_retries": 3, "ledger": LEDGER})
        for target in busy:
            target.close()

        assert result.get("failed") is not True, result.get("msg")
        entries = {entry["database"]: entry for entry in result["database_results"]}
        assert all(entry["action"] == "created" and entry["attempts"] == 1 and entry["lock_wait_s"] == 0
                   for entry in entries.values()), entries
        # The busy databases' builds waited for the readers' snapshots, far longer than lock_timeout, and finished.
        assert all(entries[target.name]["txn_wait_s"] > 0.5 for target in busy), entries
        assert all(reader.errors == [] for reader in readers)
        for writer in writers:
            assert_no_write_stall(writer)
        assert all(index_state(TestDatabase(db.server, name), "t_status_idx") == (True, True) for name in fleet.names)
