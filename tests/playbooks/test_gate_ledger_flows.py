"""The production gate with indexops_rehearsal_source: ledger, through ansible-playbook (issue 15): a
forged report file never passes, break glass still works and is recorded, and the rehearsal ledger is
read in the change file's database when the change names one.

Staging and production share the test database here, as in test_flows.py; the ledger connection
points at it.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.playbooks.test_flows import CHANGE, DEFINITION, INDEX, OPERATOR, Flows, new_flows, ok, refused

pytestmark = pytest.mark.playbook


@pytest.fixture
def flows(db, run_playbook, environment_inventory, tmp_path) -> Flows:
    """As test_flows.py's: public.orders with 3,000 rows, the change files copied to a temporary directory."""
    return new_flows(db, run_playbook, environment_inventory, tmp_path)


def ledger_policy(flows, **ledger):
    params = flows.db.params
    return {"indexops_rehearsal_source": "ledger",
            "indexops_rehearsal_ledger": {"login_host": params["login_host"], "login_port": params["login_port"],
                                          "login_user": params["login_user"], "db": flows.db.name, **ledger}}


def forge_rehearsal_report(flows, digest):
    """A well-formed, successful, recent staging rehearsal report of ``digest`` in the reports directory
    (named as if old, so that Flows.report() still picks the newest real report)."""
    path = flows.reports_dir / CHANGE / "staging-20000101T000000Z.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "kind": "rehearse", "change_id": CHANGE, "digest": digest, "environment": "staging", "operator": "mallory",
        "finished_at": dt.datetime.now(dt.UTC).isoformat(), "success": True,
        "measurements": {"duration_s": 0.1, "table_bytes": 1}}))


def digest_of(flows):
    run = flows.run("preflight", "local")
    ok(run)
    return flows.report()["digest"]


def test_a_forged_report_does_not_pass_and_break_glass_still_works_and_is_recorded(flows):
    forge_rehearsal_report(flows, digest_of(flows))

    forged = flows.run("apply", "production", **ledger_policy(flows))

    refused(forged, "refused: production requires a successful rehearsal of change " + CHANGE,
            f"none found in the rehearsal ledger (indexops.jobs in database {flows.db.name} on ")
    assert flows.index() is None

    reason = "INC-77: checkout down, staging unavailable"
    glass = flows.run("apply", "production", extra={"indexops_override_reason": reason}, **ledger_policy(flows))

    ok(glass)
    assert flows.index() == (True, DEFINITION)
    [job] = [job for job in flows.ledger() if job["environment"] == "production"]
    assert job["override_reason"] == reason and job["operator"] == OPERATOR
    report = flows.report()
    assert report["override"] is True and report["rehearsal"] is None
    assert any("none found in the rehearsal ledger" in line for line in report["overridden"])


def test_the_rehearsal_is_read_in_the_change_file_s_database(flows):
    flows.write_change("orders-in-db", database=flows.db.name,
                       index={"name": INDEX, "table": "public.orders",
                              "columns": ["customer_id", {"name": "created_at", "order": "desc"}]})
    ok(flows.run("rehearse", "staging", change="orders-in-db"))
    flows.db.execute(f"DROP INDEX public.{INDEX}")  # staging and production share the test database

    # The policy names a database that does not exist: the change's own database is where it rehearsed.
    run = flows.run("apply", "production", change="orders-in-db", **ledger_policy(flows, db="no_such_database"))

    ok(run)
    assert flows.index() == (True, DEFINITION)
    report = flows.report("orders-in-db")
    assert report["rehearsal"]["source"] == "ledger" and report["rehearsal"]["environment"] == "staging"
    assert f"database {flows.db.name} on" in report["rehearsal"]["where"]
    markdown = flows.reports("orders-in-db", ".md")[-1].read_text()
    assert "| Rehearsal | `indexops.jobs in database" in markdown
