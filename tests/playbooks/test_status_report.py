"""playbooks/status.yml's table and report when something is wrong: change files that do not load,
lost jobs, a bad indexops_status_fail_on, --limit, targets that fail or do not answer, host names
merged across inventories, report names.

The real ansible-playbook runs against the real PostgreSQL of the ``db`` fixture, with the inventories
shaped like inventories/<env>/ (test_status.py's ``env_inventory``).
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from ansible_collections.indexops.core.plugins.module_utils import ledger
from tests.playbooks.conftest import (
    ANSIBLE_PLAYBOOK,
    DEFAULT_CALLBACK,
    PLAYBOOK_TIMEOUT_S,
    ROOT,
    PlaybookRun,
    _ansible_env,
)
from tests.playbooks.test_flows import CHANGE, DEFINITION, OPERATOR, ok
from tests.playbooks.test_status import env_inventory, rows_of, runner  # noqa: F401 - runner is a fixture

pytestmark = pytest.mark.playbook

OTHER_CHANGE = "orders-open-email"
REPORT_NAME = re.compile(r"^status-\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{4}\.json$")
TABLE_TASK = "indexops_status : Print the status table"


def status(runner, inventories, *, change=None, extra=None, limit=None, callback=None):  # noqa: F811 - the fixture's value
    """ansible-playbook playbooks/status.yml [-l limit]; (run, newest JSON report or None, report paths).

    ``callback=DEFAULT_CALLBACK``: Ansible's default output, which prints every task that ran."""
    before = set(runner.flows.reports_dir.glob("status-*.json"))
    command = [str(ANSIBLE_PLAYBOOK)]
    for inventory in inventories:
        command += ["-i", str(inventory)]
    command += [str(ROOT / "playbooks" / "status.yml"), "-e", json.dumps(runner.extra(extra, change))]
    if limit:
        command += ["--limit", limit]
    proc = subprocess.run(command, cwd=ROOT, env=_ansible_env(runner.tmp_path, {"USER": OPERATOR, **(callback or {})}),
                          capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT_S, check=False)
    run = PlaybookRun(command=command, returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
    new = sorted(set(runner.flows.reports_dir.glob("status-*.json")) - before)
    document = json.loads(new[-1].read_text()) if new else None
    return run, document, new


def fatal_lines(run):
    return run.failures


def lost_job(db, change_id, environment="local", state="running", kind="apply"):
    """A ledger row; a running one with no backend_pid has no session: lost."""
    if db.fetchval("SELECT pg_catalog.to_regclass('indexops.jobs')") is None:  # the DDL has no IF NOT EXISTS
        db.execute(ledger.CREATE_SCHEMA)
        db.execute(ledger.CREATE_TABLE)
    return db.fetchone(
        "INSERT INTO indexops.jobs (change_id, spec_digest, kind, action, environment, state, owner, backend_pid) "
        "VALUES (%s, 'digest', %s, 'created', %s, %s, 'team-test', NULL) RETURNING job_id",
        (change_id, kind, environment, state))[0]


def ssh_to_closed_port(inventory, host):
    """The inventory with ``host`` reached over ssh at 127.0.0.1:1, where nothing listens."""
    path = inventory / "hosts.yml"
    hosts = yaml.safe_load(path.read_text())
    for group in hosts["all"]["children"]["postgres"]["children"].values():
        if host in group["hosts"]:
            group["hosts"][host] = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1,
                                    "ansible_ssh_common_args": "-o ConnectTimeout=3 -o BatchMode=yes"}
    path.write_text(yaml.safe_dump(hosts, sort_keys=False))
    return inventory


# --------------------------------------------------------------------------- change files that do not load

def test_a_broken_change_file_is_an_error_row_and_a_mistyped_change_fails_saying_it_does_not_exist(runner):  # noqa: F811
    (runner.flows.changes_dir / "broken-change.yml").write_text("id: broken-change\nindex: [unclosed\n")
    inventory = runner.inventory()

    run, document, paths = status(runner, [inventory])

    ok(run)  # a broken file is a row, not a reason to hide the others
    [broken] = rows_of(document, change="broken-change.yml")
    assert broken["state"] == "error" and broken["host"] == "control node", broken
    assert "broken-change.yml" in broken["last_error"] and "YAML" in broken["last_error"], broken
    assert rows_of(document, change=CHANGE, host="pgtest")[0]["state"] == "pending"
    assert "broken-change.yml" in run.task_output(TABLE_TASK)
    assert REPORT_NAME.match(paths[-1].name), paths

    typo, document, _ = status(runner, [inventory], change="orders-customer-craeted")

    assert typo.returncode != 0, typo.describe()
    [row] = rows_of(document, state="error")  # the table and report are still written
    assert row["change"] == "orders-customer-craeted.yml" and "does not exist" in row["last_error"], row
    assert CHANGE in row["last_error"]  # names the ids that do exist
    message = fatal_lines(typo)
    assert "-e change=orders-customer-craeted" in message and "does not exist" in message, typo.describe()


# --------------------------------------------------------------------------- lost jobs

def test_superseded_lost_jobs_are_not_reported_and_the_others_are_even_for_changes_not_asked_for(runner):  # noqa: F811
    db = runner.flows.db
    lost_job(db, CHANGE)  # superseded by the next job of the same change and environment
    lost_job(db, CHANGE, state="succeeded")
    lost_job(db, "gone-change")  # a change without a file: lost, not superseded
    lost_job(db, "retried-change")
    lost_job(db, "retried-change", state="failed")
    lost_job(db, "other-env-change", environment="staging")
    lost_job(db, "other-env-change", environment="local", state="succeeded")  # another environment: no cover
    inventory = runner.inventory()

    run, document, _ = status(runner, [inventory], change=OTHER_CHANGE,
                              extra={"indexops_status_fail_on": '["lost"]'})

    lost = {row["change"] for row in rows_of(document, state="lost")}
    assert lost == {"gone-change", "other-env-change"}, document["rows"]
    assert run.returncode != 0 and document["fail_on"] == ["lost"], run.describe()
    assert "gone-change" in fatal_lines(run)

    run, document, _ = status(runner, [inventory], change=CHANGE)

    ok(run)
    [row] = rows_of(document, change=CHANGE, host="pgtest")
    assert "lost" not in row["states"] and "lost" not in row["last_error"], row  # its newest job succeeded


# --------------------------------------------------------------------------- indexops_status_fail_on

def test_an_unknown_fail_on_state_fails_before_anything_is_read(runner):  # noqa: F811
    run, document, _ = status(runner, [runner.inventory()], extra={"indexops_status_fail_on": "invalid,lsot"},
                              callback=DEFAULT_CALLBACK)  # it prints every task that ran

    assert run.returncode != 0 and document is None, run.describe()
    message = fatal_lines(run)
    assert "'lsot'" in message and "pending, building, done" in message and "error" in message, message
    assert "Read the status of every change on this target" not in run.stdout


# --------------------------------------------------------------------------- targets: --limit, failures

def test_limit_failed_and_unreachable_targets_each_get_their_own_row_and_the_report_is_always_written(runner):  # noqa: F811
    db = runner.flows.db
    db.execute(DEFINITION)
    inventories = [
        runner.inventory("staging", "stg-db"),
        runner.inventory("production", "prod-db"),
        ssh_to_closed_port(runner.inventory("qa", "qa-db"), "qa-db"),  # the target itself does not answer
        # a bad policy value: the role's argument spec fails on this target only
        runner.inventory("dev", "dev-db", indexops_status_connect_timeout="soon"),
    ]

    run, document, _ = status(runner, inventories, change=CHANGE)

    assert run.returncode == 0, run.describe()
    by_host = {row["host"]: row for row in document["rows"]}
    assert set(by_host) == {"stg-db", "prod-db", "qa-db", "dev-db"}, document["rows"]
    assert by_host["stg-db"]["state"] == "done" and by_host["prod-db"]["state"] == "done"
    assert by_host["qa-db"]["state"] == "unreachable", by_host["qa-db"]
    assert by_host["dev-db"]["state"] == "error", by_host["dev-db"]
    assert "indexops_status_connect_timeout" in by_host["dev-db"]["last_error"], by_host["dev-db"]

    limited, document, _ = status(runner, inventories, change=CHANGE, limit="stg-db")

    ok(limited)
    assert {row["host"] for row in document["rows"]} == {"stg-db"}, document["rows"]  # no unreachable prod-db
    assert "prod-db" not in limited.task_output(TABLE_TASK)

    every_one_fails, document, paths = status(runner, inventories, change=CHANGE, limit="qa-db,dev-db",
                                              extra={"indexops_status_fail_on": "unreachable"})

    assert every_one_fails.returncode != 0 and paths, every_one_fails.describe()
    assert {row["host"]: row["state"] for row in document["rows"]} == {"qa-db": "unreachable", "dev-db": "error"}
    assert paths[-1].with_suffix(".md").exists()
    assert "qa-db" in every_one_fails.task_output(TABLE_TASK)


def test_a_host_name_in_two_inventories_is_refused_before_anything_is_read(runner):  # noqa: F811
    inventories = [runner.inventory("staging", "db1"), runner.inventory("production", "db1")]

    run, document, _ = status(runner, inventories, callback=DEFAULT_CALLBACK)  # it prints every task that ran

    assert run.returncode != 0 and document is None, run.describe()
    message = fatal_lines(run)
    assert "host db1 is in 2 inventories" in message and "rename it" in message, message
    assert str(inventories[0]) in message and str(inventories[1]) in message
    assert "Read the status of every change on this target" not in run.stdout
