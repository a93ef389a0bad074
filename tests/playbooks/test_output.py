"""What the operator reads: the output of the flows through ansible.cfg's stdout callback
(callback_plugins/indexops.py), issue 16 items 8 (a failure printed once), 9 (no ok/skipped noise) and
10 (debug messages as plain lines, quotes not escaped). ``-v`` must still print everything.
"""

from __future__ import annotations

import re

import pytest

from tests.playbooks.conftest import TASK_BANNER
from tests.playbooks.test_flows import CHANGE, INDEX, flows, ok  # noqa: F401 - flows is a fixture

pytestmark = pytest.mark.playbook

WAIT_TASK = "indexops_operation : Wait for the background job, one progress line per poll"
PREFLIGHT_TASK = "indexops_preflight : Show every preflight check with its detail"
SUMMARY_TASK = "indexops_report : Show where the report is and what it says"
TABLE_TASK = "indexops_status : Print the status table"
SQL = 'CREATE INDEX CONCURRENTLY "orders_customer_created_idx" ON "public"."orders"'
LOCK_FAILURE = "within lock_timeout 200ms in 3 attempts"
# What the default callback prints and the quiet view must not: result words of hidden tasks, include
# lines, a result's JSON, the [ERROR] block with its source snippet.
NOISE = re.compile(r'^(ok: \[|skipping: \[|included: |fatal: \[|\[ERROR\]|Origin: )|=> \{|"msg": |\\"', re.M)


def banners(run) -> list[str]:
    return [match.group("name") for match in TASK_BANNER.finditer(run.stdout)]


def held_table(flows):  # noqa: F811 - the fixture's value
    """A session holding public.orders in SHARE mode: every build attempt is cut at lock_timeout."""
    holder = flows.db.connect(autocommit=False, application_name="test/holder")
    with holder.cursor() as cur:
        cur.execute("LOCK TABLE public.orders IN SHARE MODE")
    return holder


def test_a_successful_apply_prints_the_checks_the_progress_and_the_summary_and_nothing_else(flows):  # noqa: F811
    run = flows.run("apply")

    ok(run)
    assert not NOISE.search(run.output), run.describe()
    # only the tasks that say something have a banner, and each of them says something
    assert banners(run) == ["indexops_change : Say which change this run carries out", PREFLIGHT_TASK, WAIT_TASK,
                            SUMMARY_TASK], run.describe()
    assert "PLAY [Check the Ansible version" not in run.stdout  # a play that printed nothing
    # the decisions: each preflight check a plain line of its own, prefixed by the host
    checks = run.task_output(PREFLIGHT_TASK).strip().splitlines()
    assert checks and all(line.startswith("pgtest: ok    ") for line in checks), checks
    assert any(line.startswith("pgtest: ok    columns_exist: table public.orders") for line in checks)
    # the progress lines (if the build outlived a poll) and the result of the step
    waited = run.task_output(WAIT_TASK).strip().splitlines()
    assert waited[-1] == "changed: [pgtest]", waited
    assert all(line.startswith(f"pgtest: public.{INDEX} ") for line in waited[:-1]), waited
    # the result: the summary as plain lines, the SQL with its quotes as PostgreSQL reads them
    summary = run.task_output(SUMMARY_TASK)
    assert f"apply of change {CHANGE} on local: succeeded" in summary
    assert f"  ran: {SQL}" in summary
    assert "\nPLAY RECAP *" in run.stdout and run.recap["pgtest"]["changed"] == 1, run.describe()
    assert len(run.stdout.splitlines()) < 50, run.describe()  # 161 lines with the default callback


def test_a_failed_apply_prints_its_error_once_and_the_status_table_is_plain_lines(flows):  # noqa: F811
    holder = held_table(flows)
    try:
        run = flows.run("apply", indexops_lock_timeout="200ms", indexops_lock_retries=3)
    finally:
        holder.close()

    assert run.returncode != 0, run.describe()
    assert not NOISE.search(run.output), run.describe()
    # one FAILED line: pg_index's failure is handled by the flow (kept for the report), which then
    # fails the run once in its own words; no [ERROR] block, no JSON
    failed = [line for line in run.output.splitlines() if line.startswith("FAILED ")]
    assert len(failed) == 1, run.describe()
    assert failed[0].startswith(f"FAILED pgtest: apply of change {CHANGE} failed on pgtest: could not get the locks")
    assert LOCK_FAILURE in failed[0] and SQL in failed[0]
    # besides it, only the report's summary carries the error
    summary_error = next(line for line in run.task_output(SUMMARY_TASK).splitlines() if "  error: " in line)
    assert [line for line in run.output.splitlines() if LOCK_FAILURE in line] == [summary_error, failed[0]]
    assert run.recap["pgtest"]["failed"] == 1 and run.recap["pgtest"]["rescued"] == 1, run.describe()

    status = flows.run("status")

    ok(status)
    assert not NOISE.search(status.output), status.describe()
    table = status.task_output(TABLE_TASK).strip().splitlines()
    assert re.fullmatch(r"status at \S+ \(UTC\): \d+ row\(s\)", table[0]), table
    assert table[1].split()[:6] == ["CHANGE", "INDEX", "ENV", "HOST", "DATABASE", "STATE"], table
    [row] = [line for line in table if line.startswith(CHANGE)]
    assert " failed " in row and 'could not get the locks for `CREATE INDEX CONCURRENTLY "orders_custom' in row, row


def test_verbose_prints_the_default_output(flows):  # noqa: F811
    run = flows.run("apply", check=True, verbosity=1)

    ok(run)
    assert "PLAY [Check the Ansible version and the command line]" in run.stdout
    assert "TASK [indexops_change : Load and validate the change file on the control node]" in run.stdout
    assert re.search(r"^ok: \[pgtest\]", run.stdout, re.M) and re.search(r"^skipping: \[pgtest\]", run.stdout, re.M)
    assert '"msg": [' in run.task_output(PREFLIGHT_TASK), run.describe()
