"""pg_index state=absent and state=rebuilt against real PostgreSQL, plus check mode and diff mode
for every state: what runs, what is refused, and that check mode changes nothing in the catalog."""

from __future__ import annotations

import psycopg2.errors
import pytest
from psycopg2 import sql

from tests.integration.helpers_catalog import (
    Background,
    Blocker,
    build_waiting,
    create_table,
    index_row,
    progress,
    relation_names,
    snapshot,
    wait_until,
)
from tests.pg_index_runner import run_pg_index


@pytest.fixture
def tdb(db):
    """The test database with public.t (20k rows) and index ix on t (a)."""
    create_table(db)
    db.execute("CREATE INDEX ix ON t (a)")
    return db


def cc_leftovers(db):
    return sorted(name for name in relation_names(db) if "_ccnew" in name or "_ccold" in name)


def make_cc_leftover(db, index="ix", kind="ccnew"):
    """Leave <index>_ccnew or <index>_ccold behind the way a failed REINDEX CONCURRENTLY does.

    REINDEX INDEX CONCURRENTLY runs on its own connection while another transaction holds it:
    - ccnew: an open write transaction (ROW EXCLUSIVE) holds it in 'waiting for writers before
      build', after <index>_ccnew was created and committed; cancelling it then leaves _ccnew.
    - ccold: an open READ COMMITTED transaction holding ACCESS SHARE lets it build, validate and
      swap, but holds it in 'waiting for readers before marking dead'; cancelling it then leaves
      the old index, now named _ccold and marked invalid.
    """
    holder = Blocker(db, mode="write" if kind == "ccnew" else "read")
    phase = "waiting for writers before build" if kind == "ccnew" else "waiting for readers before marking dead"
    reindex = Background(db, sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(sql.Identifier(index)),
                         application_name="other-reindex")
    try:
        wait_until(lambda: any(row["pid"] == reindex.pid and row["phase"] == phase for row in progress(db)),
                   what=f"REINDEX CONCURRENTLY to reach '{phase}'")
        db.execute("SELECT pg_cancel_backend(%s)", (reindex.pid,))
        reindex.join()
        assert isinstance(reindex.error, psycopg2.errors.QueryCanceled), reindex.error
    finally:
        holder.release()
        reindex.close(db)
    leftover = index_row(db, "public", f"{index}_{kind}")
    assert leftover is not None and leftover["valid"] is False
    return leftover


# --------------------------------------------------------------------------- absent

def test_absent_drops_concurrently_and_rerun_is_unchanged(tdb):
    result = run_pg_index(tdb, name="ix", state="absent")

    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert result["action"] == "dropped"
    assert len(result["sql"]) == 1
    assert result["sql"][0].startswith("DROP INDEX CONCURRENTLY")
    assert result["sql"][0].endswith('"public"."ix"')
    assert index_row(tdb, "public", "ix") is None
    assert (result["valid"], result["definition"]) == (False, "")

    before = snapshot(tdb)
    again = run_pg_index(tdb, name="ix", state="absent")
    assert not again.get("failed"), again.get("msg")
    assert (again["changed"], again["action"], again["sql"]) == (False, "none", [])
    assert snapshot(tdb) == before


def test_absent_with_table_given_drops_it(tdb):
    result = run_pg_index(tdb, name="ix", table="t", state="absent")

    assert not result.get("failed"), result.get("msg")
    assert result["action"] == "dropped"
    assert index_row(tdb, "public", "ix") is None


@pytest.mark.parametrize(("constraint_ddl", "name"), [
    pytest.param("ALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY (id)", "t_pkey", id="primary-key"),
    pytest.param("ALTER TABLE t ADD CONSTRAINT t_d_key UNIQUE (d)", "t_d_key", id="unique-constraint"),
])
def test_absent_refuses_index_backing_a_constraint(tdb, constraint_ddl, name):
    tdb.execute(constraint_ddl)
    before = snapshot(tdb)

    result = run_pg_index(tdb, name=name, state="absent")

    assert result.get("failed") is True, result
    assert "constraint" in result["msg"] and name in result["msg"]
    assert snapshot(tdb) == before
    assert index_row(tdb, "public", name)["valid"] is True


def test_absent_for_a_table_name_is_an_error_and_the_table_survives(tdb):
    before = snapshot(tdb)
    rows = tdb.fetchval("SELECT count(*) FROM t")

    result = run_pg_index(tdb, name="t", state="absent")

    assert result.get("failed") is True, result
    assert "public.t" in result["msg"] and "not an index" in result["msg"]
    assert snapshot(tdb) == before
    assert tdb.fetchval("SELECT count(*) FROM t") == rows


def test_absent_never_drops_an_index_another_session_is_building(tdb):
    blocker = Blocker(tdb)
    build = Background(tdb, "CREATE INDEX CONCURRENTLY building ON t (b)", application_name="other-builder")
    try:
        row = wait_until(lambda: build_waiting(tdb, build.pid), what="the CIC to wait for writers before build")
        before = snapshot(tdb)

        result = run_pg_index(tdb, name="building", state="absent")

        assert result.get("failed") is True, result
        assert f"pid {build.pid}" in result["msg"] and row["phase"] in result["msg"]
        assert snapshot(tdb) == before
        assert build.thread.is_alive()
    finally:
        blocker.release()
        build.finish(tdb)
    assert build.error is None
    assert index_row(tdb, "public", "building")["valid"] is True


# --------------------------------------------------------------------------- rebuilt

def test_rebuilt_reindexes_concurrently(tdb):
    old = index_row(tdb, "public", "ix")

    result = run_pg_index(tdb, name="ix", state="rebuilt")

    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert result["action"] == "rebuilt"
    assert result["sql"] == ['REINDEX INDEX CONCURRENTLY "public"."ix"']
    new = index_row(tdb, "public", "ix")
    assert new["valid"] and new["ready"]
    assert new["relfilenode"] != old["relfilenode"]  # new storage: it really was rebuilt
    assert new["definition"] == old["definition"] == result["definition"]
    assert cc_leftovers(tdb) == []


@pytest.mark.parametrize("kind", ["ccnew", "ccold"])
def test_rebuilt_drops_leftovers_of_a_failed_reindex_first(tdb, kind):
    leftover = make_cc_leftover(tdb, kind=kind)
    assert cc_leftovers(tdb) == [f"ix_{kind}"]

    result = run_pg_index(tdb, name="ix", state="rebuilt")

    assert not result.get("failed"), result.get("msg")
    assert result["action"] == "rebuilt"
    assert result["sql"] == [f'DROP INDEX CONCURRENTLY IF EXISTS "public"."ix_{kind}"',
                             'REINDEX INDEX CONCURRENTLY "public"."ix"']
    assert cc_leftovers(tdb) == []
    assert tdb.fetchval("SELECT count(*) FROM pg_class WHERE oid = %s", (leftover["oid"],)) == 0
    assert index_row(tdb, "public", "ix")["valid"] is True
    assert tdb.fetchval("SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0


def test_rebuilt_leaves_leftovers_of_other_indexes_alone(tdb):
    # ix_ccnew belongs to index ix; rebuilding ix_wide (whose name starts with "ix") must not touch it.
    tdb.execute("CREATE INDEX ix_wide ON t (a, b)")
    make_cc_leftover(tdb, index="ix", kind="ccnew")
    before = [row for row in snapshot(tdb) if row[1] == "ix_ccnew"]

    result = run_pg_index(tdb, name="ix_wide", state="rebuilt")

    assert not result.get("failed"), result.get("msg")
    assert result["sql"] == ['REINDEX INDEX CONCURRENTLY "public"."ix_wide"']
    assert [row for row in snapshot(tdb) if row[1] == "ix_ccnew"] == before


def test_rebuilt_refuses_while_another_session_reindexes_it(tdb):
    # pg_stat_progress_create_index shows a REINDEX CONCURRENTLY under the ORIGINAL index's OID
    # (not under the <name>_ccnew it is building), so this is what pg_index must recognise.
    blocker = Blocker(tdb)
    reindex = Background(tdb, "REINDEX INDEX CONCURRENTLY ix", application_name="other-reindex")
    try:
        row = wait_until(lambda: build_waiting(tdb, reindex.pid, command="REINDEX CONCURRENTLY"),
                         what="REINDEX CONCURRENTLY to wait for writers before build")
        assert row["index_relid"] == index_row(tdb, "public", "ix")["oid"]
        assert index_row(tdb, "public", "ix_ccnew")["valid"] is False
        before = snapshot(tdb)

        result = run_pg_index(tdb, name="ix", state="rebuilt")

        assert result.get("failed") is True, result
        assert f"pid {reindex.pid}" in result["msg"] and row["phase"] in result["msg"]
        assert snapshot(tdb) == before
        assert reindex.thread.is_alive()
    finally:
        blocker.release()
        reindex.finish(tdb)
    assert reindex.error is None
    assert cc_leftovers(tdb) == []
    assert index_row(tdb, "public", "ix")["valid"] is True


def test_rebuilt_of_a_missing_index_fails_clearly(tdb):
    before = snapshot(tdb)

    result = run_pg_index(tdb, name="nosuch_idx", state="rebuilt")

    assert result.get("failed") is True, result
    assert "public.nosuch_idx" in result["msg"] and "does not exist" in result["msg"]
    assert "state: present" in result["msg"]
    assert snapshot(tdb) == before


# --------------------------------------------------------------------------- check mode

def make_invalid_index(db):
    """An invalid ix2 on t (d): a raw UNIQUE CREATE INDEX CONCURRENTLY over a duplicate fails and
    PostgreSQL leaves the index behind; the duplicate is removed afterwards."""
    db.execute("INSERT INTO t (id, d) VALUES (-7, 7)")
    with pytest.raises(psycopg2.errors.UniqueViolation):
        db.execute("CREATE UNIQUE INDEX CONCURRENTLY ix2 ON t (d)")
    db.execute("DELETE FROM t WHERE id = -7")
    assert index_row(db, "public", "ix2")["valid"] is False


# (setup, pg_index args, expected action, expected statement starts)
CHECK_MODE_CASES = [
    pytest.param(None, {"name": "ix2", "table": "t", "columns": ["b"]}, "created",
                 ["CREATE INDEX CONCURRENTLY"], id="present-missing"),
    pytest.param(make_invalid_index, {"name": "ix2", "table": "t", "columns": ["d"], "unique": True},
                 "repaired_invalid", ["DROP INDEX CONCURRENTLY", "CREATE UNIQUE INDEX CONCURRENTLY"],
                 id="present-invalid"),
    pytest.param(None, {"name": "ix", "table": "t", "columns": ["a", "b"], "on_mismatch": "replace"}, "replaced",
                 ["CREATE INDEX CONCURRENTLY", "DROP INDEX CONCURRENTLY", "ALTER INDEX"], id="present-replace"),
    pytest.param(None, {"name": "ix", "state": "absent"}, "dropped", ["DROP INDEX CONCURRENTLY"], id="absent"),
    pytest.param(None, {"name": "ix", "state": "rebuilt"}, "rebuilt", ["REINDEX INDEX CONCURRENTLY"],
                 id="rebuilt"),
    pytest.param(make_cc_leftover, {"name": "ix", "state": "rebuilt"}, "rebuilt",
                 ["DROP INDEX CONCURRENTLY", "REINDEX INDEX CONCURRENTLY"], id="rebuilt-with-leftover"),
]


@pytest.mark.parametrize(("setup", "args", "action", "starts"), CHECK_MODE_CASES)
def test_check_mode_changes_nothing_and_reports_the_sql_it_would_run(tdb, setup, args, action, starts):
    if setup:
        setup(tdb)
    before = snapshot(tdb)
    locks_before = tdb.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")

    checked = run_pg_index(tdb, check_mode=True, **args)

    assert not checked.get("failed"), checked.get("msg")
    assert checked["changed"] is True
    assert checked["action"] == action
    assert len(checked["sql"]) == len(starts)
    for statement, start in zip(checked["sql"], starts, strict=True):
        assert statement.startswith(start)
    assert snapshot(tdb) == before
    assert tdb.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == locks_before

    # The statements check mode announced are exactly the ones a real run executes.
    real = run_pg_index(tdb, **args)
    assert not real.get("failed"), real.get("msg")
    assert real["action"] == action
    assert real["sql"] == checked["sql"]
    assert snapshot(tdb) != before


def test_check_mode_on_a_matching_index_reports_unchanged(tdb):
    before = snapshot(tdb)

    result = run_pg_index(tdb, check_mode=True, name="ix", table="t", columns=["a"])

    assert not result.get("failed"), result.get("msg")
    assert (result["changed"], result["action"], result["sql"]) == (False, "none", [])
    assert result["valid"] is True
    assert snapshot(tdb) == before


# --------------------------------------------------------------------------- diff mode

def test_diff_mode_returns_before_and_after(tdb):
    created = run_pg_index(tdb, diff=True, name="ix2", table="t", columns=["b"])
    assert not created.get("failed"), created.get("msg")
    assert created["diff"]["before"] == ""
    assert "ix2" in created["diff"]["after"] and "(b)" in created["diff"]["after"]

    unchanged = run_pg_index(tdb, diff=True, name="ix2", table="t", columns=["b"])
    assert unchanged["changed"] is False
    assert unchanged["diff"]["before"] == unchanged["diff"]["after"] != ""

    replaced = run_pg_index(tdb, diff=True, name="ix2", table="t", columns=["b", "a"], on_mismatch="replace")
    assert not replaced.get("failed"), replaced.get("msg")
    assert "(b)" in replaced["diff"]["before"] and "(b, a)" in replaced["diff"]["after"]

    dropped = run_pg_index(tdb, diff=True, name="ix2", state="absent")
    assert not dropped.get("failed"), dropped.get("msg")
    assert "(b, a)" in dropped["diff"]["before"]
    assert dropped["diff"]["after"] == ""


def test_diff_shows_the_servers_own_definition_not_a_reprint(tdb):
    """--diff shows what pg_get_indexdef (and the report) shows, so it can be copied from (issue 16
    item 5): the casts as '::text', ANY with its space, USING btree; before and after alike."""
    where = "status IN ('pending', 'paid')"
    created = run_pg_index(tdb, diff=True, name="ix_open", table="t", columns=["a"], where=where)
    assert not created.get("failed"), created.get("msg")
    server = tdb.fetchval("SELECT pg_catalog.pg_get_indexdef('public.ix_open'::regclass)")
    assert created["diff"]["after"] == server + "\n"
    assert "(status = ANY (ARRAY['pending'::text, 'paid'::text]))" in server and "USING btree" in server

    wider = run_pg_index(tdb, diff=True, check_mode=True, name="ix_open", table="t", columns=["a", "b"], where=where,
                         on_mismatch="replace")
    assert wider["diff"]["before"] == server + "\n"
    assert wider["diff"]["after"] == server.replace("(a)", "(a, b)") + "\n"
    assert "CAST(" not in wider["diff"]["after"]


def test_diff_in_check_mode_shows_the_change_without_making_it(tdb):
    before = snapshot(tdb)

    result = run_pg_index(tdb, check_mode=True, diff=True, name="ix", table="t",
                          columns=[{"name": "a", "order": "desc"}], on_mismatch="replace")

    assert not result.get("failed"), result.get("msg")
    assert "(a)" in result["diff"]["before"]
    assert "(a DESC)" in result["diff"]["after"]
    assert snapshot(tdb) == before


def test_no_diff_key_without_diff_mode(tdb):
    result = run_pg_index(tdb, name="ix", state="absent")
    assert not result.get("failed"), result.get("msg")
    assert "diff" not in result
