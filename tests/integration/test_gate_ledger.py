"""indexops_gate with rehearsal_source: ledger against real PostgreSQL (issue 15): the gate reads the
rehearsal environment's indexops.jobs, only when that ledger is owned by a trusted role, in a read-only
session, and names where it looked and why it could not read it.

The ledger rows are written with plugins/module_utils/ledger.py exactly as a rehearsal writes them
(rehearse, rollback, rehearse; the rollback marks the first apply rolled_back).
"""

from __future__ import annotations

import contextlib
import socket

import pytest
from psycopg2 import sql

from ansible_collections.indexops.core.plugins.module_utils import ledger as ledger_utils
from ansible_collections.indexops.core.plugins.module_utils import rehearsal_ledger
from ansible_collections.indexops.core.plugins.module_utils.connection import connect
from tests.integration.helpers_roles import Roles
from tests.pg_index_runner import run_module

CHANGE = "orders-customer-created"
DIGEST = "ab" * 32
EDITED = "cd" * 32
CONNECTION_KEYS = ("login_host", "login_port", "login_user", "login_password", "db")


@pytest.fixture
def roles(db):
    with Roles(db) as made:
        yield made


def ledger_params(params, **extra):
    return {**{key: params[key] for key in CONNECTION_KEYS if params.get(key) is not None}, **extra}


def gate(params, **args):
    """Run the gate as production's apply would, reading the ledger ``params`` connect to."""
    return run_module("indexops_gate", {
        "change_id": CHANGE, "digest": DIGEST, "environment": "production", "require_rehearsal": True,
        "rehearsal_environments": ["staging"], "rehearsal_max_age": "7d", "rehearsal_source": "ledger",
        "rehearsal_ledger": params, "operator": "alice", **args})


def job(conn, kind, action, digest, state="succeeded", environment="staging", observed=None):
    job_id = ledger_utils.start(conn, {
        "change_id": CHANGE, "spec_digest": digest, "kind": kind, "action": action, "environment": environment,
        "index_schema": "public", "index_name": "orders_customer_created_idx", "table_name": "orders",
        "definition_before": None, "owner": "team", "rollback_note": "drop it", "operator": "bob",
        "override_reason": None, "expected": {}})
    ledger_utils.finish(conn, job_id, state=state, attempts=1, action=action,
                        observed=observed or {"action": action, "duration_s": 2.5, "table_bytes": 8192})
    return job_id


def rehearse(db, digest=DIGEST, *, fail_reapply=False):
    """The three jobs of one rehearsal, as playbooks/rehearse.yml records them; returns their ids."""
    conn = connect(db.params, "indexops-test/rehearsal")
    try:
        ledger_utils.ensure(conn)
        first = job(conn, "rehearse", "created", digest, observed={"action": "created", "duration_s": 3.25,
                                                                    "table_bytes": 65536, "size_bytes": 16384})
        rollback = job(conn, "rollback", "dropped", digest)
        ledger_utils.mark_rolled_back(conn, CHANGE, "staging", rollback)
        again = job(conn, "rehearse", "created", digest, state="failed" if fail_reapply else "succeeded")
    finally:
        conn.close()
    return [first, rollback, again]


def test_the_gate_goes_on_a_rehearsal_of_the_same_digest_in_the_staging_ledger(db):
    ids = rehearse(db)

    result = gate(ledger_params(db.params))

    assert "failed" not in result, result.get("msg")
    assert result["go"] is True and result["rehearsal_source"] == "ledger"
    evidence = result["rehearsal"]
    assert evidence["job_ids"] == ids and evidence["environment"] == "staging" and evidence["digest"] == DIGEST
    assert evidence["duration_s"] == 3.25 and evidence["table_bytes"] == 65536 and evidence["size_bytes"] == 16384
    assert evidence["path"] is None and f"database {db.name}" in evidence["where"]
    assert 0 <= evidence["age_s"] < 3600


def test_an_edited_change_and_a_failed_rehearsal_do_not_pass_and_the_refusal_says_where_it_looked(db):
    rehearse(db, EDITED)
    rehearse(db, fail_reapply=True)

    result = gate(ledger_params(db.params))

    assert result["failed"] is True and result["go"] is False
    assert result["msg"].startswith("refused: production requires a successful rehearsal of change " + CHANGE)
    assert f"none found in the rehearsal ledger (indexops.jobs in database {db.name} on " in result["msg"]
    assert "2 rehearsals in the ledger did not count: 1 for another digest (the change was edited after it), " \
           "1 failed" in result["msg"]


def test_a_database_without_a_ledger_has_no_rehearsal(db):
    result = gate(ledger_params(db.params))

    assert result["failed"] is True and result["rehearsal"] is None
    assert "none found in the rehearsal ledger" in result["msg"] and "could not be read" not in result["msg"]
    assert db.fetchval("SELECT to_regnamespace('indexops') IS NULL"), "the gate must not create the ledger"


def test_a_ledger_owned_by_another_role_is_not_read_and_the_refusal_says_whose(db, roles):
    planter, params = roles.make("GRANT CREATE ON DATABASE {db} TO {role}")
    conn = connect(params, "indexops-test/planter")
    try:  # a role that may create schemas plants a ledger that "proves" a rehearsal
        with conn.cursor() as cur:
            cur.execute(ledger_utils.CREATE_SCHEMA)
            cur.execute(ledger_utils.CREATE_TABLE)
            cur.execute("GRANT USAGE ON SCHEMA indexops TO PUBLIC")
            cur.execute("GRANT SELECT ON indexops.jobs TO PUBLIC")
        for kind, action in (("rehearse", "created"), ("rollback", "dropped"), ("rehearse", "created")):
            job(conn, kind, action, DIGEST)
    finally:
        conn.close()

    result = gate(ledger_params(db.params))

    assert result["failed"] is True and result["go"] is False and result["rehearsal"] is None
    assert "which could not be read: refusing to use the ledger in schema indexops" in result["msg"]
    assert f"is owned by role {planter}" in result["msg"]
    assert "indexops_rehearsal_ledger.ledger_owner" in result["msg"]


def test_a_read_only_role_reads_the_ledger_when_the_apply_role_is_named_its_owner(db, roles):
    rehearse(db)  # the ledger belongs to the suite's login role, which plays staging's apply role
    owner = db.params["login_user"]
    reader, reader_params = roles.make("GRANT USAGE ON SCHEMA indexops TO {role}",
                                       "GRANT SELECT ON indexops.jobs TO {role}")
    _, stranger_params = roles.make()

    trusted = gate(ledger_params(reader_params, ledger_owner=owner))
    untrusted = gate(ledger_params(reader_params))
    forbidden = gate(ledger_params(stranger_params, ledger_owner=owner))

    assert trusted["go"] is True, trusted.get("msg")
    assert untrusted["go"] is False and f"is owned by role {owner}, not by {reader}" in untrusted["msg"]
    assert forbidden["go"] is False and "may not read the rehearsal ledger indexops.jobs" in forbidden["msg"]
    assert "GRANT SELECT ON indexops.jobs" in forbidden["msg"]


def test_the_gate_session_cannot_write(db):
    """The gate's session is read-only: even a role that owns the ledger cannot change it through it."""
    rehearse(db)

    conn = connect(db.params, "indexops-test/gate")
    try:
        with conn.cursor() as cur:
            cur.execute(rehearsal_ledger.READ_ONLY)
            with pytest.raises(Exception, match="read-only transaction"):
                cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier("indexops", "jobs")))
    finally:
        conn.close()
    assert db.fetchval("SELECT count(*) FROM indexops.jobs") == 3


def test_an_unreachable_ledger_is_named_and_break_glass_still_passes_and_is_recorded(db):
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # nothing listens there once the socket is closed
    params = ledger_params(db.params, login_host="127.0.0.1", login_port=closed_port, connect_timeout=2)

    refused = gate(params)
    overridden = gate(params, override_reason="INC-5: staging is down")

    assert refused["go"] is False
    assert "which could not be read: could not connect to PostgreSQL" in refused["msg"]
    assert f"127.0.0.1:{closed_port}" in refused["msg"]
    assert overridden["go"] is True and overridden["override"] is True
    assert overridden["override_reason"] == "INC-5: staging is down"
    assert "could not be read" in overridden["overridden"][0]


def test_the_password_never_appears_in_the_result(db, roles):
    _, params = roles.make()

    result = gate(ledger_params(params))

    assert params["login_password"] not in str(result)


def test_a_run_that_needs_no_rehearsal_never_connects_to_the_ledger(db):
    """Rollback, cleanup and rehearse runs pass require_rehearsal=false: no connection to another environment."""
    rehearse(db)
    before = db.fetchval("SELECT count(*) FROM indexops.jobs")

    result = gate(ledger_params(db.params, login_user="no_such_role_anywhere"), require_rehearsal=False)

    assert "failed" not in result, result.get("msg")
    assert result["go"] is True and result["rehearsal"] is None and not result.get("warnings")
    assert db.fetchval("SELECT count(*) FROM indexops.jobs") == before
