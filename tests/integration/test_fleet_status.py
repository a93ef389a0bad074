"""pg_index_status over many databases of one server in one run (options databases, discover,
max_connections), against a real PostgreSQL.

The fleet is 32 copies of one test database: one has CONNECT revoked for the role that reads, one
carries the invalid leftover of a failed unique build, a few lack the change's index, a template and a
database that refuses connections match the pattern too but are never read.
"""

from __future__ import annotations

import psycopg2
import pytest

from tests.integration.helpers_catalog import create_table
from tests.integration.helpers_fleet import Fleet
from tests.integration.helpers_roles import Roles
from tests.pg_index_runner import run_module

COUNT = 32
INDEX = "t_a_idx"
CHANGE = {"id": "t-a", "action": "create", "index": {"name": INDEX, "table": "public.t"}}


@pytest.fixture
def fleet(db):
    create_table(db, rows=200)
    db.execute(f"CREATE INDEX {INDEX} ON public.t (a)")
    with Fleet(db, COUNT) as fleet:
        yield fleet


@pytest.fixture
def monitor(db):
    """A role with pg_monitor only: it is refused where CONNECT is revoked (a superuser never is)."""
    with Roles(db) as roles:
        yield roles.make("GRANT pg_monitor TO {role}")


def status(params, **args):
    result = run_module("pg_index_status", {**params, **args})
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    return result


def by_database(result):
    return {entry["database"]: entry for entry in result["database_results"]}


def catalog_snapshot(fleet, names):
    """Every index of every database named, with its validity: what a read-only module must not change."""
    out = {}
    for name in names:
        with fleet.connect(name) as conn, conn.cursor() as cur:
            cur.execute("SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1")
            out[name] = cur.fetchall()
        conn.close()
    return out


def test_one_run_reads_every_discovered_database_and_a_refused_one_is_its_own_row(fleet, monitor):
    role, params = monitor
    refused, leftover, *_ = fleet.names[5:]
    missing = fleet.names[10:13]
    fleet.admin("REVOKE CONNECT ON DATABASE {} FROM PUBLIC", refused)
    for name in missing:
        fleet.run(name, f"DROP INDEX public.{INDEX}")
    with pytest.raises(psycopg2.errors.UniqueViolation):
        fleet.run(leftover, "CREATE UNIQUE INDEX CONCURRENTLY t_b_uq ON public.t (b)")
    template = fleet.create(f"{fleet.db.name}_tpl")
    fleet.admin("ALTER DATABASE {} WITH IS_TEMPLATE true", template)
    closed = fleet.create(f"{fleet.db.name}_closed")
    fleet.admin("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false", closed)
    before = catalog_snapshot(fleet, [leftover, *missing])

    result = status({**params, "db": fleet.db.name}, discover={"include": [fleet.pattern]}, max_connections=3,
                    changes=[CHANGE])

    entries = by_database(result)
    assert list(entries) == sorted(fleet.names), "templates and closed databases are never read"
    assert result["databases_failed"] == [refused]
    assert result["databases_read"] == COUNT - 1
    assert entries[refused]["failed"] is True and entries[refused]["retry_safe"] is True
    assert "permission denied for database" in entries[refused]["msg"], entries[refused]["msg"]
    assert entries[refused]["msg"].startswith("could not connect to PostgreSQL"), entries[refused]["msg"]
    states = {name: entry["changes"][0]["state"] for name, entry in entries.items() if not entry["failed"]}
    assert {name for name, state in states.items() if state == "pending"} == set(missing)
    assert {name for name, state in states.items() if state == "done"} == set(fleet.names) - {refused, *missing}
    assert [item["name"] for item in entries[leftover]["leftovers"]] == ["t_b_uq"]
    assert all(not entry["leftovers"] for name, entry in entries.items() if name not in (leftover, refused))
    # The one-database keys stay, empty: each database's answer is in its own entry.
    assert result["changes"] == [] and result["leftovers"] == [] and result["database"] == fleet.db.name
    assert catalog_snapshot(fleet, [leftover, *missing]) == before


def test_given_databases_are_read_in_order_and_a_named_change_only_in_its_database(fleet):
    first, second, third = fleet.names[2], fleet.names[0], fleet.names[1]
    named = {**CHANGE, "id": "t-a-third", "database": third}

    result = status(fleet.db.params, databases=[first, second], changes=[CHANGE, named], max_connections=1)

    assert [entry["database"] for entry in result["database_results"]] == [first, second, third]
    changes = {entry["database"]: [change["id"] for change in entry["changes"]] for entry in result["database_results"]}
    assert changes == {first: ["t-a"], second: ["t-a"], third: ["t-a", "t-a-third"]}
    assert result["databases_failed"] == []


def test_connections_stay_within_max_connections(fleet, monitor):
    # The server counts a role's sessions (CONNECTION LIMIT), a closed one until its backend has exited,
    # which lags on a busy machine: with a limit of twice max_connections (each of the 2 workers may
    # have one session still exiting) no database may be refused "too many connections"; reads of all
    # 32 at once would be.
    role, params = monitor
    fleet.admin("ALTER ROLE {} CONNECTION LIMIT 4", role)

    result = status({**params, "db": fleet.db.name}, databases=fleet.names, max_connections=2)

    assert result["databases_failed"] == [], [entry["msg"] for entry in result["database_results"] if entry["failed"]]
    assert result["databases_read"] == COUNT


def test_the_same_reads_with_more_connections_than_the_role_may_hold_fail_alone(fleet, monitor):
    # The counterpart of the test above: the limit is real, and a database refused by it is its own row.
    role, params = monitor
    fleet.admin("ALTER ROLE {} CONNECTION LIMIT 1", role)

    result = status({**params, "db": fleet.db.name}, databases=fleet.names, max_connections=8)

    failed = [entry for entry in result["database_results"] if entry["failed"]]
    assert failed, "8 sessions at a time under a limit of 1 must be refused sometimes"
    assert all("too many connections" in entry["msg"] for entry in failed), [entry["msg"] for entry in failed]
    assert result["databases_read"] == COUNT - len(failed) and result["databases_read"] >= 1


@pytest.mark.parametrize(("args", "fragments"), [
    ({"max_connections": 0}, ["max_connections is 0", "at least 1"]),
    ({"databases": ["x", ""]}, ["empty database name"]),
    ({"databases": ["x" * 64]}, ["longer than 63 bytes"]),
    ({"discover": {"include": [""]}}, ["discover.include holds an empty pattern"]),
    ({"databases": ["x"], "changes": [{**CHANGE, "database": ""}]}, ["change 't-a'", "empty database name"]),
])
def test_bad_fleet_input_fails_before_connecting(db, args, fragments):
    result = run_module("pg_index_status", {**db.params, "login_port": 1, **args})

    assert result.get("failed") is True
    assert all(fragment in result["msg"] for fragment in fragments), result["msg"]
    assert "could not connect" not in result["msg"], "input is checked before anything connects"
    assert result["retry_safe"] is False


def test_discovery_that_cannot_connect_fails_the_run_saying_so(db):
    result = run_module("pg_index_status", {**db.params, "db": "indexops_t_no_such_db", "discover": {}})

    assert result.get("failed") is True
    assert result["msg"].startswith("listing the databases of the server (for discover) failed: could not connect")
    assert result["retry_safe"] is True


def test_without_fleet_options_the_result_is_the_one_database_result(fleet):
    result = status(fleet.db.params, changes=[CHANGE])

    assert "database_results" not in result and "databases_read" not in result
    assert result["database"] == fleet.db.name and result["changes"][0]["state"] == "done"
