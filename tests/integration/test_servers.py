"""Smoke tests for the test harness itself: every server under test is reachable, supported, and
the ``db`` fixture hands out a fresh, empty, writable database."""

from psycopg2 import sql


def test_server_is_supported(pg_server):
    # indexops relies on REINDEX CONCURRENTLY, pg_stat_progress_create_index and DROP DATABASE ... FORCE.
    assert pg_server.server_version_num >= 140000
    with pg_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT current_setting('server_version_num')::int, current_setting('is_superuser')")
        version_num, is_superuser = cur.fetchone()
    conn.close()
    assert version_num == pg_server.server_version_num
    assert is_superuser == "on"


def test_fresh_database_is_empty_and_writable(db):
    assert db.fetchval("SELECT current_database()") == db.name
    assert db.name.startswith("indexops_t_")
    user_tables = db.fetchall(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'i') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%'"
    )
    assert user_tables == []

    db.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    assert db.execute("INSERT INTO t SELECT g, g::text FROM generate_series(1, 10) g") == 10
    assert db.fetchone("SELECT count(*), max(id) FROM t") == (10, 10)
    assert db.params["db"] == db.name
    assert set(db.params) >= {"login_host", "login_port", "login_user", "db"}


def test_databases_are_isolated(db, pg_server):
    # The db fixture's database is visible from the server and named safely through sql.Identifier.
    with pg_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db.name,))
        assert cur.fetchone() == (1,)
        cur.execute(sql.SQL("SELECT has_database_privilege({}, 'CONNECT')").format(sql.Literal(db.name)))
        assert cur.fetchone() == (True,)
    conn.close()
    with db.connect(application_name="indexops/test") as other, other.cursor() as cur:
        cur.execute("SELECT current_setting('application_name')")
        assert cur.fetchone() == ("indexops/test",)
    other.close()
