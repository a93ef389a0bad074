"""Catalog snapshots and concurrent-session helpers for the pg_index integration tests.

Everything here reads the real catalogs of the test database (``db`` fixture) or drives real
PostgreSQL sessions on their own connections; nothing is mocked.

- ``snapshot(db)``: every relation of the test database's own schemas (tables, indexes including
  invalid ones, sequences, constraints) with the facts a change would touch: OID, relfilenode,
  tablespace, valid/ready/live flags and ``pg_get_indexdef``. Equal snapshots before and after a
  run mean the run changed nothing in the catalog.
- ``index_row(db, schema, name)``: one index's catalog facts, or None.
- ``wait_until(...)``: poll with a generous deadline instead of sleeping.
- ``Blocker``: a session that holds an open write transaction on a table (ROW EXCLUSIVE), which
  makes CREATE INDEX CONCURRENTLY / REINDEX CONCURRENTLY wait in "waiting for writers before build".
- ``Background``: one SQL statement run on its own connection in a thread (pid known, error kept).
"""

from __future__ import annotations

import contextlib
import threading
import time

import psycopg2
from psycopg2 import sql

DEADLINE_S = 30.0

# Every relation in the database's own schemas; temp schemas (the module's shadow table) and
# system schemas are left out. Ordered so two snapshots compare as lists.
SNAPSHOT = """
SELECT n.nspname, c.relname, c.relkind, c.oid::bigint, c.relfilenode::bigint,
       COALESCE(ts.spcname, '') AS tablespace,
       i.indisvalid, i.indisready, i.indislive, i.indisunique, i.indisprimary, i.indrelid::bigint,
       CASE WHEN c.relkind IN ('i', 'I') THEN pg_catalog.pg_get_indexdef(c.oid) END AS definition,
       (SELECT array_agg(con.conname::text || ':' || con.contype::text || ':' || con.conindid::bigint
                         ORDER BY con.conname)
          FROM pg_catalog.pg_constraint con WHERE con.conrelid = c.oid) AS constraints
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = c.reltablespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
ORDER BY n.nspname, c.relname
"""

INDEX_ROW = """
SELECT c.oid::bigint AS oid, c.relfilenode::bigint AS relfilenode, c.relkind,
       i.indisvalid AS valid, i.indisready AS ready, i.indislive AS live,
       pg_catalog.pg_get_indexdef(c.oid) AS definition,
       t.relname AS table_name, COALESCE(ts.spcname, '') AS tablespace
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = c.reltablespace
WHERE n.nspname = %s AND c.relname = %s
"""

PROGRESS = """
SELECT p.pid, p.command, p.phase, p.index_relid::bigint AS index_relid, p.relid::bigint AS relid
FROM pg_catalog.pg_stat_progress_create_index p
WHERE p.datid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
"""


def snapshot(db) -> list[tuple]:
    """All relations of the test database's schemas, with the index facts a DDL would change."""
    return db.fetchall(SNAPSHOT)


def relation_names(db, schema="public") -> set[str]:
    return {row[1] for row in snapshot(db) if row[0] == schema}


def index_row(db, schema, name) -> dict | None:
    """Catalog facts of index ``schema.name`` (valid, ready, oid, definition, ...), or None."""
    with db._cursor() as cur:
        cur.execute(INDEX_ROW, (schema, name))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([col.name for col in cur.description], row, strict=True))


def progress(db) -> list[dict]:
    """Rows of pg_stat_progress_create_index for this database."""
    with db._cursor() as cur:
        cur.execute(PROGRESS)
        return [dict(zip([col.name for col in cur.description], row, strict=True)) for row in cur.fetchall()]


def wait_until(probe, what, timeout=DEADLINE_S, interval=0.05):
    """Call ``probe`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def create_table(db, schema="public", table="t", rows=20_000):
    """A small table with columns of several types; ``id`` is unique, ``d`` has no duplicates."""
    ident = sql.Identifier(schema, table)
    if schema != "public":
        db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    db.execute(sql.SQL(
        "CREATE TABLE {} (id bigint NOT NULL, a int, b int, d int, email text, status text, "
        "code varchar(10), created_at timestamptz, amount numeric)").format(ident))
    db.execute(sql.SQL(
        "INSERT INTO {} SELECT g, g %% 97, g %% 13, g, 'user' || g || '@Example.com', "
        "(ARRAY['open', 'closed', 'pending'])[1 + g %% 3], 'c' || (g %% 50), "
        "timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute', g * 1.5 "
        "FROM generate_series(1, %s) g").format(ident), (rows,))
    db.execute(sql.SQL("ANALYZE {}").format(ident))


class Blocker:
    """An open transaction on a table, held until ``release()``.

    ``write`` (default) inserts one row and so holds ROW EXCLUSIVE: a concurrent index build on the
    table waits in 'waiting for writers before build'. ``read`` holds only ACCESS SHARE in READ
    COMMITTED (no snapshot while idle): builds run through, but REINDEX CONCURRENTLY then waits in
    'waiting for readers before marking dead'.
    """

    def __init__(self, db, schema="public", table="t", mode="write"):
        self.conn = db.connect(autocommit=False, application_name=f"test-{mode}-blocker")
        target = sql.Identifier(schema, table)
        with self.conn.cursor() as cur:
            if mode == "write":
                cur.execute(sql.SQL("INSERT INTO {} (id, a) VALUES (-1, -1)").format(target))
            else:
                cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(target))
            cur.execute("SELECT pg_backend_pid()")
            self.pid = cur.fetchone()[0]

    def release(self):
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()


class Background:
    """Run one statement on its own autocommit connection in a thread; keeps the error if any."""

    def __init__(self, db, statement, application_name="test-background"):
        self.conn = db.connect(application_name=application_name)
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            self.pid = cur.fetchone()[0]
        self.statement = statement
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            with self.conn.cursor() as cur:
                cur.execute(self.statement)
        except psycopg2.Error as exc:
            self.error = exc

    def join(self, timeout=DEADLINE_S):
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"background statement still running after {timeout:.0f}s: {self.statement}")

    def finish(self, db, timeout=DEADLINE_S):
        """Let the statement end on its own (up to ``timeout``), then close the session."""
        self.thread.join(timeout)
        self.close(db)

    def close(self, db):
        """Stop the statement if it still runs (cancel its backend), wait for the thread, close."""
        if self.thread.is_alive():
            db.execute("SELECT pg_cancel_backend(%s)", (self.pid,))
            self.thread.join(DEADLINE_S)
        with contextlib.suppress(psycopg2.Error):
            self.conn.close()


def build_waiting(db, pid, command="CREATE INDEX CONCURRENTLY"):
    """The progress row of a build by ``pid`` that waits for writers before build (or None)."""
    for row in progress(db):
        if row["pid"] == pid and row["command"] == command and row["phase"] == "waiting for writers before build" \
                and row["index_relid"]:
            return row
    return None
