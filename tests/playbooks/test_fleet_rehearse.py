"""playbooks/rehearse.yml over a server carrying many databases, in waves, against a real PostgreSQL: each
database is applied, rolled back and applied again (three ledger jobs in that database); a failed step stops
the waves; the report's measurements, the production gate's evidence, are the slowest database's.

The fleet is test_fleet.py's ref_fleet: 32 copies of a database with public.orders.ref = id, and a change
for a UNIQUE index on it, so duplicate keys in one copy make that copy's build fail.
"""

from __future__ import annotations

import contextlib
import re

import pytest

from tests.playbooks.test_fleet import (  # noqa: F401 - ref_fleet is a fixture
    COUNT,
    UNIQUE_CHANGE,
    UNIQUE_INDEX,
    has_index,
    ledger_of,
    ref_fleet,
    wave_lines,
)
from tests.playbooks.test_flows import ok, refused
from tests.playbooks.test_status import runner  # noqa: F401 - the fixture

pytestmark = pytest.mark.playbook

# A rehearsal of 32 databases runs 96 pg_index steps.
LONG_RUN_S = 900
REHEARSED = ["rehearse", "rollback", "rehearse"]
BIG_ROWS = 300_000


def has_ledger(fleet, name):
    """Whether database ``name`` has the ledger table (created by the first pg_index job there)."""
    with contextlib.closing(fleet.connect(name)) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('indexops.jobs') IS NOT NULL")
        return cur.fetchone()[0]


def rehearsed(fleet, name):
    """The index is there and valid, and the ledger holds a whole rehearsal of the change as its last jobs."""
    jobs = ledger_of(fleet, name)
    return (has_index(fleet, name) == (True,) and [kind for kind, _ in jobs[-3:]] == REHEARSED
            and all(state in ("succeeded", "rolled_back") for _, state in jobs[-3:]))


def test_rehearse_goes_over_a_servers_databases_in_waves_stops_at_a_failure_and_a_rerun_is_the_evidence(
        runner, ref_fleet):  # noqa: F811
    fleet = ref_fleet
    canary, wave2, rest = fleet.names[:1], fleet.names[1:11], fleet.names[11:]
    broken, big = wave2[4], rest[-1]
    fleet.run(broken, "UPDATE public.orders SET ref = 1 WHERE id IN (1, 2)")  # duplicate keys: the build fails
    # The slowest database to build in: the evidence must be its figures.
    fleet.run(big, "INSERT INTO public.orders (id, customer_id, status, total_cents, email, created_at, ref) "
                   "OVERRIDING SYSTEM VALUE SELECT g, g, 'pending', 1, 'big@example.com', now(), g "
                   "FROM generate_series(100001, 100000 + %s) g", (BIG_ROWS,))
    fleet.run(big, "ANALYZE public.orders")
    staging = runner.inventory("staging", "stg-server", indexops_databases_discover={"include": [fleet.pattern]},
                               indexops_waves=[1, 10, "rest"])

    run = runner.run("rehearse", [staging], change=UNIQUE_CHANGE, timeout=LONG_RUN_S)

    assert run.returncode != 0, run.describe()
    lines = wave_lines(run)
    assert sorted(lines) == sorted(fleet.names), run.describe()
    assert all(lines[name] == "done: apply created, rollback dropped, reapply created"
               for name in canary + wave2 if name != broken), lines
    assert lines[broken].startswith("FAILED at apply: ") and "could not create unique index" in lines[broken], lines
    assert "nothing is left behind" in lines[broken], "the error says the invalid index was dropped"
    assert all(lines[name] == "not touched" for name in rest), lines
    stopped = f"1 of {COUNT} database(s) failed (failure budget 0), stopped after wave 2 of 3: {broken} (apply): "
    assert stopped in run.failures and "Key (ref)=(1) is duplicated" in run.failures, run.failures
    assert f"Done 10, unchanged 0, not touched {len(rest)}. Rerunning is safe: it rehearses" in run.failures
    assert f"  failed: {broken} at apply: `CREATE UNIQUE INDEX CONCURRENTLY" in run.stdout, run.describe()
    # What the databases say: rehearsed (ending applied) where it ran, nothing of ours where it failed or never ran.
    assert all(rehearsed(fleet, name) for name in canary + wave2 if name != broken)
    assert ledger_of(fleet, canary[0]) == [("rehearse", "rolled_back"), ("rollback", "succeeded"),
                                           ("rehearse", "succeeded")]
    assert has_index(fleet, broken) is None, "a failed build leaves no invalid index of ours"
    assert ledger_of(fleet, broken) == [("rehearse", "failed")], "the steps after a failed one do not run"
    assert all(has_index(fleet, name) is None and not has_ledger(fleet, name) for name in rest)
    report = runner.flows.report(UNIQUE_CHANGE)
    host = report["hosts"]["stg-server"]
    assert report["kind"] == "rehearse" and report["success"] is False
    assert report["measurements"] is None and host["measurements"] is None, "a failed rehearsal is no evidence"
    assert host["counts"] == {"done": 10, "unchanged": 0, "failed": 1, "not touched": 21}
    [row] = [row for row in host["databases"] if row["database"] == broken]
    assert row["step"] == "apply" and [step["action"] for step in row["steps"].values()] == [None, "skipped", "skipped"]
    markdown = runner.flows.reports(UNIQUE_CHANGE, ".md")[-1].read_text()
    assert "| Database | Wave | Outcome | Steps | Duration | Error |" in markdown
    assert f"| {broken} | 2 | **failed** at apply | apply failed, rollback skipped, reapply skipped |" in markdown
    assert f"| {canary[0]} | 1 | done | apply created, rollback dropped, reapply created |" in markdown
    assert "## Measurements" not in markdown

    # The production gate does not take a failed rehearsal as evidence.
    production = runner.inventory("production", "prd-server", indexops_production=True,
                                  indexops_require_rehearsal=True,
                                  indexops_databases_discover={"include": [fleet.pattern]})
    without = runner.run("apply", [production], change=UNIQUE_CHANGE)

    refused(without, "refused: production requires a successful rehearsal of change orders-ref-unique",
            "1 rehearsal report did not count: 1 failed")
    assert all(has_index(fleet, name) is None for name in rest), "the refusal changed nothing"

    fleet.run(broken, "UPDATE public.orders SET ref = id")
    rerun = runner.run("rehearse", [staging], change=UNIQUE_CHANGE, timeout=LONG_RUN_S)

    ok(rerun)
    lines = wave_lines(rerun)
    done_before = [name for name in canary + wave2 if name != broken]
    assert all(lines[name] == "done: apply none, rollback dropped, reapply created" for name in done_before), lines
    assert all(lines[name] == "done: apply created, rollback dropped, reapply created" for name in [broken, *rest])
    assert all(rehearsed(fleet, name) for name in fleet.names)
    assert [kind for kind, _ in ledger_of(fleet, broken)] == ["rehearse", *REHEARSED]
    report = runner.flows.report(UNIQUE_CHANGE)
    host, measurements = report["hosts"]["stg-server"], report["measurements"]
    assert report["success"] is True and host["counts"] == {"done": 32, "unchanged": 0, "failed": 0, "not touched": 0}
    assert measurements == host["measurements"]
    assert measurements["databases"] == COUNT and measurements["database"] == big, measurements
    slowest = max(host["databases"], key=lambda row: row["duration_s"])
    assert measurements["duration_s"] == slowest["duration_s"] and slowest["database"] == big
    assert measurements["table_rows_estimate"] >= BIG_ROWS and measurements["size_bytes"] == slowest["size_bytes"]
    assert measurements["rollback_duration_s"] == slowest["steps"]["rollback"]["duration_s"]
    assert measurements["reapply_duration_s"] == slowest["steps"]["reapply"]["duration_s"]
    markdown = runner.flows.reports(UNIQUE_CHANGE, ".md")[-1].read_text()
    assert re.search(rf"^\| Measured over \| {COUNT} databases; every figure above is the slowest one's, `{big}` \|$",
                     markdown, re.MULTILINE), markdown
    assert f"(the slowest of {COUNT} databases: {big})" in rerun.stdout, rerun.describe()

    # Production accepts this rehearsal for an apply of the same change: the databases already have the index.
    allowed = runner.run("apply", [production], change=UNIQUE_CHANGE)

    ok(allowed)
    assert all(line == "unchanged, none" for line in wave_lines(allowed, "prd-server").values()), allowed.describe()
    evidence = runner.flows.report(UNIQUE_CHANGE)["rehearsal"]
    assert evidence["environment"] == "staging" and evidence["databases"] == COUNT, evidence
    assert evidence["duration_s"] == measurements["duration_s"]
    assert evidence["table_bytes"] == measurements["table_bytes"]
    markdown = runner.flows.reports(UNIQUE_CHANGE, ".md")[-1].read_text()
    assert f", the slowest of {COUNT} databases) |" in markdown


def test_check_mode_over_a_servers_databases_says_what_would_run_and_changes_nothing(runner, ref_fleet):  # noqa: F811
    fleet = ref_fleet
    staging = runner.inventory("staging", "stg-server", indexops_databases_discover={"include": [fleet.pattern]},
                               indexops_waves=[1, 10, "rest"])

    for playbook in ("apply", "rehearse"):
        run = runner.run(playbook, [staging], change=UNIQUE_CHANGE, check=True, timeout=LONG_RUN_S)

        ok(run)
        lines = wave_lines(run)
        then = ", then roll it back and apply it again" if playbook == "rehearse" else ""
        assert lines == {name: f"would create the index{then} (check mode: nothing ran)" for name in fleet.names}, (
            run.describe())
        assert (f"stg-server: {COUNT} would change, 0 already as specified, 0 failed, 0 not touched, over {COUNT} "
                "database(s) in 3 wave(s) (check mode: nothing ran)") in run.stdout, run.describe()
        assert "measured:" not in run.stdout, "check mode measured nothing"
        assert all(has_index(fleet, name) is None and not has_ledger(fleet, name) for name in fleet.names)
    assert not runner.flows.reports_dir.exists() or not list(runner.flows.reports_dir.rglob("*.json"))

    # A change file that names its database is rehearsed there only, as before.
    named = fleet.names[5]
    runner.flows.write_change(UNIQUE_CHANGE, database=named, index={
        "name": UNIQUE_INDEX, "table": "public.orders", "columns": ["ref"], "unique": True}, expected={"valid": True})
    one = runner.run("rehearse", [staging], change=UNIQUE_CHANGE)

    ok(one)
    assert rehearsed(fleet, named)
    assert all(has_index(fleet, name) is None and not has_ledger(fleet, name) for name in fleet.names if name != named)
    measurements = runner.flows.report(UNIQUE_CHANGE)["measurements"]
    assert measurements["databases"] == 1 and measurements["duration_s"] > 0
