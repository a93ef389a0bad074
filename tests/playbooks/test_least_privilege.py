"""The runbook flows as an operator runs them, with the login roles README.md and runbook.md
("Least privilege") document and nothing more: no superuser, no CREATE on the database.

The apply role is a member of the table owner's role (which has CREATE on schema public), owns schema
indexops (a DBA created it once with AUTHORIZATION), and has pg_monitor because apply.yml runs
preflight first. The status role has pg_monitor, USAGE on schema indexops and SELECT on
indexops.jobs, and names the apply role as the ledger's owner. Every playbook runs through the real
ansible-playbook with those logins in the environment's inventory.
"""

from __future__ import annotations

import json

import pytest
from psycopg2 import sql

from tests.integration.helpers_roles import Roles
from tests.playbooks.test_flows import CHANGE, DEFINITION, INDEX, flows, ok  # noqa: F401  (flows: fixture)

pytestmark = pytest.mark.playbook

DROP_CHANGE = "orders-drop-status-note"
DROPPED = "orders_status_note_idx"


def login(params):
    return {"indexops_login_user": params["login_user"], "indexops_login_password": params["login_password"]}


@pytest.fixture
def logins(flows):  # noqa: F811
    """(apply login vars, status login vars, apply role name) with exactly the documented grants."""
    db = flows.db
    with Roles(db) as roles:
        # PostgreSQL 14 still grants CREATE on schema public to PUBLIC; 15+ does not. Start from 15's.
        db.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        app, _ = roles.make("GRANT CREATE ON SCHEMA public TO {role}", login=False)
        db.execute(sql.SQL("ALTER TABLE public.orders OWNER TO {}").format(sql.Identifier(app)))
        applier, apply_params = roles.make("GRANT {app} TO {role}", "GRANT pg_monitor TO {role}", app=app)
        db.execute(sql.SQL("CREATE SCHEMA indexops AUTHORIZATION {}").format(sql.Identifier(applier)))
        reader, status_params = roles.make("GRANT pg_monitor TO {role}")
        for role in (applier, reader):
            assert db.fetchval("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = %s", (role,)) is False
            assert db.fetchval("SELECT has_database_privilege(%s, current_database(), 'CREATE')", (role,)) is False
        yield login(apply_params), login(status_params), applier, reader


def status_rows(flows, change):  # noqa: F811
    paths = sorted(flows.reports_dir.glob("status-*.json"))
    assert paths, f"no status report in {flows.reports_dir}"
    return [row for row in json.loads(paths[-1].read_text())["rows"] if row.get("change") == change]


def test_every_flow_passes_through_its_playbook_with_exactly_the_documented_grants(flows, logins):  # noqa: F811
    as_applier, as_reader, applier, reader = logins
    flows.db.execute(f"CREATE INDEX {DROPPED} ON public.orders (status, lower(note) DESC NULLS LAST)")
    dropped_before = flows.index(DROPPED)
    flows.write_change(DROP_CHANGE, action="drop", index={"name": DROPPED, "table": "public.orders"},
                       expected={"valid": False}, rollback={"note": "Recreating it restores the notes report."})

    preflight = flows.run("preflight", "staging", **as_applier)
    rehearsal = flows.run("rehearse", "staging", **as_applier)
    flows.db.execute(sql.SQL("GRANT USAGE ON SCHEMA indexops TO {}").format(sql.Identifier(reader)))
    flows.db.execute(sql.SQL("GRANT SELECT ON indexops.jobs TO {}").format(sql.Identifier(reader)))
    status = flows.run("status", "staging", **as_reader, indexops_ledger_owner=applier)

    ok(preflight)
    ok(rehearsal)
    assert flows.index() == (True, DEFINITION)
    ok(status)
    [row] = status_rows(flows, CHANGE)
    assert row["state"] == "done", row
    assert "refusing" not in status.output and reader not in status.stderr, status.describe()

    rollback = flows.run("rollback", "staging", **as_applier)
    dropping = flows.run("apply", "staging", change=DROP_CHANGE, **as_applier)
    for path in flows.reports(DROP_CHANGE) + flows.reports(DROP_CHANGE, ".md"):
        path.unlink()  # the rollback below must read the definition from the ledger, as this role
    restoring = flows.run("rollback", "staging", change=DROP_CHANGE, **as_applier)
    cleanup = flows.run("cleanup", "staging", change=None, **as_applier)

    for run in (rollback, dropping, restoring, cleanup):
        ok(run)
    assert flows.index() is None
    assert flows.index(DROPPED) == dropped_before
    assert [(job["kind"], job["action"], job["state"]) for job in flows.ledger(DROP_CHANGE)] == [
        ("apply", "dropped", "rolled_back"), ("rollback", "created", "succeeded")]
    owners = flows.db.fetchall("SELECT DISTINCT pg_catalog.pg_get_userbyid(relowner) FROM pg_catalog.pg_class "
                               "WHERE relnamespace = 'indexops'::regnamespace")
    assert owners == [(applier,)]
