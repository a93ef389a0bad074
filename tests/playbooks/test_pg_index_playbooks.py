"""pg_index end to end: the real ansible-playbook (see conftest.py) against a real PostgreSQL.

Each test asserts on the catalog, not only on what Ansible printed: the structured results come
from the playbooks' registered variables, the human output from the default callback.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid

import pytest
from psycopg2 import sql

from tests.playbooks.conftest import DEFAULT_CALLBACK

pytestmark = pytest.mark.playbook

TASK_PRESENT = "Make the index match its spec"
TASK_ABSENT = "Drop the index concurrently"
TASK_REBUILT = "Rebuild the index concurrently"


# --------------------------------------------------------------------------- database helpers

def make_table(db, rows=5000, duplicate_email=None):
    """public.t with ``rows`` rows; ``duplicate_email`` is written to two rows when given."""
    db.execute("CREATE TABLE public.t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
               "a int NOT NULL, b int, email text)")
    db.execute("INSERT INTO public.t (a, b, email) SELECT mod(g, 1000), mod(g, 97), 'user' || g || '@example.com' "
               "FROM generate_series(1, %s) AS g", (rows,))
    if duplicate_email:
        db.execute("INSERT INTO public.t (a, b, email) VALUES (1, 1, %s), (2, 2, %s)",
                   (duplicate_email, duplicate_email))


def create_index(db, name, columns, table="t"):
    db.execute(sql.SQL("CREATE INDEX {} ON {} ({})").format(
        sql.Identifier(name), sql.Identifier("public", table),
        sql.SQL(", ").join(map(sql.Identifier, columns))))


def snapshot(db):
    """Every relation outside the system schemas, with what a DDL would change about it."""
    return db.fetchall(r"""
        SELECT n.nspname, c.relname, c.relkind, c.oid::bigint, c.relfilenode::bigint,
               i.indisvalid, i.indisready, i.indislive,
               CASE WHEN c.relkind IN ('i', 'I') THEN pg_catalog.pg_get_indexdef(c.oid) END
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
        ORDER BY n.nspname, c.relname
    """)


def index_row(db, name, schema="public"):
    """(oid, relfilenode, valid, ready, definition) of one index, or None."""
    return db.fetchone("""
        SELECT c.oid::bigint, c.relfilenode::bigint, i.indisvalid, i.indisready, pg_catalog.pg_get_indexdef(c.oid)
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
        WHERE n.nspname = %s AND c.relname = %s
    """, (schema, name))


def index_names(db, table="t"):
    return sorted(row[0] for row in db.fetchall(
        "SELECT c.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = %s::regclass", (f"public.{table}",)))


@pytest.fixture
def run_playbook(run_playbook):
    """conftest's run_playbook with Ansible's default callback: these tests read the status word (ok,
    changed, fatal) it prints for each task of a playbook of one's own that calls pg_index."""

    def run(*args, env=None, **kwargs):
        return run_playbook(*args, env={**DEFAULT_CALLBACK, **(env or {})}, **kwargs)

    return run


def the_result(run, name="result_index"):
    assert name in run.results, f"no registered {name}:\n{run.describe()}"
    return run.results[name]


def task_status(run, task):
    """The default callback's status word for ``task`` on the test host: ok, changed, fatal..."""
    match = re.search(r"^(ok|changed|fatal|failed|skipping): \[pgtest\]", run.task_output(task), re.M)
    assert match, f"no status line for task {task!r}:\n{run.describe()}"
    return match.group(1)


# --------------------------------------------------------------------------- one playbook per state

PRESENT_VARS = {"index_name": "t_a_b_idx", "index_table": "public.t",
                "index_columns": ["a", {"name": "b", "order": "desc"}]}
PRESENT_SQL = ['CREATE INDEX CONCURRENTLY "t_a_b_idx" ON "public"."t" USING "btree" ("a", "b" DESC)']
PRESENT_DEFINITION = "CREATE INDEX t_a_b_idx ON public.t USING btree (a, b DESC)"
ABSENT_SQL = ['DROP INDEX CONCURRENTLY IF EXISTS "public"."t_a_idx"']
REBUILT_SQL = ['REINDEX INDEX CONCURRENTLY "public"."t_a_idx"']


def test_present_creates_the_index_and_a_rerun_changes_nothing(db, run_playbook):
    make_table(db)
    assert index_row(db, "t_a_b_idx") is None

    first = run_playbook("pg_index_present.yml", extra_vars=PRESENT_VARS)

    assert first.returncode == 0, first.describe()
    assert first.recap["pgtest"]["changed"] == 1 and first.recap["pgtest"]["failed"] == 0, first.describe()
    assert task_status(first, TASK_PRESENT) == "changed"
    result = the_result(first)
    assert result["changed"] is True and result["action"] == "created"
    assert result["sql"] == PRESENT_SQL
    assert result["valid"] is True and result["definition"] == PRESENT_DEFINITION
    _, _, valid, ready, definition = index_row(db, "t_a_b_idx")
    assert (valid, ready, definition) == (True, True, PRESENT_DEFINITION)
    built = snapshot(db)

    second = run_playbook("pg_index_present.yml", extra_vars=PRESENT_VARS)

    assert second.returncode == 0, second.describe()
    assert second.recap["pgtest"]["changed"] == 0 and second.recap["pgtest"]["failed"] == 0, second.describe()
    assert task_status(second, TASK_PRESENT) == "ok"
    rerun = the_result(second)
    assert rerun["changed"] is False and rerun["action"] == "none" and rerun["sql"] == []
    assert rerun["valid"] is True and rerun["definition"] == PRESENT_DEFINITION
    assert snapshot(db) == built  # same index: same oid and relfilenode, nothing rebuilt


def test_absent_drops_the_index_and_a_rerun_changes_nothing(db, run_playbook):
    make_table(db)
    create_index(db, "t_a_idx", ["a"])
    create_index(db, "t_b_idx", ["b"])
    before = snapshot(db)
    absent_vars = {"index_name": "t_a_idx", "index_table": "public.t"}

    first = run_playbook("pg_index_absent.yml", extra_vars=absent_vars)

    assert first.returncode == 0, first.describe()
    assert first.recap["pgtest"]["changed"] == 1, first.describe()
    assert task_status(first, TASK_ABSENT) == "changed"
    result = the_result(first)
    assert result["changed"] is True and result["action"] == "dropped"
    assert result["sql"] == ABSENT_SQL
    assert result["valid"] is False and result["definition"] == ""
    assert index_row(db, "t_a_idx") is None
    assert snapshot(db) == [row for row in before if row[1] != "t_a_idx"]  # only that index is gone
    dropped = snapshot(db)

    second = run_playbook("pg_index_absent.yml", extra_vars=absent_vars)

    assert second.returncode == 0, second.describe()
    assert second.recap["pgtest"]["changed"] == 0 and second.recap["pgtest"]["failed"] == 0, second.describe()
    assert task_status(second, TASK_ABSENT) == "ok"
    rerun = the_result(second)
    assert rerun["changed"] is False and rerun["action"] == "none" and rerun["sql"] == []
    assert snapshot(db) == dropped


def test_rebuilt_rebuilds_the_index_and_it_stays_valid(db, run_playbook):
    make_table(db)
    create_index(db, "t_a_idx", ["a"])
    old_oid, old_filenode, _, _, old_definition = index_row(db, "t_a_idx")
    names_before = index_names(db)

    run = run_playbook("pg_index_rebuilt.yml", extra_vars={"index_name": "t_a_idx", "index_table": "public.t"})

    assert run.returncode == 0, run.describe()
    assert run.recap["pgtest"]["changed"] == 1 and run.recap["pgtest"]["failed"] == 0, run.describe()
    assert task_status(run, TASK_REBUILT) == "changed"
    result = the_result(run)
    assert result["changed"] is True and result["action"] == "rebuilt"
    assert result["sql"] == REBUILT_SQL
    assert result["valid"] is True and result["definition"] == old_definition
    oid, filenode, valid, ready, definition = index_row(db, "t_a_idx")
    assert (valid, ready, definition) == (True, True, old_definition)
    assert (oid, filenode) != (old_oid, old_filenode), "the index was not rebuilt: same storage as before"
    assert index_names(db) == names_before  # no _ccnew/_ccold left behind


# --------------------------------------------------------------------------- check mode

CHECK_CASES = {
    "present": ("pg_index_present.yml", PRESENT_VARS, PRESENT_SQL),
    "absent": ("pg_index_absent.yml", {"index_name": "t_a_idx", "index_table": "public.t"}, ABSENT_SQL),
    "rebuilt": ("pg_index_rebuilt.yml", {"index_name": "t_a_idx", "index_table": "public.t"}, REBUILT_SQL),
}


@pytest.mark.parametrize("state", sorted(CHECK_CASES))
def test_check_mode_changes_nothing_and_returns_the_sql(db, run_playbook, state):
    playbook, extra_vars, expected_sql = CHECK_CASES[state]
    make_table(db)
    create_index(db, "t_a_idx", ["a"])
    before = snapshot(db)

    run = run_playbook(playbook, extra_vars=extra_vars, check=True)

    assert run.returncode == 0, run.describe()
    assert snapshot(db) == before
    result = the_result(run)
    assert result["changed"] is True, "check mode must report the change it would make"
    assert result["sql"] == expected_sql  # the same statements the real runs above execute
    assert run.recap["pgtest"]["changed"] == 1 and run.recap["pgtest"]["failed"] == 0, run.describe()


# --------------------------------------------------------------------------- diff mode

def diff_lines(run, task):
    """The removed ("-") and added ("+") lines of the unified diff printed for ``task``."""
    lines = [line for line in run.task_output(task).splitlines() if line[:3] not in ("---", "+++")]
    return {sign: [line[1:] for line in lines if line.startswith(sign)] for sign in "-+"}


def without_btree(definition):
    """pg_get_indexdef spells out USING btree; the module's diff prints the parsed form, which may omit
    the default method. Both mean the same index."""
    return definition.replace(" USING btree ", " ")


def test_diff_shows_the_definitions_before_and_after(db, run_playbook):
    make_table(db)
    create_index(db, "t_old_idx", ["a"])
    create_index(db, "t_swap_idx", ["a"])
    old_drop = index_row(db, "t_old_idx")[4]
    old_swap = index_row(db, "t_swap_idx")[4]

    run = run_playbook("pg_index_diff.yml", diff=True)

    assert run.returncode == 0, run.describe()
    new_create = index_row(db, "t_new_idx")
    new_swap = index_row(db, "t_swap_idx")
    assert new_create[2:] == (True, True, "CREATE INDEX t_new_idx ON public.t USING btree (b)")
    assert new_swap[2:] == (True, True, "CREATE INDEX t_swap_idx ON public.t USING btree (b DESC)")
    assert index_names(db) == ["t_new_idx", "t_pkey", "t_swap_idx"]  # old one dropped, no temp name left

    created = diff_lines(run, "Create t_new_idx")
    assert created["+"] == [new_create[4]] or created["+"] == [without_btree(new_create[4])], created
    assert created["-"] == [], created

    dropped = diff_lines(run, "Drop t_old_idx")
    assert dropped["-"] == [old_drop] or dropped["-"] == [without_btree(old_drop)], dropped
    assert dropped["+"] == [], dropped

    replaced = diff_lines(run, "Replace t_swap_idx with a different definition")
    assert replaced["-"] == [old_swap] or replaced["-"] == [without_btree(old_swap)], replaced
    assert replaced["+"] == [new_swap[4]] or replaced["+"] == [without_btree(new_swap[4])], replaced

    # the registered diff holds what was printed
    assert run.results["result_create"]["diff"] == {"before": "", "after": created["+"][0] + "\n"}
    assert run.results["result_drop"]["diff"] == {"before": dropped["-"][0] + "\n", "after": ""}
    assert run.results["result_replace"]["diff"] == {"before": replaced["-"][0] + "\n",
                                                     "after": replaced["+"][0] + "\n"}


# --------------------------------------------------------------------------- failures

FAILURES = {
    # a UNIQUE build on duplicated keys: the concurrent build fails and leaves an invalid index
    "unique_on_duplicates": (
        {"index_name": "t_email_uq", "index_table": "public.t", "index_columns": ["email"], "index_unique": True},
        ["dup@example.com", "Expected:"],
    ),
    # a column that does not exist: refused before any DDL
    "missing_column": (
        {"index_name": "t_nope_idx", "index_table": "public.t", "index_columns": ["a", "no_such_column"]},
        ["no_such_column", "does not exist", "Expected:"],
    ),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_a_failing_run_exits_non_zero_with_one_clear_line_and_changes_nothing(db, run_playbook, case):
    extra_vars, must_mention = FAILURES[case]
    make_table(db, duplicate_email="dup@example.com")
    before = snapshot(db)

    run = run_playbook("pg_index_present.yml", extra_vars=extra_vars)

    assert run.returncode != 0, run.describe()
    assert run.recap["pgtest"]["failed"] == 1, run.describe()
    assert task_status(run, TASK_PRESENT) == "fatal"
    result = the_result(run)
    assert result["failed"] is True and result.get("changed") is False
    msg = result["msg"]
    assert "\n" not in msg and msg.strip() == msg, f"not one line: {msg!r}"
    for text in must_mention:
        assert text in msg, f"{text!r} missing from {msg!r}"
    assert re.search(r"\b(run|running) (it )?again\b", msg), f"no word on rerunning in {msg!r}"
    assert result["retry_safe"] is False  # both need a fix first, and the message says which
    assert "Traceback" not in run.output and "unexpectedly" not in msg
    # what the operator reads: the message on one line of the output, unescaped
    assert any(msg in line for line in run.output.splitlines()), run.describe()
    assert snapshot(db) == before  # no index, valid or invalid, was left behind


# --------------------------------------------------------------------------- secrets

def test_login_password_never_appears_in_output_even_at_vvv(db, run_playbook, pg_server):
    """A role with a distinctive password logs in with it (trust auth ignores it, password auth
    checks it); neither the successful nor the failing task may print it, even at -vvv."""
    secret = "Pw-" + uuid.uuid4().hex + "-never-print-me"
    role = f"{db.name}_pw"
    make_table(db)
    with contextlib.closing(pg_server.connect()) as admin_conn, admin_conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(secret)))
    try:
        db.execute(sql.SQL("ALTER TABLE public.t OWNER TO {}").format(sql.Identifier(role)))
        # owning the table is not enough: CREATE INDEX also needs CREATE on the schema (PUBLIC lost it in 15)
        db.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        before = snapshot(db)

        run = run_playbook("pg_index_secret.yml", verbosity=3,
                           extra_vars={"indexops_login_user": role, "indexops_login_password": secret})

        assert run.returncode == 0, run.describe()  # the failing task has ignore_errors
        assert secret not in run.stdout
        assert secret not in run.stderr
        # each module call got the password, and -vvv printed its arguments, where it would have shown
        masked = '"login_password": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"'
        assert masked in run.task_output("Build an index while logged in with a password"), run.describe()
        assert masked in run.task_output("Fail on purpose while logged in with a password"), run.describe()
        assert run.results["result_ok"]["action"] == "created"
        assert run.results["result_failed"]["failed"] is True
        assert "no_such_column" in run.results["result_failed"]["msg"]
        created = [row for row in snapshot(db) if row not in before]
        assert [row[1] for row in created] == ["t_secret_idx"]
        assert db.fetchval("SELECT pg_catalog.pg_get_userbyid(relowner) FROM pg_catalog.pg_class "
                           "WHERE oid = 'public.t_secret_idx'::regclass") == role
    finally:
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with contextlib.closing(pg_server.connect()) as admin_conn, admin_conn.cursor() as cur:
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


# --------------------------------------------------------------------------- the demo playbook

def make_orders(db, rows=20000):
    db.execute("""
        CREATE TABLE public.orders (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            customer_id bigint NOT NULL,
            status text NOT NULL,
            total_cents int NOT NULL,
            email text,
            created_at timestamptz NOT NULL,
            note text)
    """)
    db.execute("""
        INSERT INTO public.orders (customer_id, status, total_cents, email, created_at, note)
        SELECT mod(g, 1500), (ARRAY['open', 'paid', 'shipped', 'cancelled'])[1 + mod(g, 4)], mod(g * 37, 100000),
               'customer' || mod(g, 1500) || '@example.com',
               timestamptz '2024-01-01 00:00+00' + g * interval '13 minutes',
               CASE WHEN mod(g, 10) = 0 THEN 'gift' END
        FROM generate_series(1, %s) AS g
    """, (rows,))


def test_demo_playbook_rehearses_the_example_change_under_a_writer_load(db, run_playbook, tmp_path):
    make_orders(db)
    before = snapshot(db)
    params = db.params
    reports = tmp_path / "reports"
    # The port comes from INDEXOPS_SANDBOX_PORT, as `INDEXOPS_SANDBOX_PORT=<port> make demo` gives it:
    # the local inventory must follow the variable that moved the sandbox (issue 16 item 2).
    extra_vars = {"indexops_login_host": params["login_host"], "indexops_login_user": params["login_user"],
                  "indexops_db": params["db"], "indexops_reports_dir": str(reports)}
    env = {"INDEXOPS_SANDBOX_PORT": str(params["login_port"])}
    if params.get("login_password"):  # demo.yml's writer gets no password; libpq reads PGPASSWORD
        env["PGPASSWORD"] = params["login_password"]

    # the repository's default inventory (inventories/local, from ansible.cfg), as `make demo` uses it
    run = run_playbook("playbooks/demo.yml", inventory=None, extra_vars=extra_vars, env=env)

    assert run.returncode == 0, run.describe()
    assert run.recap["sandbox"]["failed"] == 0 and run.recap["sandbox"]["unreachable"] == 0, run.describe()
    # the rehearsal's apply, rollback and second apply; nothing else changed anything
    assert run.recap["sandbox"]["changed"] == 3, run.describe()
    [report_file] = sorted((reports / "orders-customer-created").glob("local-*.json"))
    report = json.loads(report_file.read_text())
    assert report["kind"] == "rehearse" and report["success"] is True, report
    steps = report["hosts"]["sandbox"]["steps"]
    assert [steps[step]["action"] for step in ("apply", "rollback", "reapply")] == ["created", "dropped", "created"]
    assert report["measurements"]["duration_s"] > 0
    # the report's path and summary, and the writer's tally, are what the demo ends with
    assert f"report: {report_file.with_suffix('.md')} (and .json)" in run.stdout, run.describe()
    assert "rehearse of change orders-customer-created on local: succeeded" in run.stdout, run.describe()
    writer = re.search(r"writer: (\d+) writes in [\d.]+s \(\d+ inserts, \d+ updates\), max latency [\d.]+ ms",
                       run.stdout)
    assert writer and int(writer.group(1)) > 0, run.describe()
    # the rehearsed index stays, valid; nothing else was touched
    assert index_row(db, "orders_customer_created_idx")[2] is True
    assert index_names(db, "orders") == ["orders_customer_created_idx", "orders_pkey"]
    assert [row for row in snapshot(db) if row[0] == "public" and row[1] != "orders_customer_created_idx"] == [
        row for row in before if row[0] == "public"]
