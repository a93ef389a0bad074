"""pg_index state=present against real PostgreSQL: building, comparing by meaning, mismatches,
replacement, invalid indexes (ours to repair, or someone else's build in progress), schemas,
tablespaces, partitioned tables and NULLS NOT DISTINCT."""

from __future__ import annotations

import threading

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

RESULT_KEYS = {"changed", "action", "sql", "definition", "valid", "size_bytes", "duration_s", "attempts",
               "lock_wait_s"}


@pytest.fixture
def tdb(db):
    """The test database with public.t (20k rows) and s.t (same columns, 2k rows)."""
    create_table(db)
    create_table(db, schema="s", rows=2_000)
    return db


def present(db, **args):
    """pg_index state=present for index ix on public.t unless the args say otherwise."""
    return run_pg_index(db, **{"name": "ix", "table": "t", **args})


def make_invalid_unique_index(db, name="ix"):
    """Run a UNIQUE CREATE INDEX CONCURRENTLY on duplicate data by raw SQL: PostgreSQL leaves an
    invalid index behind. The duplicate row is removed afterwards so a rebuild can succeed."""
    db.execute("INSERT INTO t (id, d) VALUES (-7, 7)")
    with pytest.raises(psycopg2.errors.UniqueViolation):
        db.execute(sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON t (d)").format(sql.Identifier(name)))
    db.execute("DELETE FROM t WHERE id = -7")
    row = index_row(db, "public", name)
    assert row is not None and row["valid"] is False
    return row


# --------------------------------------------------------------------------- creating

def test_present_builds_concurrently_and_rerun_is_unchanged(tdb):
    result = present(tdb, columns=["a", {"name": "b", "order": "desc"}])

    assert not result.get("failed"), result.get("msg")
    assert RESULT_KEYS <= set(result)
    assert result["changed"] is True
    assert result["action"] == "created"
    assert len(result["sql"]) == 1
    assert result["sql"][0].startswith("CREATE INDEX CONCURRENTLY ")
    row = index_row(tdb, "public", "ix")
    assert row is not None and row["valid"] and row["ready"]
    assert row["table_name"] == "t"
    assert result["definition"] == row["definition"]
    assert "(a, b DESC)" in row["definition"]
    assert result["valid"] is True
    assert result["size_bytes"] == tdb.fetchval("SELECT pg_relation_size('public.ix')") > 0
    assert result["attempts"] == 1
    assert result["lock_wait_s"] == 0
    assert result["duration_s"] >= 0

    before = snapshot(tdb)
    again = present(tdb, columns=["a", {"name": "b", "order": "desc"}])
    assert not again.get("failed"), again.get("msg")
    assert again["changed"] is False
    assert again["action"] == "none"
    assert again["sql"] == []
    assert again["valid"] is True
    assert again["definition"] == row["definition"]
    assert snapshot(tdb) == before


# --------------------------------------------------------------------------- comparing by meaning

# (existing index DDL run by raw SQL, pg_index args that mean the same thing)
SAME_MEANING = [
    pytest.param("CREATE INDEX ix ON t (a)", {"table": "public.t", "columns": ["a"]}, id="schema-qualified-table"),
    pytest.param("CREATE INDEX ix ON public.t (a)", {"table": "t", "schema": "public", "columns": ["a"]},
                 id="schema-option"),
    pytest.param("CREATE INDEX ix ON s.t (a)", {"table": "t", "schema": "s", "columns": ["a"]},
                 id="other-schema-by-option"),
    pytest.param("CREATE INDEX ix ON s.t (a)", {"table": "s.t", "columns": ["a"]}, id="other-schema-qualified"),
    pytest.param("CREATE INDEX ix ON t (lower(email))", {"columns": [{"expression": "LOWER(email)"}]},
                 id="function-name-case"),
    pytest.param("CREATE INDEX ix ON t ((CASE WHEN a > 0 THEN 'p' ELSE 'n' END))",
                 {"columns": [{"expression": "case when A > 0 then 'p' else 'n' end"}]}, id="keyword-case"),
    pytest.param("CREATE INDEX ix ON t (a) WHERE status IS NOT NULL AND b > 0",
                 {"columns": ["a"], "where": "status is not null and B > 0"}, id="predicate-keyword-case"),
    pytest.param("CREATE INDEX ix ON t (lower(email)) WHERE status = 'open'",
                 {"columns": [{"expression": "lower(   email\n )"}], "where": "status\t  =\n   'open'  "},
                 id="whitespace"),
    pytest.param("CREATE INDEX ix ON t (lower(email)) WHERE status = 'open' AND a > 3",
                 {"columns": [{"expression": "((lower((email))))"}], "where": "((status = ('open'))) AND ((a > 3))"},
                 id="redundant-parentheses"),
    pytest.param("CREATE INDEX ix ON t (a) WHERE status = 'open'::text",
                 {"columns": ["a"], "where": "status = 'open'"}, id="implicit-cast-in-index"),
    pytest.param("CREATE INDEX ix ON t (a) WHERE status = 'open'",
                 {"columns": ["a"], "where": "status = 'open'::text"}, id="implicit-cast-in-spec"),
    pytest.param("CREATE INDEX ix ON t (a) WHERE code = 'c1'",
                 {"columns": ["a"], "where": "code::text = 'c1'::text"}, id="implicit-varchar-to-text"),
    pytest.param("CREATE INDEX ix ON t (a) WHERE created_at >= '2024-01-02 00:00:00+00'",
                 {"columns": ["a"], "where": "created_at >= '2024-01-02 00:00:00+00'::timestamptz"},
                 id="implicit-timestamptz-literal"),
    pytest.param("CREATE INDEX ix ON t (email)", {"columns": [{"name": "email", "opclass": "text_ops"}]},
                 id="default-opclass-in-spec"),
    pytest.param("CREATE INDEX ix ON t (email text_ops, a int4_ops)", {"columns": ["email", "a"]},
                 id="default-opclass-in-index"),
    pytest.param("CREATE INDEX ix ON t (email)", {"columns": [{"name": "email", "opclass": "pg_catalog.text_ops"}]},
                 id="default-opclass-qualified"),
    pytest.param("CREATE INDEX ix ON t (email)", {"columns": [{"name": "email", "collation": "default"}]},
                 id="default-collation-spelled-out"),
    pytest.param("CREATE INDEX ix ON t (a)", {"columns": [{"name": "a", "order": "asc", "nulls": "last"}]},
                 id="default-order-spelled-out"),
    pytest.param("CREATE INDEX ix ON t (a DESC NULLS FIRST)", {"columns": [{"name": "a", "order": "desc"}]},
                 id="desc-default-nulls"),
    pytest.param("CREATE INDEX ix ON t USING HASH (a)", {"columns": ["a"], "method": "hash"}, id="method-case"),
    pytest.param("CREATE INDEX ix ON t (a) WITH (FILLFACTOR = 70)",
                 {"columns": ["a"], "storage": {"fillfactor": 70}}, id="storage-int"),
    pytest.param("CREATE INDEX ix ON t (a) WITH (fillfactor = '70')",
                 {"columns": ["a"], "storage": {"fillfactor": "70"}}, id="storage-text"),
    pytest.param("CREATE INDEX ix ON t (a) INCLUDE (b, email)", {"columns": ["a"], "include": ["b", "email"]},
                 id="include"),
    pytest.param("CREATE UNIQUE INDEX ix ON t (id) WHERE a > 0", {"columns": ["id"], "unique": True, "where": "a>0"},
                 id="unique-partial"),
    pytest.param("CREATE INDEX ix ON t (a) TABLESPACE pg_default",
                 {"columns": ["a"], "tablespace": "pg_default"}, id="default-tablespace-named"),
    pytest.param("CREATE INDEX ix ON t (a)", {"columns": ["a"], "tablespace": "pg_default"},
                 id="default-tablespace-in-spec-only"),
    pytest.param("CREATE INDEX ix ON t (email COLLATE \"C\" text_pattern_ops DESC)",
                 {"columns": [{"name": "email", "collation": "C", "opclass": "text_pattern_ops", "order": "DESC"}]},
                 id="collation-opclass-order"),
]


@pytest.mark.parametrize(("existing", "args"), SAME_MEANING)
def test_same_meaning_is_unchanged(tdb, existing, args):
    tdb.execute(existing)
    before = snapshot(tdb)

    result = present(tdb, **args)

    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    assert result["action"] == "none"
    assert result["sql"] == []
    assert result["valid"] is True
    assert snapshot(tdb) == before


# (existing index DDL, pg_index args for an index that means something else, text that only one of the
# two definitions shown to the operator contains)
DIFFERENT_MEANING = [
    pytest.param("CREATE INDEX ix ON t (a, b)", {"columns": ["b", "a"]}, "(b, a)", id="column-order"),
    pytest.param("CREATE INDEX ix ON t (a)", {"columns": ["a", "b"]}, "(a, b)", id="extra-column"),
    pytest.param("CREATE INDEX ix ON t (a)", {"columns": [{"name": "a", "order": "desc"}]}, "DESC", id="desc"),
    pytest.param("CREATE INDEX ix ON t (a)", {"columns": [{"name": "a", "nulls": "first"}]}, "NULLS FIRST",
                 id="nulls-first"),
    pytest.param("CREATE INDEX ix ON t (email)", {"columns": [{"name": "email", "opclass": "text_pattern_ops"}]},
                 "text_pattern_ops", id="opclass"),
    pytest.param("CREATE INDEX ix ON t (email)", {"columns": [{"name": "email", "collation": "C"}]}, "COLLATE",
                 id="collation"),
    pytest.param("CREATE INDEX ix ON t USING hash (a)", {"columns": ["a"]}, "hash", id="method"),
    pytest.param("CREATE INDEX ix ON t (id)", {"columns": ["id"], "unique": True}, "UNIQUE", id="unique"),
    pytest.param("CREATE UNIQUE INDEX ix ON t (id)", {"columns": ["id"]}, "CREATE INDEX", id="not-unique"),
    pytest.param("CREATE INDEX ix ON t (a)", {"columns": ["a"], "include": ["b"]}, "INCLUDE", id="include-added"),
    pytest.param("CREATE INDEX ix ON t (a) INCLUDE (b)", {"columns": ["a"], "include": ["email"]}, "email",
                 id="include-changed"),
    pytest.param("CREATE INDEX ix ON t (a) WHERE status = 'open'", {"columns": ["a"], "where": "status = 'closed'"},
                 "closed", id="predicate-changed"),
    pytest.param("CREATE INDEX ix ON t (a)", {"columns": ["a"], "where": "a > 5"}, "WHERE", id="predicate-added"),
    pytest.param("CREATE INDEX ix ON t (a) WHERE a > 5", {"columns": ["a"]}, "WHERE", id="predicate-removed"),
    pytest.param("CREATE INDEX ix ON t (a)", {"columns": ["a"], "storage": {"fillfactor": 70}}, "fillfactor",
                 id="storage-added"),
    pytest.param("CREATE INDEX ix ON t (a) WITH (fillfactor = 90)",
                 {"columns": ["a"], "storage": {"fillfactor": 70}}, "70", id="storage-changed"),
    pytest.param("CREATE INDEX ix ON t (lower(email))", {"columns": ["email"]}, "lower",
                 id="expression-vs-column"),
    pytest.param("CREATE INDEX ix ON t (a) WHERE amount > 5", {"columns": ["a"], "where": "amount::int > 5"},
                 "integer", id="cast-that-changes-meaning"),
]


@pytest.mark.parametrize(("existing", "args", "marker"), DIFFERENT_MEANING)
def test_different_meaning_fails_with_before_and_after(tdb, existing, args, marker):
    tdb.execute(existing)
    before = snapshot(tdb)
    existing_definition = index_row(tdb, "public", "ix")["definition"]

    result = present(tdb, **args)

    assert result.get("failed") is True, result
    assert "different definition" in result["msg"]
    assert result["before"] and result["after"]
    assert result["before"] != result["after"]
    assert result["before"] in result["msg"] and result["after"] in result["msg"]
    assert (marker in result["before"]) != (marker in result["after"])
    assert "on_mismatch: replace" in result["msg"]
    assert snapshot(tdb) == before
    assert index_row(tdb, "public", "ix")["definition"] == existing_definition


# --------------------------------------------------------------------------- replacing

def test_mismatch_replace_swaps_definition_under_same_name(tdb):
    tdb.execute("CREATE INDEX ix ON t (a)")
    old = index_row(tdb, "public", "ix")

    result = present(tdb, columns=[{"name": "a", "order": "desc"}, "b"], on_mismatch="replace")

    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert result["action"] == "replaced"
    assert [stmt.split(" ")[:4] for stmt in result["sql"]] == [
        ["CREATE", "INDEX", "CONCURRENTLY", '"ix_indexops_new"'],
        ["DROP", "INDEX", "CONCURRENTLY", "IF"],
        ["ALTER", "INDEX", '"public"."ix_indexops_new"', "RENAME"],
    ]
    assert result["sql"][1].endswith('"public"."ix"')
    assert result["sql"][2].endswith('RENAME TO "ix"')
    new = index_row(tdb, "public", "ix")
    assert new["valid"] and new["ready"]
    assert new["oid"] != old["oid"]
    assert "(a DESC, b)" in new["definition"]
    assert result["definition"] == new["definition"]
    assert tdb.fetchval("SELECT count(*) FROM pg_class WHERE oid = %s", (old["oid"],)) == 0
    names = relation_names(tdb)
    assert not any("indexops_new" in name for name in names)
    assert {name for name in names if name.startswith("ix")} == {"ix"}

    again = present(tdb, columns=[{"name": "a", "order": "desc"}, "b"], on_mismatch="replace")
    assert (again.get("failed"), again["changed"], again["action"]) == (None, False, "none")


@pytest.mark.parametrize(("constraint_ddl", "name", "columns"), [
    pytest.param("ALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY (id)", "t_pkey", ["id", "a"], id="primary-key"),
    pytest.param("ALTER TABLE t ADD CONSTRAINT t_d_key UNIQUE (d)", "t_d_key", [{"name": "d", "order": "desc"}],
                 id="unique-constraint"),
])
def test_replace_refuses_index_backing_a_constraint(tdb, constraint_ddl, name, columns):
    tdb.execute(constraint_ddl)
    before = snapshot(tdb)

    result = present(tdb, name=name, columns=columns, unique=True, on_mismatch="replace")

    assert result.get("failed") is True, result
    assert "constraint" in result["msg"] and name in result["msg"]
    assert snapshot(tdb) == before
    assert not any("indexops_new" in name for name in relation_names(tdb))


# --------------------------------------------------------------------------- invalid index of that name

def test_invalid_index_is_repaired_with_on_invalid_rebuild(tdb):
    invalid = make_invalid_unique_index(tdb)

    result = present(tdb, columns=["d"], unique=True)

    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert result["action"] == "repaired_invalid"
    assert result["sql"][0].startswith("DROP INDEX CONCURRENTLY")
    assert result["sql"][1].startswith("CREATE UNIQUE INDEX CONCURRENTLY")
    assert result["valid"] is True
    row = index_row(tdb, "public", "ix")
    assert row["valid"] and row["ready"]
    assert row["oid"] != invalid["oid"]
    assert tdb.fetchval("SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0


def test_invalid_index_with_on_invalid_fail_is_left_alone(tdb):
    make_invalid_unique_index(tdb)
    before = snapshot(tdb)

    result = present(tdb, columns=["d"], unique=True, on_invalid="fail")

    assert result.get("failed") is True, result
    assert "INVALID" in result["msg"]
    assert "on_invalid: rebuild" in result["msg"] and "state: absent" in result["msg"]
    assert snapshot(tdb) == before
    assert index_row(tdb, "public", "ix")["valid"] is False


@pytest.fixture
def build_in_progress(tdb):
    """A raw-SQL CREATE INDEX CONCURRENTLY of public.ix on t (a), held in 'waiting for writers
    before build' by an open write transaction; yields (blocker, build, progress row)."""
    blocker = Blocker(tdb)
    build = Background(tdb, "CREATE INDEX CONCURRENTLY ix ON t (a)", application_name="other-builder")
    try:
        row = wait_until(lambda: build_waiting(tdb, build.pid), what="the CIC to wait for writers before build")
        assert row["index_relid"] == index_row(tdb, "public", "ix")["oid"]
        yield blocker, build, row
    finally:
        blocker.release()
        build.close(tdb)


def test_index_another_session_is_building_is_never_dropped(tdb, build_in_progress):
    blocker, build, row = build_in_progress
    building = index_row(tdb, "public", "ix")
    assert building["valid"] is False
    before = snapshot(tdb)

    result = present(tdb, columns=["a"])

    assert result.get("failed") is True, result
    assert f"pid {build.pid}" in result["msg"]
    assert "waiting for writers before build" in result["msg"]
    assert "being built by another session" in result["msg"]
    # The index and the build are untouched: same catalog, the same session still building it.
    assert snapshot(tdb) == before
    assert build.thread.is_alive()
    assert [(r["pid"], r["index_relid"]) for r in progress(tdb)] == [(build.pid, building["oid"])]

    blocker.release()
    build.join()
    assert build.error is None
    assert index_row(tdb, "public", "ix")["valid"] is True


def test_wait_true_waits_for_the_other_build_and_changes_nothing(tdb, build_in_progress):
    blocker, build, _row = build_in_progress
    building_oid = index_row(tdb, "public", "ix")["oid"]
    outcome = {}

    def run():
        outcome["result"] = present(tdb, columns=["a"], wait=True, wait_timeout=120)

    waiter = threading.Thread(target=run, daemon=True)
    waiter.start()
    try:
        # pg_index has looked at the build at least once and keeps waiting instead of failing.
        wait_until(lambda: tdb.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'indexops/ix' "
            "AND query LIKE '%%pg_stat_progress_create_index%%' AND datname = current_database()"),
            what="pg_index to poll the other build")
        assert waiter.is_alive() and "result" not in outcome
        assert index_row(tdb, "public", "ix")["oid"] == building_oid
    finally:
        blocker.release()
        waiter.join(60)
    assert not waiter.is_alive()
    build.join()
    assert build.error is None

    result = outcome["result"]
    assert not result.get("failed"), result.get("msg")
    # The other session built exactly the wanted index; pg_index ran no DDL of its own.
    assert result["changed"] is False
    assert result["action"] == "none"
    assert result["sql"] == []
    assert result["valid"] is True
    row = index_row(tdb, "public", "ix")
    assert row["valid"] and row["oid"] == building_oid


# --------------------------------------------------------------------------- schemas

def test_same_index_name_in_two_schemas_is_handled_independently(tdb):
    tdb.execute("CREATE SCHEMA a; CREATE SCHEMA b")
    tdb.execute("CREATE TABLE a.t (x int, y int); CREATE TABLE b.t (x int, y int)")
    tdb.execute("INSERT INTO a.t SELECT g, g FROM generate_series(1, 1000) g")
    tdb.execute("INSERT INTO b.t SELECT g, g FROM generate_series(1, 1000) g")
    tdb.execute("CREATE INDEX ix ON b.t (x)")
    b_before = [row for row in snapshot(tdb) if row[0] == "b"]

    # (schema given as an option: a schema-qualified table outside public is tested in SAME_MEANING)
    created = run_pg_index(tdb, name="ix", schema="a", table="t", columns=["y"])
    assert not created.get("failed"), created.get("msg")
    assert (created["changed"], created["action"]) == (True, "created")
    assert '"a"."t"' in created["sql"][0]
    assert "(y)" in index_row(tdb, "a", "ix")["definition"]

    replaced = run_pg_index(tdb, name="ix", schema="a", table="t", columns=["x", "y"], on_mismatch="replace")
    assert not replaced.get("failed"), replaced.get("msg")
    assert replaced["action"] == "replaced"
    assert "(x, y)" in index_row(tdb, "a", "ix")["definition"]

    unchanged_b = run_pg_index(tdb, name="ix", schema="b", table="t", columns=["x"])
    assert (unchanged_b.get("failed"), unchanged_b["changed"]) == (None, False)

    dropped = run_pg_index(tdb, name="ix", schema="a", state="absent")
    assert not dropped.get("failed"), dropped.get("msg")
    assert dropped["action"] == "dropped"
    assert index_row(tdb, "a", "ix") is None
    assert [row for row in snapshot(tdb) if row[0] == "b"] == b_before


# --------------------------------------------------------------------------- tablespaces

@pytest.fixture
def tablespace(tdb):
    """A tablespace of the server's own (in-place, under pg_tblspc) so no directory owned by the
    server's OS user is needed; the developer setting allow_in_place_tablespaces is superuser-only."""
    name = f"ts_{tdb.name}"
    conn = tdb.server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET allow_in_place_tablespaces = on")
            cur.execute(sql.SQL("CREATE TABLESPACE {} LOCATION ''").format(sql.Identifier(name)))
        yield name
    finally:
        tdb.execute("DROP SCHEMA public CASCADE")  # empties the tablespace before it is dropped
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP TABLESPACE IF EXISTS {}").format(sql.Identifier(name)))
        conn.close()


def test_tablespace_is_created_and_compared(tdb, tablespace):
    result = present(tdb, columns=["a"], tablespace=tablespace)
    assert not result.get("failed"), result.get("msg")
    assert result["action"] == "created"
    assert index_row(tdb, "public", "ix")["tablespace"] == tablespace

    again = present(tdb, columns=["a"], tablespace=tablespace)
    assert (again.get("failed"), again["changed"], again["action"]) == (None, False, "none")


TABLESPACE_CASES = pytest.mark.parametrize(("existing_in_tablespace", "spec_in_tablespace"), [
    pytest.param(False, True, id="default-to-named"),
    pytest.param(True, False, id="named-to-default"),
])


def index_in(tdb, tablespace, existing_in_tablespace, spec_in_tablespace):
    """Create ix on t (a) in the named or the default tablespace; return the pg_index args of the other."""
    ddl = sql.SQL("CREATE INDEX ix ON t (a)")
    if existing_in_tablespace:
        ddl = sql.SQL("{} TABLESPACE {}").format(ddl, sql.Identifier(tablespace))
    tdb.execute(ddl)
    return {"columns": ["a"], **({"tablespace": tablespace} if spec_in_tablespace else {})}


@TABLESPACE_CASES
def test_tablespace_difference_is_a_mismatch(tdb, tablespace, existing_in_tablespace, spec_in_tablespace):
    args = index_in(tdb, tablespace, existing_in_tablespace, spec_in_tablespace)
    before = snapshot(tdb)

    result = present(tdb, **args)

    assert result.get("failed") is True, result
    assert "different definition" in result["msg"]
    assert snapshot(tdb) == before


@TABLESPACE_CASES
def test_tablespace_mismatch_message_shows_the_difference(tdb, tablespace, existing_in_tablespace,
                                                          spec_in_tablespace):
    args = index_in(tdb, tablespace, existing_in_tablespace, spec_in_tablespace)

    result = present(tdb, **args)

    assert result.get("failed") is True, result
    # An operator reading the failure must see what differs: the before/after it shows must not be
    # the same text, and the tablespace involved must be named.
    assert result["before"] != result["after"], result["msg"]
    assert tablespace in result["msg"]


@TABLESPACE_CASES
def test_tablespace_mismatch_replace_moves_the_index(tdb, tablespace, existing_in_tablespace, spec_in_tablespace):
    args = index_in(tdb, tablespace, existing_in_tablespace, spec_in_tablespace)

    result = present(tdb, on_mismatch="replace", **args)

    assert not result.get("failed"), result.get("msg")
    assert result["action"] == "replaced"
    row = index_row(tdb, "public", "ix")
    assert row["valid"]
    assert row["tablespace"] == (tablespace if spec_in_tablespace else "")
    again = present(tdb, **args)
    assert (again.get("failed"), again["changed"], again["action"]) == (None, False, "none")


# --------------------------------------------------------------------------- missing objects

@pytest.mark.parametrize(("args", "missing"), [
    pytest.param({"table": "nosuch", "columns": ["a"]}, "public.nosuch", id="table"),
    pytest.param({"table": "t", "schema": "nosuch", "columns": ["a"]}, "nosuch.t", id="schema"),
    pytest.param({"columns": ["a", "nosuch_col"]}, "nosuch_col", id="column"),
    pytest.param({"columns": [{"expression": "lower(nosuch_col)"}]}, "nosuch_col", id="expression-column"),
    pytest.param({"columns": ["a"], "include": ["nosuch_col"]}, "nosuch_col", id="include-column"),
    pytest.param({"columns": ["a"], "where": "nosuch_col > 1"}, "nosuch_col", id="where-column"),
])
def test_missing_table_or_column_is_named_and_nothing_changes(tdb, args, missing):
    before = snapshot(tdb)

    result = present(tdb, **args)

    assert result.get("failed") is True, result
    assert missing in result["msg"]
    assert "does not exist" in result["msg"]
    assert snapshot(tdb) == before


# --------------------------------------------------------------------------- partitioned tables

@pytest.fixture
def partitioned(tdb):
    tdb.execute("CREATE TABLE p (id int, a int) PARTITION BY RANGE (id)")
    tdb.execute("CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (1000)")
    tdb.execute("CREATE TABLE p2 PARTITION OF p FOR VALUES FROM (1000) TO (2000)")
    tdb.execute("INSERT INTO p SELECT g, g % 10 FROM generate_series(0, 1999) g")
    return tdb


def test_partitioned_table_is_built_concurrently_per_partition(partitioned):
    """The default (concurrently) builds ON ONLY, then each partition concurrently, then attaches;
    test_pg_index_partitioned.py covers it under load, interrupted, and for every state."""
    result = run_pg_index(partitioned, name="p_a_idx", table="p", columns=["a"])

    assert not result.get("failed"), result.get("msg")
    assert result["sql"][0] == 'CREATE INDEX "p_a_idx" ON ONLY "public"."p" USING "btree" ("a")'
    assert [statement.split(" ON ")[0] for statement in result["sql"][1::2]] == [
        'CREATE INDEX CONCURRENTLY "p_a_idx_p1"', 'CREATE INDEX CONCURRENTLY "p_a_idx_p2"']
    assert index_row(partitioned, "public", "p_a_idx")["valid"] is True


def test_partitioned_table_builds_without_concurrently(partitioned):
    result = run_pg_index(partitioned, name="p_a_idx", table="p", columns=["a"], concurrently=False)

    assert not result.get("failed"), result.get("msg")
    assert result["action"] == "created"
    assert result["sql"][0].startswith("CREATE INDEX ") and "CONCURRENTLY" not in result["sql"][0]
    parent = index_row(partitioned, "public", "p_a_idx")
    assert parent["relkind"] == "I" and parent["valid"]
    # Every partition got its own attached, valid index.
    assert partitioned.fetchval(
        "SELECT count(*) FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid "
        "WHERE i.inhparent = 'public.p_a_idx'::regclass AND x.indisvalid") == 2

    again = run_pg_index(partitioned, name="p_a_idx", table="p", columns=["a"], concurrently=False)
    assert (again.get("failed"), again["changed"], again["action"]) == (None, False, "none")


# --------------------------------------------------------------------------- NULLS NOT DISTINCT

def test_nulls_not_distinct(tdb):
    tdb.execute("CREATE TABLE n (k int)")
    tdb.execute("INSERT INTO n VALUES (1), (NULL)")

    result = run_pg_index(tdb, name="n_k_key", table="n", columns=["k"], unique=True, nulls_not_distinct=True)
    if tdb.server_version_num < 150000:  # PostgreSQL 14 has no NULLS NOT DISTINCT: refused, nothing built
        assert result.get("failed") is True
        assert "nulls_not_distinct needs PostgreSQL 15 or newer" in result["msg"], result["msg"]
        assert index_row(tdb, "public", "n_k_key") is None
        return

    assert not result.get("failed"), result.get("msg")
    assert result["action"] == "created"
    assert "NULLS NOT DISTINCT" in result["sql"][0]
    row = index_row(tdb, "public", "n_k_key")
    assert row["valid"] and "NULLS NOT DISTINCT" in row["definition"]
    with pytest.raises(psycopg2.errors.UniqueViolation):
        tdb.execute("INSERT INTO n VALUES (NULL)")

    again = run_pg_index(tdb, name="n_k_key", table="n", columns=["k"], unique=True, nulls_not_distinct=True)
    assert (again.get("failed"), again["changed"], again["action"]) == (None, False, "none")

    # The same columns without NULLS NOT DISTINCT mean something else.
    before = snapshot(tdb)
    distinct = run_pg_index(tdb, name="n_k_key", table="n", columns=["k"], unique=True)
    assert distinct.get("failed") is True and "different definition" in distinct["msg"]
    assert snapshot(tdb) == before
