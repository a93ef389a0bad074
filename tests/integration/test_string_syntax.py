"""Fragments stay one literal even where the server would read backslashes as escapes.

pglast prints string constants in standard syntax ('\\' is one backslash). A role or database
with standard_conforming_strings=off would read the same text with backslash escapes, letting
a quote "escape" and the rest of the literal run as SQL. pg_index pins the setting on for its
own sessions; these tests set it off for the database and try to break out.
"""

from __future__ import annotations

from psycopg2 import sql

from tests.pg_index_runner import run_pg_index

BREAKOUT = "note = '\\' OR note = ') IS NOT NULL; DROP TABLE canary; --'"


def prepare(db):
    db.execute("CREATE TABLE t (id int, note text)")
    db.execute("INSERT INTO t SELECT g, 'n' || g FROM generate_series(1, 100) g")
    db.execute("CREATE TABLE canary (id int)")
    db.execute("INSERT INTO canary VALUES (1), (2)")
    db.execute(sql.SQL("ALTER DATABASE {} SET standard_conforming_strings = off").format(sql.Identifier(db.name)))


def test_backslash_in_where_stays_inside_its_literal(db):
    prepare(db)
    result = run_pg_index(db, name="t_note_idx", table="t", columns=["id"], where=BREAKOUT)
    assert not result.get("failed"), result.get("msg")
    assert db.fetchval("SELECT count(*) FROM canary") == 2
    definition = db.fetchval("SELECT pg_get_indexdef('t_note_idx'::regclass)")
    # The whole breakout text is one string constant of the predicate, backslash included.
    assert "DROP TABLE canary" in definition and "\\" in definition


def test_backslash_in_plan_query_is_only_planned(db):
    prepare(db)
    query = "SELECT id FROM t WHERE note = '\\' OR note = '; DROP TABLE canary; --'"
    result = run_pg_index(db, name="t_id_idx", table="t", columns=["id"], expected={"plan_uses_index": query})
    assert "expectations" in result.get("result", result), result
    assert db.fetchval("SELECT count(*) FROM canary") == 2
