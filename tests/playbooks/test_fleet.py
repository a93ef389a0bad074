"""playbooks/status.yml over a server carrying many databases: one host, one module run, one row per
database, against a real PostgreSQL.

The host's databases are found by indexops_databases_discover (32 copies of the test database, by
the pattern <test database>_*), read as a role with pg_monitor only: one database has CONNECT revoked
from it, one carries the invalid leftover of the change's failed build, one lacks the index.
"""

from __future__ import annotations

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
