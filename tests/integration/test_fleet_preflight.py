"""pg_index_preflight over many databases of one server in one run (databases, discover), against a
real PostgreSQL.

31 copies of one test database whose table a non-superuser role owns: one has CONNECT revoked for that
role, one already holds the change's index name with another definition (a no-go), the others are a go.
"""

from __future__ import annotations

import pytest

from tests.integration.helpers_catalog import create_table
from tests.integration.helpers_fleet import Fleet
from tests.integration.helpers_roles import Roles
from tests.pg_index_runner import run_module

COUNT = 31
CHANGE = {
    "id": "t-a", "owner": "team-test", "reason": "TEST-12: look up t by a", "action": "create",
    "index": {"name": "t_a_idx", "table": "public.t", "columns": ["a"]},
    "expected": {"valid": True, "max_duration": "10min"},
    "rollback": {"note": "Drop the index; nothing depends on it."},
}


@pytest.fixture
def owner(db):
    """A LOGIN role that owns public.t (set up before the copies, so each copy's table is its)."""
    create_table(db, rows=200)
    with Roles(db) as roles:
        role, params = roles.make("ALTER TABLE public.t OWNER TO {role}", "GRANT CREATE ON SCHEMA public TO {role}")
        yield role, params


@pytest.fixture
def fleet(owner, db):
    role, _ = owner
    with Fleet(db, COUNT) as fleet:
        for name in fleet.names:
            fleet.admin("GRANT CREATE, TEMPORARY ON DATABASE {} TO {}", name, role)
        yield fleet


def indexes(fleet, name):
    with fleet.connect(name) as conn, conn.cursor() as cur:
        cur.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'public.t'::regclass ORDER BY 1")
        rows = [row[0] for row in cur.fetchall()]
    conn.close()
    return rows


def test_preflight_checks_every_database_and_says_which_is_a_no_go_and_which_was_not_checked(owner, fleet):
    _, params = owner
    refused, taken = fleet.names[4], fleet.names[17]
    fleet.admin("REVOKE CONNECT ON DATABASE {} FROM PUBLIC", refused)
    fleet.run(taken, "CREATE INDEX t_a_idx ON public.t (b)")

    result = run_module("pg_index_preflight", {**params, "db": fleet.db.name, "change": CHANGE,
                                                "discover": {"include": [fleet.pattern]}, "max_connections": 3})

    assert not result.get("failed"), result.get("msg")
    entries = {entry["database"]: entry for entry in result["database_results"]}
    assert list(entries) == fleet.names
    assert result["go"] is False
    assert result["databases_failed"] == [refused] and result["databases_read"] == COUNT - 1
    assert {name for name, entry in entries.items() if not entry["failed"] and entry["go"]} == \
        set(fleet.names) - {refused, taken}
    assert [check["name"] for check in entries[taken]["checks"] if check["ok"] is False] == ["index_name"]
    assert [reason.split(":")[0] for reason in result["reasons"]] == [f"database {refused}", f"database {taken}"]
    assert "not checked: could not connect to PostgreSQL" in result["reasons"][0]
    assert "permission denied for database" in result["reasons"][0]
    assert result["reasons"][1].startswith(f"database {taken}: index_name: ")
    # Read-only: no index was made anywhere, the taken one is as it was.
    assert indexes(fleet, fleet.names[0]) == []
    assert indexes(fleet, taken) == ["t_a_idx"]


def test_a_change_that_names_its_database_is_checked_there_only(owner, fleet):
    _, params = owner
    named = {**CHANGE, "database": fleet.names[2]}

    result = run_module("pg_index_preflight", {**params, "change": named, "databases": fleet.names[:2]})

    assert [entry["database"] for entry in result["database_results"]] == [fleet.names[2]]
    assert result["go"] is True, result["reasons"]


def test_fail_on_nogo_lists_every_database_reason(owner, fleet):
    _, params = owner
    fleet.run(fleet.names[1], "CREATE INDEX t_a_idx ON public.t (b)")

    result = run_module("pg_index_preflight", {**params, "change": CHANGE, "databases": fleet.names[:3],
                                                "fail_on_nogo": True})

    assert result.get("failed") is True
    assert result["msg"].startswith(f"preflight of change t-a on 3 database(s): no-go. database {fleet.names[1]}: "
                                    "index_name: "), result["msg"]
    assert result["msg"].endswith("Nothing was changed.")


def test_a_bad_threshold_fails_once_before_connecting(db):
    result = run_module("pg_index_preflight", {**db.params, "login_port": 1, "change": CHANGE,
                                                "databases": ["a", "b"], "long_transaction_threshold": "soon"})

    assert result.get("failed") is True and "long_transaction_threshold" in result["msg"]
    assert "could not connect" not in result["msg"]
