"""pg_index_preflight against a real PostgreSQL: go on a good change, each no-go reason on its own,
and proof that preflight changes nothing (catalog snapshot, no ledger schema, no DDL logged).

Every no-go test asserts that exactly one check failed, so each reason is shown to stand on its
own and not to drag unrelated checks down with it.
"""

from __future__ import annotations

import contextlib
import copy

import psycopg2
import pytest
from psycopg2 import sql

from ansible_collections.indexops.core.plugins.module_utils.changefile import digest, validate_change
from scripts.sandbox import free_port
from tests.integration.helpers_catalog import create_table, index_row, snapshot, wait_until
from tests.integration.helpers_roles import Roles
from tests.pg_index_runner import run_module

BUILD_CHECKS = ["change_valid", "server_version", "table_exists", "columns_exist", "privileges", "index_name",
                "equivalent_index", "long_transactions", "estimated_duration"]
INDEX_CHECKS = ["change_valid", "server_version", "index_exists", "privileges", "long_transactions",
                "estimated_duration"]
RESULT_KEYS = {"changed", "go", "reasons", "checks", "estimate_s", "server_version", "table", "long_transactions",
               "equivalent_indexes"}

# Logs every DDL command (including temporary tables) into public.ddl_log. A statement that is
# rolled back takes its log row with it, so rows left after a run are DDL that stayed.
DDL_LOG = """
CREATE TABLE public.ddl_log (tag text, query text);
CREATE FUNCTION public.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.ddl_log VALUES (tg_tag, current_query());
END $$;
CREATE EVENT TRIGGER log_ddl_start ON ddl_command_start EXECUTE FUNCTION public.log_ddl();
CREATE EVENT TRIGGER log_ddl_drop ON sql_drop EXECUTE FUNCTION public.log_ddl();
"""


# --------------------------------------------------------------------------- helpers

@pytest.fixture
def tdb(db):
    """The test database with public.t (20k rows; see helpers_catalog.create_table)."""
    create_table(db)
    return db


def make_change(**overrides):
    """A valid create change for index t_a_status_idx on public.t; ``index`` overrides merge."""
    change = {
        "id": "t-a-status",
        "owner": "team-test",
        "reason": "TEST-1: look up t by a and status",
        "action": "create",
        "index": {"name": "t_a_status_idx", "table": "public.t", "columns": ["a", "status"]},
        "expected": {"valid": True, "max_duration": "10min"},
        "rollback": {"note": "Drop the index; nothing depends on it."},
    }
    index = overrides.pop("index", {})
    change.update(overrides)
    change["index"] = {**change["index"], **index}
    return change


def preflight(db, change, check_mode=False, **args):
    return run_module("pg_index_preflight", {**db.params, "change": change, **args}, check_mode=check_mode)


def checks(result):
    return {check["name"]: check for check in result["checks"]}


def failed_checks(result):
    return [check["name"] for check in result["checks"] if check["ok"] is False]


def assert_only_failure(result, name):
    """No-go because of ``name`` alone: every other check passed or was skipped because of it."""
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    assert result["go"] is False
    assert failed_checks(result) == [name], result["checks"]
    assert len(result["reasons"]) == 1
    assert result["reasons"][0] == f"{name}: {checks(result)[name]['detail']}"
    return checks(result)[name]


def ledger_schema_exists(db):
    return db.fetchval("SELECT to_regnamespace('indexops') IS NOT NULL")


@pytest.fixture
def make_role(db):
    """Create LOGIN roles for one test (see helpers_roles.Roles); dropped afterwards."""
    with Roles(db) as roles:
        yield roles.make


@contextlib.contextmanager
def open_transaction(db, *statements, application_name="test/long-tx"):
    """A session left idle in an open transaction after ``statements``; rolled back on exit."""
    conn = db.connect(autocommit=False, application_name=application_name)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        yield conn.get_backend_pid()
    finally:
        with contextlib.suppress(psycopg2.Error):
            conn.rollback()
        conn.close()


# --------------------------------------------------------------------------- go

def test_good_change_is_go_with_every_check_passed_and_nothing_changed(tdb):
    tdb.execute(DDL_LOG)
    change = make_change()
    before = snapshot(tdb)

    result = preflight(tdb, change)

    assert not result.get("failed"), result.get("msg")
    assert RESULT_KEYS <= set(result)
    assert result["changed"] is False
    assert result["go"] is True, result["reasons"]
    assert result["reasons"] == []
    assert [check["name"] for check in result["checks"]] == BUILD_CHECKS
    assert all(check["ok"] is True for check in result["checks"]), result["checks"]
    assert "PostgreSQL accepts the index definition" in checks(result)["change_valid"]["detail"]
    assert checks(result)["index_name"]["detail"] == "no index public.t_a_status_idx yet; applying builds it"
    assert result["server_version"] == tdb.server_version_num
    assert result["table"] == {"schema": "public", "name": "t", "bytes": tdb.fetchval("SELECT pg_relation_size('t')"),
                               "rows_estimate": 20_000}
    assert result["long_transactions"] == []
    assert result["equivalent_indexes"] == []
    assert result["estimate_s"] is None
    assert result["digest"] == digest(validate_change(copy.deepcopy(change)))
    assert (result["change_id"], result["action"], result["database"]) == ("t-a-status", "create", tdb.name)

    # Read-only: same catalog, no ledger schema, no DDL that outlived its transaction, no session left.
    assert snapshot(tdb) == before
    assert not ledger_schema_exists(tdb)
    assert tdb.fetchall("SELECT tag, query FROM public.ddl_log") == []
    assert index_row(tdb, "public", "t_a_status_idx") is None
    # The module closed its session: its backend leaves pg_stat_activity once it has exited, which on a busy
    # machine takes a moment after the module returns; a session left open would never leave.
    wait_until(lambda: tdb.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                    "'indexops/t-a-status' AND datname = current_database()") == 0,
               "preflight's session to end", timeout=10)

    in_check_mode = preflight(tdb, change, check_mode=True)
    assert in_check_mode["go"] is True
    assert in_check_mode["checks"] == result["checks"]


def test_the_shadow_definition_check_is_the_only_ddl_and_it_is_rolled_back(tdb):
    """The event trigger sees the temporary table and index of the definition check; the rollback
    removes its log rows with them. Any other DDL would leave a row behind."""
    tdb.execute(DDL_LOG)
    conn = tdb.connect(autocommit=False)
    try:
        with conn.cursor() as cur:  # what the trigger would log for the shadow, inside a transaction
            cur.execute("CREATE TEMPORARY TABLE probe (LIKE public.t) ON COMMIT DROP")
            cur.execute("SELECT count(*) FROM public.ddl_log WHERE tag = 'CREATE TABLE'")
            assert cur.fetchone()[0] == 1  # the trigger does log temporary tables
    finally:
        conn.rollback()
        conn.close()

    result = preflight(tdb, make_change(index={"columns": [{"expression": "lower(email)"}], "where": "a > 5"}))

    assert result["go"] is True, result["reasons"]
    assert tdb.fetchall("SELECT tag FROM public.ddl_log") == []


def test_change_names_its_database(tdb):
    """A change with a database is checked there, whatever db the inventory passes."""
    result = run_module("pg_index_preflight", {**tdb.params, "db": "postgres",
                                               "change": make_change(database=tdb.name)})

    assert result["go"] is True, result["reasons"]
    assert result["database"] == tdb.name


def test_index_already_present_is_go_and_says_nothing_will_change(tdb):
    tdb.execute("CREATE INDEX t_a_status_idx ON t (a, status)")

    result = preflight(tdb, make_change())

    assert result["go"] is True, result["reasons"]
    assert "already exists with this definition; applying changes nothing" in checks(result)["index_name"]["detail"]
    assert result["equivalent_indexes"] == []  # the index itself is not "another name"


# --------------------------------------------------------------------------- no-go, one reason each

def test_missing_table(tdb):
    result = preflight(tdb, make_change(index={"table": "public.no_such_table"}))

    check = assert_only_failure(result, "table_exists")
    assert "table public.no_such_table does not exist in database " + tdb.name in check["detail"]
    for name in ("columns_exist", "privileges", "index_name", "equivalent_index", "estimated_duration"):
        assert checks(result)[name]["ok"] is None
        assert checks(result)[name]["detail"] == "not checked: the table does not exist"
    assert result["table"] is None


def test_missing_columns_are_all_named(tdb):
    change = make_change(index={"columns": ["a", "no_such_col", {"expression": "lower(missing_too)"}]})

    result = preflight(tdb, change)

    check = assert_only_failure(result, "columns_exist")
    assert "table public.t has no column missing_too, no_such_col" in check["detail"]
    assert "(its columns: a, amount, b, code, created_at, d, email, id, status)" in check["detail"]
    assert checks(result)["privileges"]["ok"] is True
    assert checks(result)["index_name"]["ok"] is None
    assert checks(result)["equivalent_index"]["ok"] is None


@pytest.mark.parametrize(("change", "detail"), [
    pytest.param({k: v for k, v in make_change().items() if k != "owner"}, "owner: ", id="missing-owner"),
    pytest.param(make_change(action="explode"), "action: 'explode' ", id="unknown-action"),
    pytest.param(make_change(index={"where": "a = 1; DROP TABLE t"}), "index: where 'a = 1; DROP TABLE t' ",
                 id="statement-smuggled-in-where"),
    pytest.param(make_change(index={"columns": [{"name": "a", "order": "sideways"}]}), "index/columns/0/order: ",
                 id="bad-column-order"),
])
def test_bad_change_file(tdb, change, detail):
    before = snapshot(tdb)

    result = preflight(tdb, change)

    check = assert_only_failure(result, "change_valid")
    assert check["detail"].startswith("changes/t-a-status.yml: " + detail)
    assert "(expected: " in check["detail"]
    assert result["digest"] is None
    # Checks that need no valid change still ran; the others say why they did not.
    assert checks(result)["server_version"]["ok"] is True
    assert checks(result)["long_transactions"]["ok"] is True
    assert checks(result)["table_exists"]["detail"] == "not checked: the change file is invalid"
    assert snapshot(tdb) == before
    assert tdb.fetchval("SELECT count(*) FROM t") == 20_000


def test_definition_the_server_rejects_is_a_bad_change(tdb):
    """The change file is well-formed but PostgreSQL refuses the definition (no such opclass)."""
    before = snapshot(tdb)

    result = preflight(tdb, make_change(index={"columns": [{"name": "a", "opclass": "no_such_ops"}]}))

    check = assert_only_failure(result, "change_valid")
    assert "PostgreSQL rejected the index definition" in check["detail"]
    assert "no_such_ops" in check["detail"]
    assert checks(result)["table_exists"]["ok"] is True
    assert checks(result)["index_name"]["detail"] == "not checked: PostgreSQL rejected the index definition"
    assert snapshot(tdb) == before


def test_equivalent_index_under_another_name(tdb):
    tdb.execute("CREATE INDEX t_a_status_old ON t (a, status)")
    # Spelled differently, same meaning: explicit ASC / NULLS LAST are btree's defaults.
    change = make_change(index={"columns": [{"name": "a", "order": "asc"}, {"name": "status", "nulls": "last"}]})

    result = preflight(tdb, change)

    check = assert_only_failure(result, "equivalent_index")
    assert result["equivalent_indexes"] == ["t_a_status_old"]
    assert "table public.t already has an equivalent valid index: t_a_status_old" in check["detail"]


def test_different_or_invalid_indexes_are_not_equivalent(tdb):
    tdb.execute("CREATE INDEX t_a_status_desc ON t (a DESC, status)")
    tdb.execute("CREATE INDEX t_a_status_part ON t (a, status) WHERE b > 3")
    tdb.execute("CREATE INDEX t_status_a ON t (status, a)")
    conn = tdb.connect()
    try:  # a failed concurrent build leaves an invalid index with exactly the wanted definition
        tdb.execute("INSERT INTO t (id, a, status) VALUES (-1, 1, 'open'), (-2, 1, 'open')")
        with pytest.raises(psycopg2.errors.UniqueViolation), conn.cursor() as cur:
            cur.execute("CREATE UNIQUE INDEX CONCURRENTLY t_a_status_broken ON t (a, status)")
    finally:
        conn.close()
    assert index_row(tdb, "public", "t_a_status_broken")["valid"] is False

    result = preflight(tdb, make_change(index={"unique": True}))

    assert result["go"] is True, result["reasons"]
    assert result["equivalent_indexes"] == []


def wait_older_than_a_second(tdb, pid):
    wait_until(lambda: tdb.fetchval(
        "SELECT now() - xact_start > interval '1.2 seconds' FROM pg_stat_activity WHERE pid = %s", (pid,)),
        what="the transaction to be older than the threshold")


def test_long_transaction_is_what_the_build_will_wait_for_not_a_nogo(tdb):
    """A build waits for old transactions without blocking anyone: preflight says so, and says go."""
    query = "SELECT count(*) FROM t WHERE a = 42"
    with open_transaction(tdb, query) as pid:
        wait_older_than_a_second(tdb, pid)

        result = preflight(tdb, make_change(), long_transaction_threshold="1s")
        bounded = preflight(tdb, make_change(), long_transaction_threshold="1s", build_wait_timeout="1h")

    assert result["go"] is True, result["reasons"]
    check = checks(result)["long_transactions"]
    assert check["ok"] is True
    assert len(result["long_transactions"]) == 1
    row = result["long_transactions"][0]
    assert row["pid"] == pid
    assert f"1 transaction(s) in database {tdb.name} older than 1s: pid {pid} (idle in transaction, open " \
        in check["detail"]
    assert "A concurrent build or drop waits for them to end (that wait blocks no reads or writes), with no limit " \
        "(build_wait_timeout is not set)" in check["detail"]
    assert bounded["go"] is True, bounded["reasons"]
    assert "for at most build_wait_timeout 1h in total" in checks(bounded)["long_transactions"]["detail"]


def test_long_transaction_older_than_build_wait_timeout_shows_pid_age_and_query(tdb):
    query = "SELECT count(*) FROM t WHERE a = 42"
    with open_transaction(tdb, query) as pid:
        wait_older_than_a_second(tdb, pid)

        result = preflight(tdb, make_change(), long_transaction_threshold="1s", build_wait_timeout="1s")
        relaxed = preflight(tdb, make_change(), long_transaction_threshold="1h", build_wait_timeout="1s")

    check = assert_only_failure(result, "long_transactions")
    assert len(result["long_transactions"]) == 1
    row = result["long_transactions"][0]
    assert row["pid"] == pid
    assert row["age_s"] >= 1.2
    assert row["state"] == "idle in transaction"
    assert row["query"] == query
    assert row["application_name"] == "test/long-tx"
    assert f"1 transaction(s) in database {tdb.name} older than 1s: " in check["detail"]
    assert "the oldest is already older than build_wait_timeout 1s, so the build would likely be stopped" \
        in check["detail"]
    assert f"pid {pid} (idle in transaction, open " in check["detail"]
    assert query in check["detail"]

    assert relaxed["go"] is True, relaxed["reasons"]
    assert relaxed["long_transactions"] == []


def test_role_that_does_not_own_the_table_is_refused(tdb, make_role):
    role, params = make_role()
    before = snapshot(tdb)

    result = run_module("pg_index_preflight", {**params, "change": make_change()})

    check = assert_only_failure(result, "privileges")
    assert result["role"] == role
    owner = tdb.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 't'")
    assert f"role {role} does not own table public.t (owner {owner}) and is neither a member of {owner} nor a " \
           "superuser" in check["detail"]
    assert f"role {role} cannot create the ledger in database {tdb.name}" in check["detail"]
    assert checks(result)["index_name"]["detail"] == (
        "not checked: the role lacks the privileges to check the definition")
    # Without pg_monitor it sees only its own sessions, and says so.
    assert "sees only its own sessions; grant it pg_monitor" in checks(result)["long_transactions"]["detail"]
    assert snapshot(tdb) == before
    assert not ledger_schema_exists(tdb)


def test_member_of_the_owning_role_may_change_indexes(tdb, make_role):
    # CREATE INDEX also needs CREATE on the table's schema (PostgreSQL 15+ grants it on public to no one).
    owner, _ = make_role("GRANT CREATE ON SCHEMA public TO {role}", login=False)
    tdb.execute(sql.SQL("ALTER TABLE t OWNER TO {}").format(sql.Identifier(owner)))
    member, params = make_role("GRANT {owner} TO {role}", "GRANT CREATE ON DATABASE {db} TO {role}", owner=owner)

    result = run_module("pg_index_preflight", {**params, "change": make_change()})

    assert result["go"] is True, result["reasons"]
    assert checks(result)["privileges"]["detail"] == (
        f"role {member} has the owner's privileges on table public.t (owner {owner}) and can write the ledger")


def test_tablespace_that_does_not_exist(tdb):
    result = preflight(tdb, make_change(index={"tablespace": "no_such_space"}))

    check = assert_only_failure(result, "privileges")
    assert check["detail"] == "tablespace no_such_space does not exist"


def test_existing_ledger_the_role_cannot_write(tdb, make_role):
    tdb.execute("CREATE SCHEMA indexops")
    tdb.execute("CREATE TABLE indexops.jobs (job_id bigint)")
    owner, params = make_role("GRANT USAGE ON SCHEMA indexops TO {role}", "GRANT SELECT ON indexops.jobs TO {role}",
                              "GRANT CREATE ON SCHEMA public TO {role}")
    tdb.execute(sql.SQL("ALTER TABLE t OWNER TO {}").format(sql.Identifier(owner)))
    shared_owner = tdb.fetchval("SELECT current_user")  # the team's ledger owner, named in the policy

    result = run_module("pg_index_preflight", {**params, "change": make_change(), "ledger_owner": shared_owner})

    check = assert_only_failure(result, "privileges")
    assert check["detail"] == (f"role {owner} cannot write the ledger indexops.jobs (needs USAGE on schema indexops "
                               "and SELECT, INSERT, UPDATE on the table)")


def test_estimate_longer_than_the_window_left(tdb):
    table_bytes = tdb.fetchval("SELECT pg_relation_size('t')")
    rehearsal = {"duration_s": 10.0, "table_bytes": table_bytes // 4, "environment": "staging"}

    short = preflight(tdb, make_change(), rehearsal=rehearsal, window_remaining_s=30)
    enough = preflight(tdb, make_change(), rehearsal=rehearsal, window_remaining_s=3600)
    no_window = preflight(tdb, make_change(), rehearsal=rehearsal)
    unscaled = preflight(tdb, make_change(), rehearsal={"duration_s": 10.0}, window_remaining_s=30)

    check = assert_only_failure(short, "estimated_duration")
    assert short["estimate_s"] == pytest.approx(10.0 * table_bytes / (table_bytes // 4), rel=1e-3)
    assert check["detail"].startswith("estimated 40 s (rehearsal took 10 s on ")
    assert "is longer than the 30 s left in the maintenance window" in check["detail"]
    assert enough["go"] is True and enough["estimate_s"] == short["estimate_s"]
    assert "within the 1 h 00 min left in the maintenance window" in checks(enough)["estimated_duration"]["detail"]
    assert no_window["go"] is True and no_window["estimate_s"] == short["estimate_s"]
    assert unscaled["go"] is True and unscaled["estimate_s"] == 10.0
    assert "recorded no table size, so not scaled" in checks(unscaled)["estimated_duration"]["detail"]


def test_index_name_taken_by_a_different_definition(tdb):
    tdb.execute("CREATE INDEX t_a_status_idx ON t (status)")

    created = preflight(tdb, make_change())
    replaced = preflight(tdb, make_change(action="replace"))

    check = assert_only_failure(created, "index_name")
    assert "index public.t_a_status_idx already exists with a different definition" in check["detail"]
    assert "(use action: replace, or another name)" in check["detail"]
    assert replaced["go"] is True, replaced["reasons"]
    assert "applying replaces it concurrently" in checks(replaced)["index_name"]["detail"]


def test_fail_on_nogo_fails_the_task_with_every_reason(tdb):
    tdb.execute("CREATE INDEX t_a_status_old ON t (a, status)")

    result = preflight(tdb, make_change(index={"tablespace": "no_such_space"}), fail_on_nogo=True)

    assert result["failed"] is True
    assert result["changed"] is False
    assert result["go"] is False
    assert failed_checks(result) == ["privileges", "equivalent_index"]
    assert result["msg"].startswith(f"preflight of change t-a-status on database {tdb.name}: no-go. ")
    assert "privileges: tablespace no_such_space does not exist" in result["msg"]
    assert "equivalent_index: table public.t already has an equivalent valid index" in result["msg"]


@pytest.mark.parametrize(("args", "message"), [
    ({"long_transaction_threshold": "soon"}, "long_transaction_threshold 'soon' is not a duration"),
    ({"rehearsal": {"duration_s": "fast", "table_bytes": 1}}, "has a duration_s or table_bytes that is not a number"),
    ({"rehearsal": {"duration_s": -1}}, "has a negative duration_s or table_bytes"),
])
def test_bad_options_fail_before_connecting(tdb, args, message):
    result = preflight(tdb, make_change(), **args)

    assert result["failed"] is True
    assert message in result["msg"]
    assert "Nothing was changed" in result["msg"]


# --------------------------------------------------------------------------- drop and rebuild

@pytest.mark.parametrize(("action", "name", "go", "detail"), [
    ("drop", "t_a_idx", True, "index public.t_a_idx exists on public.t (valid, "),
    ("rebuild", "t_a_idx", True, "index public.t_a_idx exists on public.t (valid, "),
    ("drop", "no_such_idx", True, "index public.no_such_idx does not exist (already dropped?); applying changes "
                                  "nothing"),
    ("rebuild", "no_such_idx", False, "index public.no_such_idx does not exist, so it cannot be rebuilt"),
    ("drop", "t_pkey", False, "index public.t_pkey backs constraint t_pkey, so it cannot be dropped"),
    ("drop", "t", False, "public.t exists and is not an index (relkind r)"),
])
def test_drop_and_rebuild_check_the_index(tdb, action, name, go, detail):
    tdb.execute("CREATE INDEX t_a_idx ON t (a)")
    tdb.execute("ALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY (id)")
    change = make_change(action=action)
    change["index"] = {"name": name, "table": "t"} if name != "t" else {"name": name}
    before = snapshot(tdb)

    result = preflight(tdb, change)

    assert not result.get("failed"), result.get("msg")
    assert [check["name"] for check in result["checks"]] == INDEX_CHECKS
    assert result["go"] is go, result["reasons"]
    assert checks(result)["index_exists"]["detail"].startswith(detail)
    assert failed_checks(result) == ([] if go else ["index_exists"])
    if name == "t_a_idx":
        assert checks(result)["privileges"]["ok"] is True
        assert result["table"]["name"] == "t"
    assert snapshot(tdb) == before
    assert not ledger_schema_exists(tdb)


def test_unreachable_server_fails_with_a_clear_message(tdb):
    result = run_module("pg_index_preflight", {**tdb.params, "login_port": free_port(), "change": make_change()})

    assert result["failed"] is True
    assert result["changed"] is False
    assert result["msg"].startswith("could not connect to PostgreSQL: ")
    assert result["retry_safe"] is True
