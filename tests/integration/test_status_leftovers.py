"""pg_index_status (leftovers and named indexes) against a real PostgreSQL.

Leftovers are produced for real with raw SQL: a failed CREATE UNIQUE INDEX CONCURRENTLY (kind
invalid), a cancelled REINDEX CONCURRENTLY before and after its swap (kinds ccnew and ccold), and
a build held waiting by an open transaction (being built). The module also runs as a role that
has nothing but pg_monitor, and as one without it, to show what each can see.
"""

from __future__ import annotations

import contextlib

import psycopg2
import pytest
from psycopg2 import sql

from scripts.sandbox import free_port
from tests.integration.helpers_catalog import Background, Blocker, build_waiting, create_table, progress, snapshot
from tests.integration.helpers_catalog import wait_until as wait_for
from tests.integration.helpers_roles import Roles
from tests.pg_index_runner import run_module

LEFTOVER_KEYS = {"schema", "name", "table", "leftover_type", "kind", "valid", "being_built", "build", "size_bytes",
                 "definition"}
INDEX_KEYS = {"schema", "name", "exists", "valid", "ready", "definition", "size_bytes", "building"}


@pytest.fixture
def tdb(db):
    create_table(db)
    return db


@pytest.fixture
def make_role(db):
    with Roles(db) as roles:
        yield roles.make


def status(db, params=None, check_mode=False, **args):
    result = run_module("pg_index_status", {**(params or db.params), **args}, check_mode=check_mode)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    return result


def by_name(items):
    return {item["name"]: item for item in items}


def failed_unique_build(db, name="t_b_uq"):
    """A raw-SQL CREATE UNIQUE INDEX CONCURRENTLY on a column with duplicates: PostgreSQL leaves
    the index behind, invalid."""
    with pytest.raises(psycopg2.errors.UniqueViolation):
        db.execute(sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON t (b)").format(sql.Identifier(name)))


@contextlib.contextmanager
def held_build(db, statement, phase="waiting for writers before build", command="CREATE INDEX CONCURRENTLY"):
    """``statement`` running in the background, held in ``phase`` by an open write transaction."""
    blocker = Blocker(db)
    background = Background(db, statement, application_name="test/held-build")
    try:
        wait_for(lambda: build_waiting(db, background.pid, command=command), what=f"{command} to wait in {phase}")
        yield background, blocker
    finally:
        blocker.release()
        with contextlib.suppress(AssertionError):
            background.join()  # let the build finish once released, rather than cancel it
        background.close(db)


def reindex_in_phase(db, background, phase):
    return any(row["pid"] == background.pid and row["command"] == "REINDEX CONCURRENTLY" and row["phase"] == phase
               for row in progress(db))


def cancel(db, background):
    db.execute("SELECT pg_cancel_backend(%s)", (background.pid,))
    background.join()
    assert isinstance(background.error, psycopg2.errors.QueryCanceled), background.error


# --------------------------------------------------------------------------- leftovers

def test_failed_concurrent_build_is_an_invalid_leftover_nobody_builds(tdb):
    tdb.execute("CREATE INDEX t_a_idx ON t (a)")
    failed_unique_build(tdb)
    before = snapshot(tdb)

    result = status(tdb)

    assert result["database"] == tdb.name
    assert result["progress_visible"] is True
    assert result["indexes"] == []
    assert len(result["leftovers"]) == 1  # the valid t_a_idx is not a leftover
    leftover = result["leftovers"][0]
    assert LEFTOVER_KEYS <= set(leftover)
    assert leftover == {
        "schema": "public", "name": "t_b_uq", "table": "t", "leftover_type": "invalid", "kind": "invalid",
        "valid": False, "ready": False, "being_built": False, "build": None,
        "size_bytes": tdb.fetchval("SELECT pg_relation_size('public.t_b_uq')"),
        "definition": "CREATE UNIQUE INDEX t_b_uq ON public.t USING btree (b)",
    }
    # Read-only: nothing in the catalog moved, no ledger schema appeared.
    assert snapshot(tdb) == before
    assert tdb.fetchval("SELECT to_regnamespace('indexops') IS NULL") is True

    assert status(tdb, check_mode=True)["leftovers"] == result["leftovers"]
    assert status(tdb, leftovers=False)["leftovers"] == []


def test_build_held_by_an_open_transaction_is_being_built(tdb):
    with held_build(tdb, "CREATE INDEX CONCURRENTLY t_a_idx ON t (a)") as (background, blocker):
        result = status(tdb, indexes=[{"name": "t_a_idx"}])

        leftover = by_name(result["leftovers"])["t_a_idx"]
        assert leftover["leftover_type"] == "invalid"
        assert leftover["valid"] is False
        assert leftover["being_built"] is True
        build = leftover["build"]
        assert build["pid"] == background.pid
        assert build["command"] == "CREATE INDEX CONCURRENTLY"
        assert build["phase"] == "waiting for writers before build"
        assert 0 <= build["percent"] <= 3
        assert build["waiting_for_pid"] == blocker.pid
        assert build["application_name"] == "test/held-build"
        assert build["details_visible"] is True
        assert build["elapsed_s"] >= 0
        index = result["indexes"][0]
        assert INDEX_KEYS <= set(index)
        assert (index["exists"], index["valid"], index["building"]) == (True, False, True)
        assert index["build"]["pid"] == background.pid

        blocker.release()
        background.join()
        assert background.error is None

    after = status(tdb, indexes=[{"name": "t_a_idx"}])
    assert after["leftovers"] == []
    index = after["indexes"][0]
    assert (index["exists"], index["valid"], index["ready"], index["building"], index["build"]) == (
        True, True, True, False, None)
    assert index["definition"] == "CREATE INDEX t_a_idx ON public.t USING btree (a)"


def test_cancelled_reindex_concurrently_leaves_ccnew(tdb):
    tdb.execute("CREATE INDEX t_a_idx ON t (a)")
    with held_build(tdb, "REINDEX INDEX CONCURRENTLY t_a_idx", command="REINDEX CONCURRENTLY") as (background, _):
        during = status(tdb)
        # The progress view names t_a_idx, not t_a_idx_ccnew: the REINDEX on the table is what counts.
        ccnew = by_name(during["leftovers"])["t_a_idx_ccnew"]
        assert (ccnew["leftover_type"], ccnew["being_built"]) == ("ccnew", True)
        assert ccnew["build"]["pid"] == background.pid
        assert ccnew["build"]["command"] == "REINDEX CONCURRENTLY"

        cancel(tdb, background)

    result = status(tdb, indexes=[{"name": "t_a_idx"}])

    leftover = by_name(result["leftovers"])["t_a_idx_ccnew"]
    assert leftover["leftover_type"] == "ccnew"
    assert (leftover["valid"], leftover["being_built"], leftover["build"]) == (False, False, None)
    assert leftover["table"] == "t"
    assert leftover["definition"] == "CREATE INDEX t_a_idx_ccnew ON public.t USING btree (a)"
    assert [item["name"] for item in result["leftovers"]] == ["t_a_idx_ccnew"]
    assert (result["indexes"][0]["valid"], result["indexes"][0]["building"]) == (True, False)


def test_reindex_cancelled_after_the_swap_leaves_ccold(tdb):
    """A reader's open transaction (a lock, no snapshot) holds REINDEX CONCURRENTLY after it swapped
    the indexes, in 'waiting for readers before marking dead'; cancelled there, it leaves _ccold."""
    tdb.execute("CREATE INDEX t_a_idx ON t (a)")
    reader = tdb.connect(autocommit=False, application_name="test/reader")
    background = None
    try:
        with reader.cursor() as cur:
            cur.execute("SELECT count(*) FROM t WHERE id = 1")
        background = Background(tdb, "REINDEX INDEX CONCURRENTLY t_a_idx")
        wait_for(lambda: reindex_in_phase(tdb, background, "waiting for readers before marking dead"),
                 what="REINDEX CONCURRENTLY to wait for readers before marking dead")
        during = status(tdb)
        assert by_name(during["leftovers"])["t_a_idx_ccold"]["being_built"] is True
        cancel(tdb, background)
    finally:
        reader.rollback()
        reader.close()
        if background is not None:
            background.close(tdb)

    result = status(tdb, indexes=[{"name": "t_a_idx"}])

    leftover = by_name(result["leftovers"])["t_a_idx_ccold"]
    assert (leftover["leftover_type"], leftover["valid"], leftover["being_built"]) == ("ccold", False, False)
    assert result["indexes"][0]["valid"] is True


# --------------------------------------------------------------------------- named indexes

def test_named_indexes_report_exists_valid_and_definition(tdb):
    tdb.execute("CREATE SCHEMA s")
    tdb.execute("CREATE TABLE s.u (x int)")
    tdb.execute("CREATE INDEX u_x_idx ON s.u (x DESC)")
    tdb.execute("CREATE INDEX t_lower_email_idx ON t (lower(email)) WHERE status = 'open'")
    failed_unique_build(tdb)

    result = status(tdb, leftovers=False, indexes=[
        {"name": "t_lower_email_idx"}, {"name": "s.u_x_idx"}, {"name": "u_x_idx", "schema": "s"},
        {"name": "no_such_idx"}, {"name": "t_b_uq"}, {"name": "t"}, {"name": "u_x_idx"}])

    assert result["leftovers"] == []
    assert [(i["schema"], i["name"]) for i in result["indexes"]] == [
        ("public", "t_lower_email_idx"), ("s", "u_x_idx"), ("s", "u_x_idx"), ("public", "no_such_idx"),
        ("public", "t_b_uq"), ("public", "t"), ("public", "u_x_idx")]
    email, qualified, with_schema, missing, invalid, table, wrong_schema = result["indexes"]
    assert (email["exists"], email["valid"], email["ready"], email["building"], email["table"]) == (
        True, True, True, False, "t")
    assert email["definition"] == ("CREATE INDEX t_lower_email_idx ON public.t USING btree (lower(email)) "
                                   "WHERE (status = 'open'::text)")
    assert email["size_bytes"] == tdb.fetchval("SELECT pg_relation_size('public.t_lower_email_idx')") > 0
    assert qualified == with_schema
    assert qualified["definition"] == "CREATE INDEX u_x_idx ON s.u USING btree (x DESC)"
    for absent in (missing, table, wrong_schema):  # a table of that name is not an index
        assert (absent["exists"], absent["valid"], absent["definition"], absent["size_bytes"]) == (False, False, "", 0)
    assert (invalid["exists"], invalid["valid"], invalid["building"]) == (True, False, False)


@pytest.mark.parametrize(("indexes", "message"), [
    ([{"name": "s.u_x_idx", "schema": "public"}], "names schema 's' but schema is 'public'"),
    ([{"name": "x'; DROP TABLE t; --"}], "contains characters that are not allowed"),
    ([{"name": "a.b.c"}], "has more than one dot"),
])
def test_bad_index_names_are_refused(tdb, indexes, message):
    result = run_module("pg_index_status", {**tdb.params, "indexes": indexes})

    assert result["failed"] is True
    assert message in result["msg"]
    assert tdb.fetchval("SELECT count(*) FROM t") == 20_000


# --------------------------------------------------------------------------- who may read

def test_a_pg_monitor_role_sees_everything(tdb, make_role):
    role, params = make_role("GRANT pg_monitor TO {role}")
    # It holds nothing on the test objects: what it sees comes from pg_monitor alone.
    assert tdb.fetchval("SELECT has_table_privilege(%s, 'public.t', 'SELECT')", (role,)) is False
    tdb.execute("CREATE INDEX t_a_idx ON t (a)")
    failed_unique_build(tdb)
    before = snapshot(tdb)

    with held_build(tdb, "CREATE INDEX CONCURRENTLY t_d_idx ON t (d)") as (background, _):
        result = status(tdb, params, indexes=[{"name": "t_a_idx"}, {"name": "t_d_idx"}])

    assert result["progress_visible"] is True
    leftovers = by_name(result["leftovers"])
    assert set(leftovers) == {"t_b_uq", "t_d_idx"}
    assert (leftovers["t_b_uq"]["leftover_type"], leftovers["t_b_uq"]["being_built"]) == ("invalid", False)
    assert leftovers["t_b_uq"]["definition"] == "CREATE UNIQUE INDEX t_b_uq ON public.t USING btree (b)"
    held = leftovers["t_d_idx"]
    assert held["being_built"] is True
    assert (held["build"]["pid"], held["build"]["phase"]) == (background.pid, "waiting for writers before build")
    assert held["build"]["details_visible"] is True
    named = by_name(result["indexes"])
    assert (named["t_a_idx"]["exists"], named["t_a_idx"]["valid"]) == (True, True)
    assert named["t_a_idx"]["definition"] == "CREATE INDEX t_a_idx ON public.t USING btree (a)"
    assert named["t_a_idx"]["size_bytes"] > 0
    assert named["t_d_idx"]["building"] is True
    # t_d_idx was built meanwhile (the held build finished once released); nothing else moved.
    assert by_name(status(tdb, params, indexes=[{"name": "t_d_idx"}])["indexes"])["t_d_idx"]["valid"] is True
    assert [row for row in snapshot(tdb) if row[1] != "t_d_idx"] == [row for row in before if row[1] != "t_d_idx"]


def test_a_role_that_cannot_see_other_builds_assumes_invalid_indexes_are_being_built(tdb, make_role):
    """Without pg_read_all_stats the progress rows of other roles hide which index they build.
    Status then errs on the safe side (the cleanup must never drop an index someone builds)."""
    _, params = make_role()
    failed_unique_build(tdb)

    with held_build(tdb, "CREATE INDEX CONCURRENTLY t_d_idx ON t (d)") as (background, _):
        during = status(tdb, params)

    after = status(tdb, params)

    assert during["progress_visible"] is False
    leftovers = by_name(during["leftovers"])
    assert set(leftovers) == {"t_b_uq", "t_d_idx"}
    for leftover in leftovers.values():
        assert leftover["being_built"] is True
        assert leftover["build"]["pid"] == background.pid
        assert leftover["build"]["details_visible"] is False
        assert leftover["build"]["phase"] is None and leftover["build"]["percent"] is None
    assert [(item["name"], item["being_built"]) for item in after["leftovers"]] == [("t_b_uq", False)]


def test_unreachable_server_fails_with_a_clear_message(tdb):
    result = run_module("pg_index_status", {**tdb.params, "login_port": free_port()})

    assert result["failed"] is True
    assert result["changed"] is False
    assert result["msg"].startswith("could not connect to PostgreSQL: ")
    assert result["retry_safe"] is True
