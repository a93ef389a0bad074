"""pg_index's ledger option against real PostgreSQL: what each job leaves in indexops.jobs, how a
rollback closes the runs it undid, and which definition a rollback would restore."""

from __future__ import annotations

from ansible_collections.indexops.core.plugins.module_utils import ledger as ledger_utils
from tests.integration.helpers_catalog import create_table
from tests.pg_index_runner import run_pg_index


def ledger(change_id="c1", kind="apply", environment="staging"):
    return {"change_id": change_id, "spec_digest": "0" * 64, "kind": kind, "environment": environment,
            "owner": "team-db", "rollback_note": "drop it", "operator": "tester"}


def jobs(db):
    return db.fetchall("SELECT job_id, change_id, kind, environment, action, state FROM indexops.jobs ORDER BY job_id")


def create(db, **ledger_args):
    return run_pg_index(db, name="ix", table="t", columns=["a"], ledger=ledger(**ledger_args))


def drop(db, **ledger_args):
    return run_pg_index(db, name="ix", table="t", state="absent", ledger=ledger(**ledger_args))


def test_a_job_is_recorded_with_its_action_and_state(db):
    create_table(db)
    result = create(db)
    assert result["changed"] is True, result
    assert jobs(db) == [(1, "c1", "apply", "staging", "created", "succeeded")]
    after = db.fetchval("SELECT definition_after FROM indexops.jobs WHERE job_id = 1")
    assert after == result["definition"]


def test_a_failed_build_is_recorded_as_failed_with_its_error(db):
    create_table(db)
    db.execute("INSERT INTO t (id, a) VALUES (1, 1)")  # id 1 now twice
    result = run_pg_index(db, name="ux", table="t", columns=["id"], unique=True, ledger=ledger())
    assert result["failed"] is True
    row = db.fetchone("SELECT state, last_error FROM indexops.jobs")
    assert row[0] == "failed"
    assert "(id)=(1)" in row[1]


def test_rollback_marks_earlier_runs_of_its_environment_only(db):
    create_table(db)
    assert create(db, environment="staging")["changed"] is True
    assert drop(db, kind="rollback", environment="production")["changed"] is True  # other environment
    assert create(db, environment="staging")["changed"] is True
    result = drop(db, kind="rollback", environment="staging")
    assert result["changed"] is True, result
    assert result["rolled_back_jobs"] == [1, 3]
    assert [row[5] for row in jobs(db)] == ["rolled_back", "succeeded", "rolled_back", "succeeded"]


def test_a_later_reapply_is_not_marked_by_an_earlier_rollback(db):
    create_table(db)
    create(db)
    drop(db, kind="rollback")
    again = create(db)
    assert again["rolled_back_jobs"] == []
    assert [row[5] for row in jobs(db)] == ["rolled_back", "succeeded", "succeeded"]


def test_a_failed_rollback_marks_nothing(db):
    create_table(db)
    create(db)
    db.execute("ALTER INDEX ix RENAME TO ix_other")
    db.execute("CREATE TABLE not_t (a int)")
    db.execute("CREATE INDEX ix ON not_t (a)")  # the name now belongs to another table
    result = run_pg_index(db, name="ix", table="t", state="absent", ledger=ledger(kind="rollback"))
    assert result["failed"] is True
    assert [row[5] for row in jobs(db)][0] == "succeeded"


def test_definition_before_is_the_newest_dropped_or_replaced_definition(db):
    create_table(db)
    db.execute("CREATE INDEX ix ON t (a, b)")
    first = drop(db)
    assert first["action"] == "dropped"
    create(db)  # a later create records no definition it took away
    conn = db.connect()
    try:
        assert ledger_utils.definition_before_in(conn, "c1") == first["definition_before"]
    finally:
        conn.close()
    assert "(a, b)" in first["definition_before"]
