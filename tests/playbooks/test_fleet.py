"""playbooks/status.yml over a server carrying many databases: one host, one module run, one row per
database, against a real PostgreSQL.

The host's databases are found by indexops_databases_discover (32 copies of the test database, by
the pattern <test database>_*), read as a role with pg_monitor only: one database has CONNECT revoked
from it, one carries the invalid leftover of the change's failed build, one lacks the index.
"""

from __future__ import annotations

import contextlib

import psycopg2
import pytest

from tests.integration.helpers_fleet import Fleet
from tests.integration.helpers_roles import Roles
from tests.playbooks.test_flows import CHANGE, DEFINITION, INDEX, ok
from tests.playbooks.test_status import Runner, rows_of, runner  # noqa: F401 - the fixture

pytestmark = pytest.mark.playbook

COUNT = 32
TABLE_TASK = "indexops_status : Print the status table"
DATABASES_TASK = "indexops_preflight : Show the answer of every database of this server"


@pytest.fixture
def fleet(runner):  # noqa: F811
    runner.flows.db.execute(DEFINITION)
    with Fleet(runner.flows.db, COUNT) as fleet:
        yield fleet


def test_status_reads_every_database_of_a_server_in_one_run_each_with_its_row(runner, fleet):  # noqa: F811
    db = runner.flows.db
    refused, leftover, missing = fleet.names[3], fleet.names[7], fleet.names[20]
    with Roles(db) as roles:
        role, params = roles.make("GRANT pg_monitor TO {role}")
        fleet.admin("REVOKE CONNECT ON DATABASE {} FROM PUBLIC", refused)
        fleet.run(missing, f"DROP INDEX public.{INDEX}")
        fleet.run(leftover, f"DROP INDEX public.{INDEX}")
        with pytest.raises(psycopg2.errors.UniqueViolation):
            fleet.run(leftover, f"CREATE UNIQUE INDEX CONCURRENTLY {INDEX} ON public.orders ((1))")
        inventory = runner.inventory("staging", "stg-server", indexops_login_user=role,
                                     indexops_login_password=params["login_password"],
                                     indexops_databases_discover={"include": [fleet.pattern]},
                                     indexops_max_connections=3)

        run, document = runner.status([inventory], change=CHANGE)

    ok(run)
    rows = {row["database"]: row for row in rows_of(document, host="stg-server")
            if row["change"] in (CHANGE, "*")}
    assert sorted(rows) == sorted(fleet.names), "one row per database of the server, and only those"
    assert rows[refused]["state"] == "unreachable"
    assert "permission denied for database" in rows[refused]["last_error"]
    assert rows[leftover]["state"] == "invalid"
    assert rows[missing]["state"] == "pending"
    done = {name for name, row in rows.items() if row["state"] == "done"}
    assert done == set(fleet.names) - {refused, leftover, missing}
    # The operator's table names the database of every row.
    table = run.task_output(TABLE_TASK).splitlines()
    header = next(line for line in table if line.lstrip().startswith("CHANGE"))
    assert header.split()[:6] == ["CHANGE", "INDEX", "ENV", "HOST", "DATABASE", "STATE"], header
    refused_line = next(line for line in table if refused in line)
    assert "unreachable" in refused_line and "stg-server" in refused_line, refused_line
    markdown = sorted(runner.flows.reports_dir.glob("status-*.md"))[-1].read_text()
    assert f"| stg-server | {leftover} | invalid |" in markdown


@pytest.fixture
def owned_fleet(runner):  # noqa: F811
    """31 copies of the flows' database whose public.orders a LOGIN role owns (the role outlives the copies)."""
    db = runner.flows.db
    with Roles(db) as roles:
        role, params = roles.make("ALTER TABLE public.orders OWNER TO {role}",
                                  "GRANT CREATE ON SCHEMA public TO {role}")
        with Fleet(db, 31) as fleet:
            for name in fleet.names:
                fleet.admin("GRANT CREATE, TEMPORARY ON DATABASE {} TO {}", name, role)
            yield fleet, role, params


def test_preflight_checks_every_database_of_a_server_and_the_report_has_a_row_for_each(runner, owned_fleet):  # noqa: F811
    fleet, role, params = owned_fleet
    refused, taken = fleet.names[2], fleet.names[12]
    fleet.admin("REVOKE CONNECT ON DATABASE {} FROM PUBLIC", refused)
    fleet.run(taken, f"CREATE INDEX {INDEX} ON public.orders (id)")
    inventory = runner.inventory("staging", "stg-server", indexops_login_user=role,
                                 indexops_login_password=params["login_password"],
                                 indexops_databases_discover={"include": [fleet.pattern]})

    run = runner.run("preflight", [inventory])

    assert run.returncode != 0, run.describe()
    # The callback prints each line of the task's message after the host's name.
    lines = [line.strip().removeprefix("stg-server: ") for line in run.task_output(DATABASES_TASK).splitlines()]
    go = [line for line in lines if line.endswith(": go") and line.split(":")[0] in fleet.names]
    assert len(go) == len(fleet.names) - 2, run.describe()
    assert any(line.startswith(f"{refused}: not checked: could not connect") and "permission denied" in line
               for line in lines), run.describe()
    assert any(line.startswith(f"{taken}: NO-GO: index_name: ") for line in lines), run.describe()
    [report] = sorted((runner.flows.reports_dir / CHANGE).glob("staging-*.md"))
    markdown = report.read_text()
    assert "| Database | Result | Reasons |" in markdown
    assert f"| {taken} | **no-go** | index\\_name: " in markdown or f"| {taken} | **no-go** | index_name: " in markdown
    assert f"| {refused} | **not checked** | not checked: could not connect" in markdown
    assert f"| {fleet.names[0]} | go | \\- |" in markdown  # indexops_md_text escapes a cell's leading "-"
    # Read-only: no copy got the index.
    with fleet.connect(fleet.names[0]) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (f"public.{INDEX}",))
        assert cur.fetchone()[0] is None
    conn.close()


# --------------------------------------------------------------------------- apply / rollback in waves

UNIQUE_CHANGE = "orders-ref-unique"
UNIQUE_INDEX = "orders_ref_uq"
WAVES_TASK = "indexops_operation : Show what each database of this server ended as"


def has_index(fleet, name, index=UNIQUE_INDEX):
    """(valid,) of public.<index> in database ``name``, or None."""
    with contextlib.closing(fleet.connect(name)) as conn, conn.cursor() as cur:
        cur.execute("SELECT i.indisvalid FROM pg_catalog.pg_index i WHERE i.indexrelid = to_regclass(%s)",
                    (f"public.{index}",))
        return cur.fetchone()


def ledger_of(fleet, name, change=UNIQUE_CHANGE):
    with contextlib.closing(fleet.connect(name)) as conn, conn.cursor() as cur:
        cur.execute("SELECT kind, state FROM indexops.jobs WHERE change_id = %s ORDER BY job_id", (change,))
        return cur.fetchall()


def wave_lines(run, host="stg-server"):
    """{database: what its console line says it ended as} of the run's host."""
    return {line.split(" (wave")[0]: line.split(": ", 1)[1]
            for line in (line.strip().removeprefix(f"{host}: ") for line in run.task_output(WAVES_TASK).splitlines())
            if " (wave " in line}


@pytest.fixture
def ref_fleet(runner):  # noqa: F811
    """32 copies of a database whose public.orders has a column ref = id, and a change for a UNIQUE index on it."""
    runner.flows.db.execute("ALTER TABLE public.orders ADD COLUMN ref bigint")
    runner.flows.db.execute("UPDATE public.orders SET ref = id")
    runner.flows.write_change(UNIQUE_CHANGE, index={"name": UNIQUE_INDEX, "table": "public.orders",
                                                    "columns": ["ref"], "unique": True},
                              expected={"valid": True})
    with Fleet(runner.flows.db, COUNT) as fleet:
        yield fleet


def test_apply_goes_over_a_servers_databases_in_waves_stops_at_a_failure_and_a_rerun_continues(runner, ref_fleet):  # noqa: F811
    fleet = ref_fleet
    canary, wave2, rest = fleet.names[:1], fleet.names[1:11], fleet.names[11:]
    broken = wave2[4]
    fleet.run(broken, "UPDATE public.orders SET ref = 1 WHERE id IN (1, 2)")  # duplicate keys: the build fails
    inventory = runner.inventory("staging", "stg-server", indexops_databases_discover={"include": [fleet.pattern]},
                                 indexops_waves=[1, 10, "rest"])

    run = runner.run("apply", [inventory], change=UNIQUE_CHANGE)

    assert run.returncode != 0, run.describe()
    lines = wave_lines(run)
    assert sorted(lines) == sorted(fleet.names), run.describe()
    assert lines[canary[0]] == "done, created"
    assert all(lines[name] == "done, created" for name in wave2 if name != broken), lines
    assert lines[broken].startswith("FAILED: ") and "could not create unique index" in lines[broken], lines[broken]
    assert all(lines[name] == "not touched" for name in rest), lines
    # The one failure line says what failed, what was not touched, and that a rerun is safe.
    failure = run.failures
    stopped = f"1 of {COUNT} database(s) failed (failure budget 0), stopped after wave 2 of 3: {broken}: "
    assert stopped in failure, failure
    assert 'could not create unique index "orders_ref_uq". Key (ref)=(1) is duplicated' in failure, failure
    assert f"Done 10, unchanged 0, not touched {len(rest)}. Rerunning is safe" in failure, failure
    # A wave is one pg_index run: each poll counts its databases by state and names each database whose
    # build runs; the count line comes once more when the run has ended.
    counts = [line for line in run.stdout.splitlines() if line.startswith(f"stg-server: change {UNIQUE_CHANGE} over ")]
    assert counts, run.describe()
    assert all(line.split(" over ")[1].split(" database(s): ")[0] in ("1", "10") for line in counts), counts
    assert "stg-server: change orders-ref-unique over 1 database(s): 1 done" in counts, counts
    assert "stg-server: change orders-ref-unique over 10 database(s): 9 done, 1 failed" in counts, counts
    building = [line for line in run.stdout.splitlines() if line.startswith("stg-server db ")]
    assert all(line.split(":")[0].removeprefix("stg-server db ") in fleet.names[:11] for line in building), building
    # The database decided: the index where it was built, none (and no invalid leftover) elsewhere.
    assert has_index(fleet, canary[0]) == (True,)
    assert has_index(fleet, broken) is None, "a failed build leaves no invalid index of ours"
    assert has_index(fleet, rest[0]) is None and has_index(fleet, rest[-1]) is None
    assert ledger_of(fleet, broken) == [("apply", "failed")]
    assert ledger_of(fleet, canary[0]) == [("apply", "succeeded")]
    report = runner.flows.report(UNIQUE_CHANGE)
    host = report["hosts"]["stg-server"]
    assert not report["success"] and host["counts"] == {"done": 10, "unchanged": 0, "failed": 1, "not touched": 21}
    assert [row["database"] for row in host["databases"]] == fleet.names
    markdown = runner.flows.reports(UNIQUE_CHANGE, ".md")[-1].read_text()
    assert ("**10 done, 0 unchanged, 1 failed, 21 not touched** over 32 database(s) in 3 wave(s), "
            "stopped after wave 2") in markdown
    assert f"| {rest[0]} | 3 | not touched | none |" in markdown

    fleet.run(broken, "UPDATE public.orders SET ref = id")
    rerun = runner.run("apply", [inventory], change=UNIQUE_CHANGE)

    ok(rerun)
    lines = wave_lines(rerun)
    done_before = set(canary + wave2) - {broken}
    assert all(lines[name] == "unchanged, none" for name in done_before), lines
    assert all(lines[name] == "done, created" for name in [broken, *rest]), lines
    assert all(has_index(fleet, name) == (True,) for name in fleet.names)
    assert ledger_of(fleet, broken) == [("apply", "failed"), ("apply", "succeeded")]
    assert runner.flows.report(UNIQUE_CHANGE)["hosts"]["stg-server"]["counts"] == {
        "done": 22, "unchanged": 10, "failed": 0, "not touched": 0}

    rollback = runner.run("rollback", [inventory], change=UNIQUE_CHANGE)

    ok(rollback)
    assert all(line == "done, dropped" for line in wave_lines(rollback).values()), rollback.describe()
    assert all(has_index(fleet, name) is None for name in fleet.names)
    assert ledger_of(fleet, rest[-1])[-1] == ("rollback", "succeeded")


def test_a_change_file_that_names_a_database_goes_there_only_and_bad_waves_change_nothing(runner, ref_fleet):  # noqa: F811
    fleet = ref_fleet
    inventory = runner.inventory("staging", "stg-server", indexops_databases_discover={"include": [fleet.pattern]},
                                 indexops_waves=[0, "rest"])

    refused = runner.run("apply", [inventory], change=UNIQUE_CHANGE)

    assert refused.returncode != 0
    expected = "indexops_waves entry 1 is 0: expected a whole number above 0, or 'rest' as the last entry"
    assert expected in refused.failures, refused.describe()
    assert all(has_index(fleet, name) is None for name in fleet.names), "bad waves change nothing"

    runner.flows.write_change(UNIQUE_CHANGE, database=fleet.names[5], index={
        "name": UNIQUE_INDEX, "table": "public.orders", "columns": ["ref"], "unique": True}, expected={"valid": True})
    one = runner.run("apply", [inventory], change=UNIQUE_CHANGE)

    ok(one)
    assert has_index(fleet, fleet.names[5]) == (True,)
    assert all(has_index(fleet, name) is None for name in fleet.names if name != fleet.names[5])
