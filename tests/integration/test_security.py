"""Security against real PostgreSQL (issue 14): a ledger another role controls is never used, names
in our SQL never resolve through schemas others can write to, and every flow runs as a
non-superuser with exactly the grants README.md and runbook.md document.

The trojan tests plant code in a pre-created schema indexops that would make its creator a
superuser, or write a canary row, or raise, if any of it ran; each test then checks that none of it
ran (the role is not superuser, the canary is empty) and that nothing was built.
"""

from __future__ import annotations

import contextlib

import psycopg2
import pytest
from psycopg2 import sql

from ansible_collections.indexops.core.plugins.module_utils import ledger as ledger_utils
from ansible_collections.indexops.core.plugins.module_utils.connection import connect_kwargs
from tests.integration.helpers_catalog import create_table, index_row
from tests.integration.helpers_roles import Roles
from tests.pg_index_runner import run_module

LEDGER = {"change_id": "c1", "spec_digest": "0" * 64, "kind": "apply", "environment": "staging",
          "owner": "team-db", "rollback_note": "drop it", "operator": "tester"}
INDEX = {"name": "t_a_idx", "table": "t", "columns": ["a"]}


@pytest.fixture
def tdb(db):
    create_table(db)
    db.execute("CREATE TABLE public.canary (note text)")
    db.execute("GRANT INSERT, SELECT ON public.canary TO PUBLIC")
    return db


@pytest.fixture
def roles(db):
    with Roles(db) as made:
        yield made


@contextlib.contextmanager
def session_as(params):
    """A plain psycopg2 session logged in with a role's module params (autocommit)."""
    conn = psycopg2.connect(**connect_kwargs(params, "indexops-test/attacker"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def is_superuser(db, role):
    return db.fetchval("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = %s", (role,))


def canary(db):
    return db.fetchall("SELECT note FROM public.canary")


def plant_ledger(cur, role, *, as_view=False):
    """What the attacker role runs: its own schema indexops with a jobs table (our columns) whose
    BEFORE INSERT trigger makes it superuser when a superuser inserts, and writes the canary."""
    cur.execute("CREATE SCHEMA indexops")
    cur.execute(sql.SQL("""
        CREATE FUNCTION indexops.pwn() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO public.canary VALUES ('trigger ran as ' || current_user);
            EXECUTE 'ALTER ROLE ' || {role} || ' SUPERUSER';
            RETURN NEW;
        END $$""").format(role=sql.Literal(sql.Identifier(role).as_string(cur))))
    if as_view:
        cur.execute("CREATE TABLE indexops.real_jobs (job_id bigint, change_id text)")
        cur.execute("CREATE VIEW indexops.jobs AS SELECT * FROM indexops.real_jobs")
        cur.execute("CREATE TRIGGER pwn INSTEAD OF INSERT ON indexops.jobs FOR EACH ROW "
                    "EXECUTE FUNCTION indexops.pwn()")
    else:
        cur.execute(ledger_utils.CREATE_TABLE)
        cur.execute("CREATE TRIGGER pwn BEFORE INSERT ON indexops.jobs FOR EACH ROW EXECUTE FUNCTION indexops.pwn()")
    cur.execute("GRANT ALL ON SCHEMA indexops TO PUBLIC")
    cur.execute("GRANT ALL ON ALL TABLES IN SCHEMA indexops TO PUBLIC")


def run_pg_index(db, params=None, check_mode=False, **args):
    return run_module("pg_index", {**(params or db.params), **INDEX, "ledger": LEDGER, **args}, check_mode=check_mode)


def attacker(db, roles):
    """A role that may create schemas in the database (common: the application's role)."""
    return roles.make("GRANT CREATE ON DATABASE {db} TO {role}")


# --------------------------------------------------------------------------- the trojan ledger

@pytest.mark.parametrize("as_view", [False, True], ids=["table-with-trigger", "view-with-instead-trigger"])
def test_a_ledger_planted_by_another_role_is_refused_and_none_of_its_code_runs(tdb, roles, as_view):
    planter, params = attacker(tdb, roles)
    with session_as(params) as cur:
        plant_ledger(cur, planter, as_view=as_view)
    # Any DDL of ours, even the definition check's temporary table in a transaction that is rolled
    # back, fails here and would fail the run with its own message instead of the refusal.
    tdb.execute("""CREATE FUNCTION public.note_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
                   BEGIN RAISE EXCEPTION 'indexops ran DDL: %', tg_tag; END $$""")
    tdb.execute("CREATE EVENT TRIGGER note_ddl ON ddl_command_start EXECUTE FUNCTION public.note_ddl()")

    try:
        checked = run_pg_index(tdb, check_mode=True)
        result = run_pg_index(tdb)
    finally:
        tdb.execute("DROP EVENT TRIGGER note_ddl")  # the roles' teardown (DROP OWNED) is DDL too

    for run in (checked, result):
        assert run["failed"] is True, run
        assert f"is owned by role {planter}" in run["msg"], run["msg"]
        assert "DROP SCHEMA indexops CASCADE" in run["msg"] and "ledger_owner" in run["msg"]
        assert run["retry_safe"] is False
    assert result["ledger_object"] == "indexops" and result["ledger_object_owner"] == planter
    assert is_superuser(tdb, planter) is False
    assert canary(tdb) == []
    assert index_row(tdb, "public", "t_a_idx") is None


@pytest.mark.parametrize("plant", [
    pytest.param("CREATE RULE spy AS ON INSERT TO indexops.jobs DO ALSO INSERT INTO public.canary VALUES ('rule ran')",
                 id="rule"),
    pytest.param("CREATE TRIGGER pwn BEFORE INSERT ON indexops.jobs FOR EACH ROW EXECUTE FUNCTION public.spy()",
                 id="trigger"),
    pytest.param("ALTER TABLE indexops.jobs ALTER COLUMN owner SET DEFAULT public.spy_default()", id="default"),
    pytest.param("ALTER TABLE indexops.jobs ADD CHECK (public.spy_check(change_id)) NOT VALID", id="check"),
    pytest.param("ALTER TABLE indexops.jobs ENABLE ROW LEVEL SECURITY", id="row-security"),
    pytest.param("CREATE TABLE public.jobs_child () INHERITS (indexops.jobs)", id="inheritance"),
    pytest.param("ALTER TABLE indexops.jobs RENAME TO jobs_real; "
                 "CREATE VIEW indexops.jobs AS SELECT * FROM indexops.jobs_real", id="our-own-view"),
])
def test_our_own_ledger_with_code_we_did_not_create_is_refused(tdb, plant):
    """Owned by the login role, but someone added code to it: refused all the same."""
    assert run_pg_index(tdb)["changed"] is True  # the ledger exists and is ours
    tdb.execute("""CREATE FUNCTION public.spy() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN INSERT INTO public.canary VALUES ('trigger ran'); RETURN NEW; END $$""")
    tdb.execute("""CREATE FUNCTION public.spy_default() RETURNS text LANGUAGE plpgsql AS $$
                   BEGIN INSERT INTO public.canary VALUES ('default ran'); RETURN 'x'; END $$""")
    tdb.execute("""CREATE FUNCTION public.spy_check(text) RETURNS boolean LANGUAGE plpgsql AS $$
                   BEGIN INSERT INTO public.canary VALUES ('check ran'); RETURN true; END $$""")
    tdb.execute(plant)
    jobs_before = tdb.fetchall("SELECT job_id, state FROM indexops.jobs ORDER BY job_id")

    result = run_pg_index(tdb, state="absent")

    assert result["failed"] is True, result
    assert result["msg"].startswith("refusing to use the ledger in schema indexops: "), result["msg"]
    assert canary(tdb) == []
    assert index_row(tdb, "public", "t_a_idx") is not None  # the drop never ran
    assert tdb.fetchall("SELECT job_id, state FROM indexops.jobs ORDER BY job_id") == jobs_before


@pytest.mark.parametrize(("grant", "revoke"), [
    ("GRANT TRIGGER ON indexops.jobs TO {role}", "REVOKE TRIGGER ON indexops.jobs FROM {role};"),
    ("GRANT CREATE ON SCHEMA indexops TO {role}", "REVOKE CREATE ON SCHEMA indexops FROM {role};"),
], ids=["trigger-on-the-table", "create-on-the-schema"])
def test_a_grant_that_lets_another_role_add_code_later_is_refused_until_revoked(tdb, roles, grant, revoke):
    """Nothing foreign is in the ledger yet, but another role could add a trigger or an object between
    our check and our next write: refused with the REVOKE to run, and used again once it ran."""
    assert run_pg_index(tdb)["changed"] is True
    other, _ = roles.make()
    tdb.execute(sql.SQL(grant).format(role=sql.Identifier(other)))
    jobs_before = tdb.fetchall("SELECT job_id, state FROM indexops.jobs ORDER BY job_id")

    refused = run_pg_index(tdb, state="absent")

    assert refused["failed"] is True
    assert refused["msg"].startswith("refusing to use the ledger in schema indexops: "), refused["msg"]
    assert f"to role {other}, which could add code to the ledger" in refused["msg"]
    assert revoke.format(role=other) in refused["msg"], refused["msg"]
    assert index_row(tdb, "public", "t_a_idx") is not None
    assert tdb.fetchall("SELECT job_id, state FROM indexops.jobs ORDER BY job_id") == jobs_before

    tdb.execute(sql.SQL(revoke.rstrip(";")).format(role=sql.Identifier(other)))
    dropped = run_pg_index(tdb, state="absent")

    assert dropped["changed"] is True, dropped.get("msg")
    assert index_row(tdb, "public", "t_a_idx") is None


def test_a_foreign_function_in_the_ledger_schema_is_refused(tdb, roles):
    """Our SQL calls nothing in schema indexops, but an object another role put there is refused too."""
    assert run_pg_index(tdb)["changed"] is True
    other, params = roles.make()
    tdb.execute(sql.SQL("GRANT CREATE ON SCHEMA indexops TO {}").format(sql.Identifier(other)))
    with session_as(params) as cur:
        cur.execute("CREATE FUNCTION indexops.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT NULL::timestamptz'")

    result = run_pg_index(tdb, state="absent")

    assert result["failed"] is True
    assert f"function indexops.now() is owned by role {other}" in result["msg"], result["msg"]
    assert index_row(tdb, "public", "t_a_idx") is not None


def test_status_does_not_read_a_foreign_ledger_and_says_why(tdb, roles):
    """A SELECT runs the table's row-level security policies: status must not even read it."""
    planter, params = attacker(tdb, roles)
    with session_as(params) as cur:
        cur.execute("CREATE SCHEMA indexops")
        cur.execute(ledger_utils.CREATE_TABLE)
        cur.execute("""CREATE FUNCTION indexops.spy() RETURNS boolean LANGUAGE plpgsql AS $$
                       BEGIN RAISE EXCEPTION 'foreign ledger code ran as %', current_user; END $$""")
        cur.execute("ALTER TABLE indexops.jobs ENABLE ROW LEVEL SECURITY")
        cur.execute("CREATE POLICY spy ON indexops.jobs USING (indexops.spy())")
        cur.execute("INSERT INTO indexops.jobs (change_id, spec_digest, kind, environment, state) "
                    "VALUES ('c1', 'x', 'apply', 'staging', 'succeeded')")
        cur.execute("GRANT USAGE ON SCHEMA indexops TO PUBLIC")
        cur.execute("GRANT SELECT ON indexops.jobs TO PUBLIC")
    reader, reader_params = roles.make("GRANT pg_monitor TO {role}")

    result = run_module("pg_index_status", {**reader_params, "change_id": "c1",
                                            "changes": [{"id": "c1", "index": {"name": "t_a_idx", "table": "t"}}]})

    assert not result.get("failed"), result.get("msg")
    assert result["ledger"] == {"exists": True, "readable": False, "trusted": False, "jobs": [],
                                "definition_before": None}
    assert result["changes"][0]["job"] is None and result["lost_jobs"] == []
    warning = " ".join(str(item) for item in result["warnings"])
    assert f"schema indexops is owned by role {planter}, not by {reader}" in warning


def test_preflight_reports_a_foreign_ledger_as_a_no_go(tdb, roles):
    planter, params = attacker(tdb, roles)
    with session_as(params) as cur:
        plant_ledger(cur, planter)
    change = {"id": "c1", "owner": "team", "reason": "TEST", "action": "create",
              "index": {"name": "t_a_idx", "table": "public.t", "columns": ["a"]},
              "expected": {"valid": True}, "rollback": {"note": "drop it"}}

    result = run_module("pg_index_preflight", {**tdb.params, "change": change})

    assert result["go"] is False
    privileges = next(check for check in result["checks"] if check["name"] == "privileges")
    assert privileges["ok"] is False
    assert f"schema indexops is owned by role {planter}" in privileges["detail"]
    assert canary(tdb) == [] and is_superuser(tdb, planter) is False


def test_the_ledger_is_created_without_adopting_an_existing_schema(tdb, roles):
    """An empty schema indexops owned by someone else is not adopted by CREATE ... IF NOT EXISTS."""
    planter, params = attacker(tdb, roles)
    with session_as(params) as cur:
        cur.execute("CREATE SCHEMA indexops")
        cur.execute("GRANT ALL ON SCHEMA indexops TO PUBLIC")

    result = run_pg_index(tdb)

    assert result["failed"] is True and f"schema indexops is owned by role {planter}" in result["msg"]
    assert tdb.fetchval("SELECT pg_catalog.to_regclass('indexops.jobs')") is None


def test_a_shared_ledger_owner_named_in_the_policy_is_trusted(tdb, roles):
    shared, _ = roles.make("GRANT CREATE ON DATABASE {db} TO {role}", login=False)
    tdb.execute(sql.SQL("CREATE SCHEMA indexops AUTHORIZATION {}").format(sql.Identifier(shared)))

    refused = run_pg_index(tdb)
    trusted = run_pg_index(tdb, ledger_owner=shared)

    assert refused["failed"] is True and f"owned by role {shared}" in refused["msg"]
    assert trusted["changed"] is True, trusted
    assert tdb.fetchval("SELECT count(*) FROM indexops.jobs WHERE state = 'succeeded'") == 1


# --------------------------------------------------------------------------- search_path

def test_functions_planted_in_public_change_nothing_the_modules_read_or_build(tdb):
    """public.lower(varchar) matches lower(code) better than pg_catalog.lower(text), public.= on
    (varchar, varchar) matches code = 'x' better than pg_catalog's text = text, and
    public.pg_relation_size(oid) matches our size read better than pg_catalog's (regclass): with the
    default search_path (or the table's schema on it) each would win. The change's plan_uses_index
    query folds lower('C1'::varchar) and 'a'::varchar = 'a'::varchar while it is planned, so a planted
    function that was picked would run (and raise) in EXPLAIN. Pinned to pg_catalog, none is called."""
    tdb.execute("""CREATE FUNCTION public.lower(varchar) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
                   BEGIN RAISE EXCEPTION 'public.lower was called'; END $$""")
    tdb.execute("""CREATE FUNCTION public.spy_eq(varchar, varchar) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
                   BEGIN RAISE EXCEPTION 'public.= was called'; END $$""")
    tdb.execute("CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = public.spy_eq)")
    tdb.execute("CREATE FUNCTION public.pg_relation_size(oid) RETURNS bigint LANGUAGE sql AS 'SELECT 424242::bigint'")
    tdb.execute("CREATE FUNCTION public.current_setting(varchar) RETURNS text LANGUAGE sql AS $$SELECT '10'$$")
    tdb.execute("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO PUBLIC")
    expression_index = {"name": "t_lower_code_idx", "table": "t", "columns": [{"expression": "lower(code)"}]}
    query = "SELECT id FROM t WHERE lower(code) = lower('C1'::varchar) AND 'a'::varchar = 'a'::varchar"
    change = {"id": "c1", "owner": "team", "reason": "TEST", "action": "create",
              "index": {"name": "t_lower_code_idx", "table": "public.t", "columns": [{"expression": "lower(code)"}]},
              "expected": {"valid": True, "plan_uses_index": query}, "rollback": {"note": "drop it"}}

    preflight = run_module("pg_index_preflight", {**tdb.params, "change": change})
    created = run_module("pg_index", {**tdb.params, **expression_index, "ledger": LEDGER,
                                      "expected": {"plan_uses_index": query}})
    again = run_module("pg_index", {**tdb.params, **expression_index})
    status = run_module("pg_index_status", {**tdb.params, "indexes": [{"name": "t_lower_code_idx"}]})

    assert preflight["go"] is True, preflight.get("reasons") or preflight.get("msg")
    assert created["changed"] is True, created.get("msg")
    assert created["definition"] == ("CREATE INDEX t_lower_code_idx ON public.t USING btree "
                                     "(lower((code)::text))")
    assert [(item["name"], item["met"]) for item in created["expectations"]] == [("plan_uses_index", True)]
    # The index depends on no function outside pg_catalog (built-in ones are pinned: no pg_depend row).
    assert tdb.fetchval("""SELECT count(*) FROM pg_catalog.pg_depend d
                           WHERE d.objid = 'public.t_lower_code_idx'::regclass
                             AND d.refclassid = 'pg_catalog.pg_proc'::regclass""") == 0
    assert created["table_bytes"] == tdb.fetchval("SELECT pg_catalog.pg_relation_size('public.t')")
    assert again["changed"] is False and again["action"] == "none"
    [index] = status["indexes"]
    assert index["valid"] is True
    assert index["size_bytes"] == tdb.fetchval("SELECT pg_catalog.pg_relation_size('public.t_lower_code_idx')")
    # The plants are live: the same query, planned with the default search_path, picks them.
    with pytest.raises(psycopg2.errors.RaiseException, match="public.lower was called"):
        tdb.execute("EXPLAIN " + query)


def test_a_user_function_outside_pg_catalog_must_be_schema_qualified(tdb):
    tdb.execute("CREATE FUNCTION public.norm(text) RETURNS text LANGUAGE sql IMMUTABLE "
                "AS 'SELECT pg_catalog.lower($1)'")

    bare = run_module("pg_index", {**tdb.params, "name": "t_norm_idx", "table": "t",
                                   "columns": [{"expression": "norm(email)"}]})
    qualified = run_module("pg_index", {**tdb.params, "name": "t_norm_idx", "table": "t",
                                        "columns": [{"expression": "public.norm(email)"}]})

    assert bare["failed"] is True and "function norm(text) does not exist" in bare["msg"], bare["msg"]
    assert qualified["changed"] is True, qualified.get("msg")
    assert qualified["definition"] == "CREATE INDEX t_norm_idx ON public.t USING btree (public.norm(email))"


# --------------------------------------------------------------------------- least privilege

def test_every_flow_runs_as_a_non_superuser_with_exactly_the_documented_grants(tdb, roles):
    """README.md "Least privilege", module by module: pg_index (apply, rollback) = member of the table
    owner's role (which has CREATE on the table's schema, as CREATE INDEX needs) + owner of schema
    indexops (a DBA runs CREATE SCHEMA indexops AUTHORIZATION <role> once), and no pg_monitor;
    pg_index_preflight = the same; status = pg_monitor + USAGE on schema indexops + SELECT on
    indexops.jobs, with ledger_owner naming the apply role. tests/playbooks/test_least_privilege.py
    runs the playbooks with these logins."""
    # PostgreSQL 14 still grants CREATE on schema public to PUBLIC; 15+ does not. Start from 15's default.
    tdb.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    app, _ = roles.make("GRANT CREATE ON SCHEMA public TO {role}", login=False)
    tdb.execute(sql.SQL("ALTER TABLE public.t OWNER TO {}").format(sql.Identifier(app)))
    applier, apply_params = roles.make("GRANT {app} TO {role}", app=app)
    tdb.execute(sql.SQL("CREATE SCHEMA indexops AUTHORIZATION {}").format(sql.Identifier(applier)))
    reader, status_params = roles.make("GRANT pg_monitor TO {role}")
    for role in (applier, reader):
        assert is_superuser(tdb, role) is False
        assert tdb.fetchval("SELECT has_database_privilege(%s, current_database(), 'CREATE')", (role,)) is False
    change = {"id": "c1", "owner": "team", "reason": "TEST", "action": "create",
              "index": {"name": "t_a_idx", "table": "public.t", "columns": ["a"]},
              "expected": {"valid": True}, "rollback": {"note": "drop it"}}

    tdb.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(sql.Identifier(app)))
    no_create = run_module("pg_index_preflight", {**apply_params, "change": change})
    tdb.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(app)))
    preflight = run_module("pg_index_preflight", {**apply_params, "change": change})
    applied = run_pg_index(tdb, apply_params)
    tdb.execute(sql.SQL("GRANT SELECT ON indexops.jobs TO {}").format(sql.Identifier(reader)))
    tdb.execute(sql.SQL("GRANT USAGE ON SCHEMA indexops TO {}").format(sql.Identifier(reader)))
    status = run_module("pg_index_status", {**status_params, "change_id": "c1", "ledger_owner": applier,
                                            "changes": [{"id": "c1", "index": {"name": "t_a_idx", "table": "t"}}]})
    rolled_back = run_pg_index(tdb, apply_params, state="absent", ledger={**LEDGER, "kind": "rollback"})

    assert no_create["go"] is False and no_create["reasons"] == [
        f"privileges: role {applier} has no CREATE privilege on schema public (CREATE INDEX needs it)"]
    assert preflight["go"] is True, preflight["reasons"]
    # pg_monitor is what lets preflight see other roles' transactions; without it preflight still
    # passes and says what it could not see (apply.yml's login gets it: see test_least_privilege.py).
    waits = next(check for check in preflight["checks"] if check["name"] == "long_transactions")
    assert f"role {applier} sees only its own sessions; grant it pg_monitor to see all" in waits["detail"]
    assert applied.get("changed") is True and applied["action"] == "created", applied.get("msg")
    assert not status.get("failed"), status.get("msg")
    assert status["changes"][0]["state"] == "done" and status["changes"][0]["job"]["state"] == "succeeded"
    assert not [item for item in status.get("warnings", []) if reader in str(item)], status["warnings"]
    assert rolled_back["changed"] is True and rolled_back["rolled_back_jobs"] == [1], rolled_back.get("msg")
    assert tdb.fetchval("SELECT pg_catalog.pg_get_userbyid(relowner) FROM pg_catalog.pg_class "
                        "WHERE oid = 'indexops.jobs'::regclass") == applier
