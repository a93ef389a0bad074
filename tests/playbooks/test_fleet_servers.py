"""apply.yml and rollback.yml over two servers as two hosts, in batches (indexops_serial, indexops_max_fail_percentage;
playbooks/rollout.yml), against real PostgreSQL.

The canary host is the ``db`` fixture's database on the suite's own server; the second host is a database on
``second_server`` (tests/conftest.py: INDEXOPS_TEST_DSNS, else 127.0.0.1:5432 when it answers, else a second
database of the suite's server). The change is a UNIQUE index on orders.ref, so duplicate keys in one server's
table make its build fail there and nowhere else.
"""

from __future__ import annotations

import contextlib

import pytest

from tests.conftest import fresh_database
from tests.integration.helpers_fleet import Fleet
from tests.playbooks.test_flows import ok, seed_orders
from tests.playbooks.test_status import Runner, index_oid, ledger_jobs, runner  # noqa: F401 - the fixture

pytestmark = pytest.mark.playbook

CHANGE = "orders-ref-unique"
INDEX = "orders_ref_uq"
CANARY, SECOND = "canary-db", "second-db"
ROLLOUT = {"indexops_serial": [1, "10%", "100%"]}


def with_ref(db):
    db.execute("ALTER TABLE public.orders ADD COLUMN ref bigint")
    db.execute("UPDATE public.orders SET ref = id")


def connection_of(db):
    params = db.params
    return {"indexops_login_host": params["login_host"], "indexops_login_port": params["login_port"],
            "indexops_login_user": params["login_user"], "indexops_db": params["db"],
            **({"indexops_login_password": params["login_password"]} if params.get("login_password") else {})}


def untouched(db):
    """No index of the change and no ledger job: nothing connected for DDL there."""
    return index_oid(db, INDEX) is None and ledger_jobs(db, CHANGE) == []


def job_times(db, kind):
    """(started_at, finished_at) of the change's latest ledger job of that kind."""
    return db.fetchone("SELECT started_at, finished_at FROM indexops.jobs WHERE change_id = %s AND kind = %s "
                       "ORDER BY job_id DESC LIMIT 1", (CHANGE, kind))


class Servers:
    """Two hosts of one staging inventory: the canary (group_vars' connection) and a second server (host vars)."""

    def __init__(self, runner: Runner, second):  # noqa: F811
        self.runner = runner
        self.canary = runner.flows.db
        self.second = second

    def inventory(self, second_vars=None, **policy):
        return self.runner.inventory("staging", CANARY, more_hosts={SECOND: {
            **connection_of(self.second), **(second_vars or {})}}, **policy)

    def run(self, playbook, inventory, extra=None):
        return self.runner.run(playbook, [inventory], change=CHANGE, extra=extra)

    def report(self):
        return self.runner.flows.report(CHANGE)

    def markdown(self):
        return self.runner.flows.reports(CHANGE, ".md")[-1].read_text()


@pytest.fixture
def servers(runner, second_server):  # noqa: F811
    runner.flows.write_change(CHANGE, index={"name": INDEX, "table": "public.orders", "columns": ["ref"],
                                             "unique": True}, expected={"valid": True})
    with_ref(runner.flows.db)
    with fresh_database(second_server) as second:
        seed_orders(second)
        with_ref(second)
        yield Servers(runner, second)


def test_the_canary_server_goes_first_a_failure_there_stops_the_rollout_and_a_rerun_continues(servers):
    canary, second = servers.canary, servers.second
    canary.execute("UPDATE public.orders SET ref = 1 WHERE id IN (1, 2)")  # duplicate keys: the build fails there
    inventory = servers.inventory(**ROLLOUT)

    run = servers.run("apply", inventory)

    assert run.returncode != 0, run.describe()
    assert f"in 2 batch(es): {CANARY} | {SECOND}" in run.stdout, run.describe()
    # The canary's build failed, and the second server's batch never started: no index, no ledger job.
    failure = run.failures
    assert f"FAILED {CANARY}: apply of change {CHANGE} failed on {CANARY}: " in failure, failure
    assert 'could not create unique index "orders_ref_uq"' in failure, failure
    assert f"FAILED {SECOND}" not in failure, failure
    assert index_oid(canary, INDEX) is None, "a failed build leaves no invalid index of ours"
    assert [(row[1], row[3]) for row in ledger_jobs(canary, CHANGE)] == [("apply", "failed")]
    assert untouched(second), "the second server's batch must not start after the canary failed"
    assert run.recap[SECOND]["failed"] == 0, run.recap
    # What the operator reads: the summary and the report say what happened on every server.
    assert f"{SECOND}: not reached: its batch has not run (nothing ran on this server)" in run.stdout, run.describe()
    report = servers.report()
    assert not report["success"]
    assert report["hosts"][SECOND]["reached"] is False
    assert report["hosts"][CANARY]["error"] and "could not create unique index" in report["hosts"][CANARY]["error"]
    assert report["rollout"]["batches"] == [[CANARY], [SECOND]]
    markdown = servers.markdown()
    assert f"## Host `{SECOND}`\n\n**not reached**: its batch has not run" in markdown, markdown
    assert f"Not reached, their batch has not run, nothing ran there: {SECOND}." in markdown, markdown

    canary.execute("UPDATE public.orders SET ref = id")
    reports_before = len(servers.runner.flows.reports(CHANGE))
    rerun = servers.run("apply", inventory)

    ok(rerun)
    assert index_oid(canary, INDEX) is not None and index_oid(second, INDEX) is not None
    assert [(row[1], row[3]) for row in ledger_jobs(second, CHANGE)] == [("apply", "succeeded")]
    canary_done, second_start = job_times(canary, "apply")[1], job_times(second, "apply")[0]
    assert canary_done <= second_start, "the canary's build finished before the second server's started"
    # One report for the run, written by each batch to the same path: the last one says both are done.
    assert len(servers.runner.flows.reports(CHANGE)) == reports_before + 1
    report = servers.report()
    assert report["success"], report
    assert {host: entry["action"] for host, entry in report["hosts"].items()} == {CANARY: "created", SECOND: "created"}
    assert f"apply of change {CHANGE} on staging: succeeded" in rerun.stdout, rerun.describe()

    rollback = servers.run("rollback", inventory)

    ok(rollback)
    assert index_oid(canary, INDEX) is None and index_oid(second, INDEX) is None
    assert [(row[1], row[3]) for row in ledger_jobs(second, CHANGE)][-1] == ("rollback", "succeeded")
    assert job_times(canary, "rollback")[1] <= job_times(second, "rollback")[0], "rollback goes canary first too"
    assert servers.report()["kind"] == "rollback" and servers.report()["success"]


BAD_ROLLOUTS = {
    "serial 0 in the inventory": (
        {"indexops_serial": 0}, {}, None,
        "refused: indexops_serial is 0 in the staging policy; expected a list of batch sizes, each a whole number "
        "above 0 or a percentage from 1% to 100% of the servers"),
    "a word for serial given with -e": (
        {}, {"indexops_serial": "canary"}, None,
        'refused: indexops_serial is "canary" (given with -e on the command line); expected a list of batch sizes'),
    "max_fail_percentage 150 given with -e": (
        {}, {"indexops_max_fail_percentage": 150}, None,
        "refused: indexops_max_fail_percentage is 150 (given with -e on the command line); expected a whole number "
        "from 0 to 100"),
    "servers that disagree": (
        ROLLOUT, {}, {"indexops_serial": [2]},
        "expected the same values for every server of the run"),
}


@pytest.mark.parametrize("case", BAD_ROLLOUTS, ids=list(BAD_ROLLOUTS))
def test_a_bad_rollout_is_refused_in_one_line_before_anything_connects(servers, case):
    policy, extra, second_vars, expected = BAD_ROLLOUTS[case]
    inventory = servers.inventory(second_vars, **policy)

    run = servers.run("apply", inventory, extra=extra)

    assert run.returncode != 0, run.describe()
    # One refusal line (the policy's format: the loop's item, then Ansible's "One or more items failed").
    lines = [line for line in run.failures.splitlines() if "refused: " in line]
    assert len(lines) == 1, run.describe()
    [line] = lines
    assert expected in line, run.describe()
    assert "Nothing was changed" in line and line.endswith("and run again."), line
    assert untouched(servers.canary) and untouched(servers.second)
    assert not servers.canary.fetchval("SELECT to_regclass('indexops.jobs') IS NOT NULL")
    assert not servers.second.fetchval("SELECT to_regclass('indexops.jobs') IS NOT NULL")


def test_a_server_carrying_many_databases_is_one_host_of_the_rollout_and_goes_after_the_canary(servers):
    with Fleet(servers.second, 3) as tenants:
        inventory = servers.inventory({"indexops_databases": tenants.names, "indexops_waves": [1, "rest"]}, **ROLLOUT)

        run = servers.run("apply", inventory)

        ok(run)
        assert f"in 2 batch(es): {CANARY} | {SECOND}" in run.stdout, run.describe()
        canary_done = job_times(servers.canary, "apply")[1]
        for name in tenants.names:
            with contextlib.closing(tenants.connect(name)) as conn, conn.cursor() as cur:
                cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{INDEX}",))
                assert cur.fetchone()[0], f"no index in {name}"
                cur.execute("SELECT min(started_at) FROM indexops.jobs WHERE change_id = %s", (CHANGE,))
                assert canary_done <= cur.fetchone()[0], f"{name} started before the canary server was done"
        assert untouched(servers.second), "the host's databases are the list, not indexops_db"
        host = servers.report()["hosts"][SECOND]
        assert host["counts"] == {"done": 3, "unchanged": 0, "failed": 0, "not touched": 0}, host
        assert [row["database"] for row in host["databases"]] == tenants.names


def test_a_no_go_on_a_later_batchs_server_stops_the_change_before_the_canary_changes_anything(servers):
    servers.second.execute(f"CREATE INDEX {INDEX} ON public.orders (id)")  # the name is taken there: a no-go

    run = servers.run("apply", servers.inventory(**ROLLOUT))

    assert run.returncode != 0, run.describe()
    assert f"FAILED {SECOND}: no-go on {SECOND}: index_name: " in run.failures, run.describe()
    assert untouched(servers.canary), "the canary's batch must not start after a no-go on any server"
    assert "PLAY [Apply index change" not in run.stdout, run.describe()
    assert servers.runner.flows.reports(CHANGE) == [], "no DDL ran, so no apply report"
