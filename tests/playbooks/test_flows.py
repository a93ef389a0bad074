"""The runbook flows end to end: playbooks/{preflight,apply,rehearse,rollback,cleanup}.yml run by the
real ansible-playbook (conftest.py) against the ``db`` fixture's database, one generated inventory per
environment (local, staging, production) with that environment's policy.

Every test checks the database itself (catalog and ledger) and the reports on disk, not only what
Ansible printed; refusals are checked to leave nothing behind: no index and not even the ledger
schema, which the first DDL job would create.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.sandbox import ORDERS_DDL, ORDERS_SEED
from tests.playbooks.conftest import DEFAULT_CALLBACK

pytestmark = pytest.mark.playbook

ROOT = Path(__file__).resolve().parents[2]
CHANGE = "orders-customer-created"
INDEX = "orders_customer_created_idx"
DEFINITION = "CREATE INDEX orders_customer_created_idx ON public.orders USING btree (customer_id, created_at DESC)"
OPERATOR = "alice"  # the operator's $USER, which the flows record when no -e indexops_operator is given
ROWS = 3000
# humanize's one format for people (module_utils/humanize.py): 0.4 s, 36 s, 3 min 05 s, 3 h 00 min; 812 B, 60.2 MiB.
DURATION = r"(?:\d+\.\d s|\d+ s|\d+ min \d\d s|\d+ h \d\d min)"
SIZE = r"(?:\d+ B|\d+\.\d [KMGT]iB)"

# A Wednesday noon, and a Monday 23:30 in Berlin, for the maintenance window Mon 22:00-02:00.
WINDOW = {"days": ["mon"], "start": "22:00", "end": "02:00", "timezone": "Europe/Berlin"}
WINDOW_CLOSED_AT = "2026-11-25T12:00:00+00:00"
WINDOW_OPEN_AT = "2026-11-23T22:30:00+00:00"


# --------------------------------------------------------------------------- helpers

@dataclass
class Flows:
    """Runs the flows against the test database with the changes and reports in temporary directories."""

    db: Any
    run_playbook: Any
    environment_inventory: Any
    changes_dir: Path
    reports_dir: Path

    def inventory(self, env: str, drop=(), **policy) -> Path:
        return self.environment_inventory(env, drop=drop, indexops_changes_dir=str(self.changes_dir),
                                          indexops_reports_dir=str(self.reports_dir), **policy)

    def run(self, playbook: str, env: str = "local", *, change: str | None = CHANGE, check: bool = False,
            extra: dict[str, Any] | None = None, drop=(), callback: dict[str, str] | None = None,
            verbosity: int = 0, **policy):
        """``callback=DEFAULT_CALLBACK`` for Ansible's default output (every task's banner)."""
        extra_vars = {**({"change": change} if change else {}), **(extra or {})}
        return self.run_playbook(f"playbooks/{playbook}.yml", inventory=self.inventory(env, drop=drop, **policy),
                                 extra_vars=extra_vars, check=check, verbosity=verbosity,
                                 env={"USER": OPERATOR, **(callback or {})})

    def write_change(self, change_id: str, **fields) -> Path:
        """changes/<id>.yml: the orders-customer-created example with ``fields`` replaced."""
        document = yaml.safe_load((ROOT / "changes" / f"{CHANGE}.yml").read_text())
        document.update(id=change_id, **fields)
        path = self.changes_dir / f"{change_id}.yml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def reports(self, change: str = CHANGE, suffix: str = ".json") -> list[Path]:
        """The change's reports, oldest first (by the UTC timestamp in <env>-<timestamp>.json)."""
        return sorted((self.reports_dir / change).glob(f"*{suffix}"), key=lambda path: path.stem.rsplit("-", 1)[1])

    def report(self, change: str = CHANGE) -> dict[str, Any]:
        """The newest JSON report of the change."""
        paths = self.reports(change)
        assert paths, f"no report in {self.reports_dir / change}"
        return json.loads(paths[-1].read_text())

    def ledger(self, change: str = CHANGE) -> list[dict[str, Any]]:
        if not self.ledger_exists():
            return []
        columns = ("kind", "action", "environment", "state", "operator", "override_reason", "spec_digest",
                   "definition_before", "last_error")
        rows = self.db.fetchall(f"SELECT {', '.join(columns)} FROM indexops.jobs WHERE change_id = %s ORDER BY job_id",
                                (change,))
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def ledger_exists(self) -> bool:
        return self.db.fetchone("SELECT to_regclass('indexops.jobs') IS NOT NULL")[0]

    def index(self, name: str = INDEX) -> tuple[bool, str] | None:
        """(valid, definition) of public.<name>, or None."""
        return self.db.fetchone(
            "SELECT i.indisvalid, pg_catalog.pg_get_indexdef(c.oid) FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid "
            "WHERE n.nspname = 'public' AND c.relname = %s", (name,))


def seed_orders(db) -> None:
    """public.orders as in the sandbox, 3,000 rows, analyzed."""
    db.execute(ORDERS_DDL)
    db.execute(ORDERS_SEED, {"rows": ROWS})
    db.execute("ANALYZE public.orders")


def new_flows(db, run_playbook, environment_inventory, tmp_path, *statements) -> Flows:
    """public.orders as in the sandbox (3,000 rows), then ``statements`` (more demo tables), and a copy of
    the repository's change files in a temporary directory: the start of every flows test module."""
    seed_orders(db)
    for statement in statements:
        db.execute(statement)
    changes_dir = tmp_path / "changes"
    changes_dir.mkdir()
    for path in (ROOT / "changes").glob("*.yml"):
        shutil.copy(path, changes_dir / path.name)
    return Flows(db, run_playbook, environment_inventory, changes_dir, tmp_path / "reports")


@pytest.fixture
def flows(db, run_playbook, environment_inventory, tmp_path) -> Flows:
    """public.orders as in the sandbox (3,000 rows), and a copy of the repository's change files."""
    return new_flows(db, run_playbook, environment_inventory, tmp_path)


def ok(run) -> None:
    assert run.returncode == 0, run.describe()
    assert all(stats["failed"] == 0 for stats in run.recap.values()), run.describe()


def refused(run, *phrases: str) -> str:
    """The run failed; returns its failure message after checking that every phrase is in it."""
    assert run.returncode != 0, run.describe()
    message = run.failures
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} is not in the failure:\n{message}\n{run.describe()}"
    return message


def nothing_changed(flows: Flows, index: str = INDEX) -> None:
    assert flows.index(index) is None
    assert not flows.ledger_exists(), "the ledger schema was created: something connected for DDL"


# --------------------------------------------------------------------------- apply

def test_apply_builds_verifies_records_and_reports_and_a_rerun_changes_nothing(flows):
    run = flows.run("apply")

    ok(run)
    assert run.recap["pgtest"]["changed"] == 1, run.describe()
    assert flows.index() == (True, DEFINITION)
    [job] = flows.ledger()
    assert job["kind"] == "apply" and job["action"] == "created" and job["state"] == "succeeded"
    assert job["environment"] == "local" and job["operator"] == OPERATOR and job["override_reason"] is None
    report = flows.report()
    assert report["kind"] == "apply" and report["success"] is True and report["digest"] == job["spec_digest"]
    assert report["operator"] == OPERATOR and report["environment"] == "local"
    host = report["hosts"]["pgtest"]
    assert host["action"] == "created" and host["valid"] is True and host["definition"] == DEFINITION
    assert host["sql"] == ['CREATE INDEX CONCURRENTLY "orders_customer_created_idx" ON "public"."orders" '
                           'USING "btree" ("customer_id", "created_at" DESC)']
    assert {e["name"] for e in host["expectations"]} == {"valid", "max_duration", "max_size", "plan_uses_index"}
    assert all(e["met"] for e in host["expectations"])
    markdown = flows.reports(suffix=".md")[-1].read_text()
    assert markdown.startswith("# Apply of index change `orders-customer-created` on local: succeeded")
    assert "CREATE INDEX CONCURRENTLY" in markdown and "Watch the latency of GET /orders." in markdown
    assert f"ansible-playbook playbooks/rollback.yml -i inventories/local -e change={CHANGE}" in markdown
    assert_one_format(run.stdout, markdown, host)

    again = flows.run("apply")

    ok(again)
    assert again.recap["pgtest"]["changed"] == 0, again.describe()
    assert flows.index() == (True, DEFINITION)
    assert [job["action"] for job in flows.ledger()] == ["created", "none"]


def assert_one_format(stdout, markdown, host):
    """The summary and the Markdown report give durations, sizes and times in humanize's one format:
    no raw bytes, no Python True, no MB meaning MiB, no '0.92 s' next to '1m05s' (issue 16 item 16)."""
    summary = re.search(rf"pgtest: created, valid, index ({SIZE}), ({DURATION}), 1 statement\(s\) in 1 attempt\(s\), "
                        rf"lock waits ({DURATION}), waited for other transactions ({DURATION})", stdout)
    assert summary, stdout
    assert re.search(r"finished \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)", stdout), stdout
    assert f"| Index size | {summary.group(1)} |" in markdown
    assert f"| Duration | {summary.group(2)} |" in markdown
    assert re.search(r"\| Started \| \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \|", markdown), markdown
    assert re.search(rf"\| Table \| {SIZE}, about 3,000 rows \|", markdown), markdown
    assert "| valid | valid | valid | yes |" in markdown
    markdown = markdown.replace("\\.", ".")  # indexops_md_text escapes '0.1' at a cell's start; it renders as 0.1
    assert re.search(rf"\| max_duration \| at most 10 min 00 s \| {DURATION} \| yes \|", markdown), markdown
    assert re.search(rf"\| max_size \| at most 500.0 MiB \| {SIZE} \| yes \|", markdown), markdown
    for wrong in (" MB", " kB", "Bytes", " bytes", "True", ".00 s"):
        assert wrong not in markdown and wrong not in stdout, wrong
    assert [e["met"] for e in host["expectations"]] == [True] * 4  # the machine's answer stays a bool


def test_check_mode_shows_the_sql_and_changes_nothing(flows):
    run = flows.run("apply", check=True)

    ok(run)
    assert "check mode: no DDL ran and no report was written" in run.stdout
    # a plain line, as the operator reads it: quotes not escaped (issue 16 item 10)
    assert 'would run: CREATE INDEX CONCURRENTLY "orders_customer_created_idx"' in run.stdout
    # worded as what would happen, with no figures of a run that did not happen (issue 16 item 4)
    assert "pgtest: would create the index; nothing ran" in run.stdout, run.describe()
    assert "pgtest: created" not in run.stdout and "attempt(s)" not in run.stdout, run.describe()
    nothing_changed(flows)
    assert flows.reports() == []


def test_without_user_or_logname_the_operator_is_the_login_name_not_unknown(flows):
    """Containers and AWX often set no $USER: the ledger and the report name the control node's login
    name (issue 16 item 17)."""
    run = flows.run_playbook("playbooks/apply.yml", inventory=flows.inventory("local"),
                             extra_vars={"change": CHANGE}, env={"USER": "", "LOGNAME": ""})

    ok(run)
    login = pwd.getpwuid(os.getuid()).pw_name
    assert [job["operator"] for job in flows.ledger()] == [login]
    assert flows.report()["operator"] == login
    assert f"(operator {login}," in run.stdout and "operator unknown" not in run.stdout


def test_an_unmet_expectation_fails_the_apply_and_says_which(flows):
    flows.write_change("orders-tiny", index={"name": "orders_tiny_idx", "table": "public.orders",
                                             "columns": ["customer_id"]},
                       expected={"valid": True, "max_size": "1kB"})

    run = flows.run("apply", change="orders-tiny")

    refused(run, "apply of change orders-tiny failed on pgtest", "max_size: expected at most 1.0 KiB, observed ")
    assert flows.index("orders_tiny_idx")[0] is True  # the index is left as it is
    [job] = flows.ledger("orders-tiny")
    assert job["state"] == "failed" and "max_size" in job["last_error"]
    report = flows.report("orders-tiny")
    assert report["success"] is False
    assert [(e["name"], e["met"]) for e in report["hosts"]["pgtest"]["expectations"]] == [
        ("valid", True), ("max_size", False)]
    markdown = flows.reports("orders-tiny", ".md")[-1].read_text().replace("\\.", ".")
    assert re.search(rf"\| max_size \| at most 1\.0 KiB \| {SIZE} \| \*\*NO\*\* \|", markdown), markdown


def test_a_failed_apply_reports_what_it_tried_not_nothing(flows):
    """A session holds the table: every attempt is cut at lock_timeout. The summary and the report
    say it failed, how many attempts it made and which statement it tried (issue 16, item 1)."""
    holder = flows.db.connect(autocommit=False, application_name="test/holder")
    with holder.cursor() as cur:
        cur.execute("LOCK TABLE public.orders IN SHARE MODE")
    try:
        run = flows.run("apply", indexops_lock_timeout="200ms", indexops_lock_retries=3)
    finally:
        holder.close()

    refused(run, "within lock_timeout 200ms in 3 attempts")
    summary = re.search(r"pgtest: FAILED, ([0-9.]+) s, 1 statement\(s\) in 3 attempt\(s\), lock waits ([0-9.]+) s",
                        run.output)
    assert summary, run.describe()
    assert float(summary.group(2)) >= 0.6  # below ten seconds humanize says e.g. 0.7 s
    host = flows.report()["hosts"]["pgtest"]
    assert host["attempts"] == 3 and host["lock_wait_s"] >= 0.6
    assert host["sql"] == ['CREATE INDEX CONCURRENTLY "orders_customer_created_idx" ON "public"."orders" '
                           'USING "btree" ("customer_id", "created_at" DESC)']
    markdown = flows.reports(suffix=".md")[-1].read_text()
    assert "| Action | **failed** |" in markdown
    assert "| Attempts | 3 for 1 statement(s) (lock waits" in markdown
    assert "SQL started before it failed:" in markdown and "nothing needed to change" not in markdown
    assert flows.index() is None  # nothing left behind
    [job] = flows.ledger()
    assert job["state"] == "failed" and "in 3 attempts" in job["last_error"]
    assert flows.db.fetchval("SELECT attempts FROM indexops.jobs WHERE change_id = %s", (CHANGE,)) == 3


def test_a_failed_background_job_has_no_fake_traceback_field(flows):
    """Ansible's own output of a failed build (the default callback, as with -v) shows the job's one-line
    message, not an "exception": "(traceback unavailable)" field (issue 16 item 8)."""
    holder = flows.db.connect(autocommit=False, application_name="test/holder")
    with holder.cursor() as cur:
        cur.execute("LOCK TABLE public.orders IN SHARE MODE")
    try:
        run = flows.run("apply", indexops_lock_timeout="200ms", indexops_lock_retries=1, callback=DEFAULT_CALLBACK)
    finally:
        holder.close()

    assert run.returncode != 0, run.describe()
    assert "within lock_timeout 200ms in 1 attempts" in run.output, run.describe()
    assert "traceback unavailable" not in run.output, run.describe()


def test_apply_waits_out_an_old_snapshot_and_says_how_long_it_waited(flows):
    """A reporting transaction older than lock_timeout: the build waits for it (nobody queues behind
    that wait) and succeeds in one attempt; the summary and the report say how long it waited."""
    holder = flows.db.connect(autocommit=False, application_name="test/report")
    with holder.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("SELECT count(*) FROM pg_catalog.pg_class")
    watcher = flows.db.connect()

    def release_once_the_build_waited():
        # Ends the transaction 1.5 s (past lock_timeout 1s) after the build started waiting for it.
        deadline = time.monotonic() + 120
        with watcher.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                            "WHERE NOT l.granted AND l.locktype = 'virtualxid' "
                            "AND a.application_name LIKE 'indexops/%' AND a.datname = current_database()")
                if cur.fetchone()[0]:
                    time.sleep(1.5)
                    break
                time.sleep(0.05)
        holder.rollback()

    release = threading.Thread(target=release_once_the_build_waited)
    release.start()
    try:
        run = flows.run("apply")
    finally:
        release.join()
        holder.close()
        watcher.close()

    ok(run)
    assert flows.index() == (True, DEFINITION)
    summary = re.search(rf"pgtest: created, valid, index {SIZE}, {DURATION}, 1 statement\(s\) in 1 attempt\(s\), "
                        r"lock waits 0\.0 s, "
                        r"waited for other transactions ([0-9.]+) s", run.output)
    assert summary, run.describe()
    assert float(summary.group(1)) >= 1.0
    host = flows.report()["hosts"]["pgtest"]
    assert host["attempts"] == 1 and host["txn_wait_s"] >= 1.0
    markdown = flows.reports(suffix=".md")[-1].read_text()
    assert f"| Waited for other transactions | {host['txn_wait_s']:.1f} s (blocks nobody) |" in markdown


def test_a_markdown_breaking_owner_and_reason_render_as_text_in_the_report(flows):
    """Owner and reason come from the change file: they must not end a table row or cell, open a code
    span, a heading, a link or HTML in the Markdown report pasted into the ticket."""
    owner = "team | db `x\n# forged heading"
    reason = "OPS-1 | [link](https://evil.example) ``` <b>bold</b>\n| Result | **succeeded** |"
    flows.write_change("orders-markdown", owner=owner, reason=reason)

    run = flows.run("preflight", change="orders-markdown")

    ok(run)
    lines = flows.reports("orders-markdown", suffix=".md")[-1].read_text().splitlines()
    assert [line for line in lines if line.startswith("| Owner |")] == [
        "| Owner | team \\| db \\`x \\# forged heading |"]
    assert [line for line in lines if line.startswith("| Reason |")] == [
        "| Reason | OPS-1 \\| \\[link\\](https://evil.example) \\`\\`\\` \\<b\\>bold\\</b\\> \\| Result \\| "
        "\\*\\*succeeded\\*\\* \\| |"]
    assert not [line for line in lines if line.startswith("# forged") or line.startswith("| Result | **succeeded")]
    # The summary table is still one header, one rule and one row per field: nothing split a row.
    table = lines[lines.index("| | |"):]
    table = table[:table.index("")]
    assert table[1] == "|---|---|" and all(line.startswith("| ") and line.endswith(" |") for line in table[2:]), table
    assert [line.split(" | ")[0] for line in table[2:]] == [
        "| Change", "| Digest", "| Owner", "| Reason", "| Environment", "| Operator", "| Started",
        "| Finished", "| Result"]


def test_preflight_lists_every_reason_and_changes_nothing(flows):
    blocker = flows.db.connect(autocommit=False, application_name="long-report")
    try:
        with blocker.cursor() as cur:
            cur.execute("SELECT count(*) FROM public.orders")
        time.sleep(1.5)
        flows.write_change("orders-missing-column", index={"name": "orders_nope_idx", "table": "public.orders",
                                                            "columns": ["no_such_column"]})

        run = flows.run("preflight", change="orders-missing-column", indexops_long_transaction_threshold="1s",
                        indexops_build_wait_timeout="1s")
    finally:
        blocker.close()

    message = refused(run, "no-go on pgtest: columns_exist", "no-go on pgtest: long_transactions")
    assert "no_such_column" in message
    nothing_changed(flows, "orders_nope_idx")
    report = flows.report("orders-missing-column")
    assert report["kind"] == "preflight" and report["success"] is False
    failed = {check["name"] for check in report["hosts"]["pgtest"]["checks"] if check["ok"] is False}
    assert {"columns_exist", "long_transactions"} <= failed
    # a no-go report says what to do next, not "To apply" under "## Rollback" (issue 16 item 7)
    text = flows.reports("orders-missing-column", ".md")[-1].read_text()
    assert "To apply" not in text and "## Next step" in text, text
    assert "then run the preflight again: `ansible-playbook playbooks/preflight.yml" in text, text
    # no estimate on the sandbox, and the report says which rehearsals would give one (issue 16 item 15)
    [estimate] = [check for check in report["hosts"]["pgtest"]["checks"] if check["name"] == "estimated_duration"]
    assert "only a successful rehearsal in staging counts" in estimate["detail"], estimate
    markdown = flows.reports("orders-missing-column", ".md")[-1].read_text()
    assert "only a successful rehearsal in staging counts" in markdown


# --------------------------------------------------------------------------- rehearse

def test_rehearse_applies_measures_rolls_back_and_applies_again(flows):
    run = flows.run("rehearse", "staging")

    ok(run)
    assert flows.index() == (True, DEFINITION)
    assert [(job["kind"], job["action"]) for job in flows.ledger()] == [
        ("rehearse", "created"), ("rollback", "dropped"), ("rehearse", "created")]
    report = flows.report()
    assert report["kind"] == "rehearse" and report["success"] is True and report["environment"] == "staging"
    steps = report["hosts"]["pgtest"]["steps"]
    assert [steps[name]["action"] for name in ("apply", "rollback", "reapply")] == ["created", "dropped", "created"]
    measurements = report["measurements"]
    assert set(measurements) == {"duration_s", "size_bytes", "lock_wait_s", "txn_wait_s", "table_bytes",
                                 "table_rows_estimate", "rollback_duration_s", "reapply_duration_s", "databases",
                                 "database"}
    assert measurements["databases"] == 1, "one database measured (a fleet host's rehearsal counts them all)"
    assert measurements["txn_wait_s"] >= 0
    assert measurements["duration_s"] > 0 and measurements["size_bytes"] > 0 and measurements["table_bytes"] > 0
    assert measurements["table_rows_estimate"] == ROWS
    assert "## Measurements" in flows.reports(suffix=".md")[-1].read_text()


def test_a_rehearsal_under_writes_reports_one_index_size(flows):
    """Writers add rows while the rehearsal runs, so its reapply builds a bigger index than its first
    apply. The report shows one size, the measured step's, in the host table, the measurements and the
    JSON alike (issue 16 item 17: the demo showed 60.23 MB and 60.20 MB)."""
    stop = threading.Event()
    writer = flows.db.connect()

    def write():
        batch = 0
        with writer.cursor() as cur:
            while not stop.is_set():  # ids above the seed's, which the seed gave without the sequence
                batch += 1
                cur.execute("INSERT INTO public.orders (id, customer_id, status, total_cents, email, created_at) "
                            "OVERRIDING SYSTEM VALUE SELECT %s + g, g, 'pending', 1, 'w@example.com', now() "
                            "FROM generate_series(1, 2000) g", (1_000_000 * batch,))
                time.sleep(0.05)

    load = threading.Thread(target=write)
    load.start()
    try:
        run = flows.run("rehearse", "staging")
    finally:
        stop.set()
        load.join()
        writer.close()

    ok(run)
    report = flows.report()
    host, measurements = report["hosts"]["pgtest"], report["measurements"]
    assert host["steps"]["reapply"]["size_bytes"] > host["steps"]["apply"]["size_bytes"], host["steps"]
    assert measurements["size_bytes"] == host["size_bytes"] == host["steps"]["apply"]["size_bytes"]
    markdown = flows.reports(suffix=".md")[-1].read_text()
    sizes = set(re.findall(r"^\| Index size \| (.+) \|$", markdown, re.MULTILINE))
    assert len(sizes) == 1, sizes
    assert f"index {sizes.pop()}" in run.stdout  # the summary's measured line says the same


def test_rehearse_refuses_to_run_in_production(flows):
    run = flows.run("rehearse", "production")

    refused(run, "refused: a rehearsal", "indexops_production is true", "-i inventories/staging")
    nothing_changed(flows)


# --------------------------------------------------------------------------- production gate

def test_production_needs_a_rehearsal_of_the_same_digest(flows):
    without = flows.run("apply", "production")

    refused(without, "refused: production requires a successful rehearsal of change orders-customer-created",
            "rehearse.yml -i inventories/staging")
    nothing_changed(flows)

    ok(flows.run("rehearse", "staging"))
    flows.db.execute(f"DROP INDEX public.{INDEX}")  # staging and production share the test database

    allowed = flows.run("apply", "production")

    ok(allowed)
    assert flows.index() == (True, DEFINITION)
    report = flows.report()
    assert report["environment"] == "production" and report["success"] is True
    assert report["rehearsal"]["environment"] == "staging"
    assert Path(report["rehearsal"]["path"]).name.startswith("staging-")

    edited = flows.changes_dir / f"{CHANGE}.yml"
    edited.write_text(edited.read_text().replace("order: desc", "order: asc"))

    after_edit = flows.run("apply", "production")

    refused(after_edit, "refused: production requires a successful rehearsal",
            "1 rehearsal report did not count: 1 for another digest (the change was edited after it)")
    assert flows.index() == (True, DEFINITION)  # untouched
    assert [job["environment"] for job in flows.ledger()][-1] == "production"


def test_a_break_glass_override_is_recorded_in_the_ledger_and_the_report(flows):
    reason = "INC-4711: checkout is down, the index is needed now"

    run = flows.run("apply", "production", extra={"indexops_override_reason": reason})

    ok(run)
    assert "BREAK-GLASS override by alice" in run.stdout
    assert flows.index() == (True, DEFINITION)
    [job] = flows.ledger()
    assert job["override_reason"] == reason and job["operator"] == OPERATOR
    report = flows.report()
    assert report["override"] is True and report["override_reason"] == reason
    assert any("requires a successful rehearsal" in line for line in report["overridden"])
    assert f"**break-glass** by {OPERATOR}: {reason}" in flows.reports(suffix=".md")[-1].read_text()


def test_the_kill_switch_refuses_before_connecting_and_no_override_passes_it(flows):
    # The default callback prints every task that ran: the witness that preflight did not.
    run = flows.run("apply", "production", indexops_enabled=False, callback=DEFAULT_CALLBACK,
                    extra={"indexops_override_reason": "INC-1: please"})

    message = refused(run, "refused: indexops is switched off on production (indexops_enabled: false, from the "
                      "inventory)", "in the production inventory's group_vars")
    assert "Check the target read-only" not in run.stdout  # preflight never ran: nothing connected
    assert len([line for line in message.splitlines() if line.startswith("fatal:")]) == 1
    nothing_changed(flows)


def test_a_kill_switch_given_with_e_says_to_change_the_command_line(flows):
    """The runbook's way to stop a run is -e indexops_enabled=false: the refusal says so and does not
    send the operator to the inventory, which never said false (issue 16 item 12)."""
    run = flows.run("apply", "production", extra={"indexops_enabled": False})

    message = refused(run, "switched off for this run on production", "given with -e on the command line",
                      "run again without -e indexops_enabled=false")
    assert "group_vars" not in message and "inventory" not in message, message
    nothing_changed(flows)


def test_outside_the_maintenance_window_the_refusal_says_when_it_opens(flows):
    closed = flows.run("apply", "production", indexops_require_rehearsal=False, indexops_maintenance_window=WINDOW,
                       extra={"indexops_now": WINDOW_CLOSED_AT})

    refused(closed, "refused: production allows DDL only in its maintenance window",
            "the window opens Mon 2026-11-30 22:00")
    nothing_changed(flows)

    open_ = flows.run("apply", "production", indexops_require_rehearsal=False, indexops_maintenance_window=WINDOW,
                      extra={"indexops_now": WINDOW_OPEN_AT})

    ok(open_)
    assert flows.index() == (True, DEFINITION)


# --------------------------------------------------------------------------- rollback

def test_rollback_of_a_create_drops_the_index_and_a_second_rollback_changes_nothing(flows):
    ok(flows.run("apply"))
    checked = flows.run("rollback", check=True)
    ok(checked)
    assert "pgtest: would drop the index (the index is valid now, " in checked.stdout, checked.describe()
    assert "pgtest: dropped" not in checked.stdout and flows.index() == (True, DEFINITION)

    run = flows.run("rollback")

    ok(run)
    note = run.task_output("indexops_rollback : Print the rollback note of the change")
    assert "Watch the latency of GET /orders." in note
    assert flows.index() is None
    assert [(job["kind"], job["action"]) for job in flows.ledger()] == [("apply", "created"), ("rollback", "dropped")]
    assert flows.report()["kind"] == "rollback" and flows.report()["success"] is True

    again = flows.run("rollback")

    ok(again)
    assert again.recap["pgtest"]["changed"] == 0, again.describe()
    assert flows.index() is None


def test_rollback_of_a_drop_recreates_the_identical_definition(flows):
    flows.db.execute("CREATE INDEX orders_status_note_idx ON public.orders (status, lower(note) DESC NULLS LAST) "
                     "INCLUDE (total_cents) WHERE note IS NOT NULL")
    before = flows.index("orders_status_note_idx")
    flows.write_change("orders-drop-status-note", action="drop",
                       index={"name": "orders_status_note_idx", "table": "public.orders"},
                       expected={"valid": False},
                       rollback={"note": "Recreating it restores the notes report."})

    ok(flows.run("apply", change="orders-drop-status-note"))
    assert flows.index("orders_status_note_idx") is None

    run = flows.run("rollback", change="orders-drop-status-note")

    ok(run)
    assert flows.index("orders_status_note_idx") == before
    jobs = flows.ledger("orders-drop-status-note")
    assert [(job["kind"], job["action"]) for job in jobs] == [("apply", "dropped"), ("rollback", "created")]
    assert jobs[0]["definition_before"] == before[1]

    again = flows.run("rollback", change="orders-drop-status-note")

    ok(again)
    assert again.recap["pgtest"]["changed"] == 0, again.describe()
    assert flows.index("orders_status_note_idx") == before


# --------------------------------------------------------------------------- cleanup

@contextlib.contextmanager
def build_waiting_on_a_snapshot(db, name):
    """A CREATE INDEX CONCURRENTLY of ``name`` on public.archive that stays in progress (invalid, being
    built) until the block ends: it waits for an older transaction's snapshot, released on exit.

    It is on another table than the leftovers to drop, because DROP INDEX CONCURRENTLY and a running
    CREATE INDEX CONCURRENTLY on the same table wait for each other (SHARE UPDATE EXCLUSIVE)."""
    db.execute("CREATE TABLE public.archive AS SELECT g AS id, g % 97 AS total FROM generate_series(1, 2000) AS g")
    holder = db.connect(autocommit=False, application_name="snapshot-holder")
    with holder.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("SELECT 1")  # takes the snapshot the build waits for, and no lock on any table
    builder = db.connect(application_name="concurrent-builder")
    errors = []

    def build():
        try:
            with builder.cursor() as cur:
                cur.execute(f"CREATE INDEX CONCURRENTLY {name} ON public.archive (total)")
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=build, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not db.fetchone("SELECT count(*) FROM pg_stat_progress_create_index p "
                              "JOIN pg_class c ON c.oid = p.index_relid WHERE c.relname = %s "
                              "AND p.datname = current_database()", (name,))[0]:
            assert time.monotonic() < deadline, f"the build of {name} never showed up in progress: {errors}"
            time.sleep(0.1)
        yield
    finally:
        holder.rollback()
        holder.close()
        thread.join(60)
        builder.close()
    assert not errors, errors


def make_invalid_leftover(db, name):
    """A failed CREATE UNIQUE INDEX CONCURRENTLY leaves an invalid index nobody is building."""
    with contextlib.suppress(Exception):
        db.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON public.orders (status)")
    assert db.fetchone("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", (f"public.{name}",))[0]


def test_cleanup_lists_in_check_mode_and_drops_only_leftovers_nobody_is_building(flows):
    make_invalid_leftover(flows.db, "orders_status_uniq")

    with build_waiting_on_a_snapshot(flows.db, "archive_total_building_idx"):
        listing = flows.run("cleanup", change=None, check=True)

        ok(listing)
        out = listing.task_output("indexops_cleanup : List the leftovers found")
        assert "would drop: invalid index public.orders_status_uniq" in out
        # its size in humanize's format (a failed build's is 0 B, not "0.00 Bytes": issue 16 item 16)
        assert re.search(rf"invalid index public\.orders_status_uniq on orders, {SIZE};", out), out
        assert "Bytes" not in out
        assert "being built, left alone: invalid index public.archive_total_building_idx on archive" in out
        assert flows.index("orders_status_uniq") is not None

        run = flows.run("cleanup", change=None)

        ok(run)
        assert "dropped 1 leftover(s); 1 being built, left alone" in run.stdout
        assert flows.index("orders_status_uniq") is None
        assert flows.index("archive_total_building_idx") is not None

    assert flows.index("archive_total_building_idx")[0] is True  # the build it left alone finished


# --------------------------------------------------------------------------- bad input

BAD_CHANGES = {
    "yaml-syntax": ("id: bad-yaml\nowner: [unclosed\n", "bad-yaml.yml"),
    "bad-field": (None, "index/columns/1/order"),
    "id-mismatch": (None, "is 'someone-else' but the file is named"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHANGES))
def test_a_bad_change_file_is_rejected_with_the_file_and_field_and_nothing_changes(flows, case):
    text, phrase = BAD_CHANGES[case]
    if case == "yaml-syntax":
        (flows.changes_dir / "bad-yaml.yml").write_text(text)
        change = "bad-yaml"
    elif case == "bad-field":
        change = "bad-field"
        flows.write_change(change, index={"name": INDEX, "table": "public.orders",
                                          "columns": ["customer_id", {"name": "created_at", "order": "sideways"}]})
    else:
        change = "id-mismatch"
        path = flows.write_change("someone-else")
        path.rename(flows.changes_dir / "id-mismatch.yml")

    run = flows.run("apply", change=change)

    refused(run, f"{change}.yml", phrase, "Nothing was changed")
    nothing_changed(flows)


def test_a_mistyped_change_id_names_the_ids_that_exist_and_the_closest(flows):
    run = flows.run("apply", change="orders-customer-craeted")

    message = refused(run, "orders-customer-craeted.yml does not exist (did you mean orders-customer-created?)",
                      "check -e change=<id>")
    assert "fix the change file" not in message and CHANGE in message
    nothing_changed(flows)


BAD_POLICY = {
    "retries-not-a-number": ({"indexops_lock_retries": "many"}, (), "indexops_lock_retries"),
    "no-retries": ({"indexops_lock_retries": 0}, (), "refused: indexops_lock_retries is 0"),
    "no-wave-parallel": ({"indexops_wave_parallel": 0}, (), "refused: indexops_wave_parallel is 0 in the production "
                         "policy; expected at least 1 database at a time"),
    "kill-switch-not-a-bool": ({"indexops_enabled": "maybe"}, (), "indexops_enabled"),
    "window-bad-day": ({"indexops_maintenance_window": {**WINDOW, "days": ["funday"]}}, (), "funday"),
    "no-environment-name": ({}, ("indexops_environment",), "missing required arguments: indexops_environment"),
}


@pytest.mark.parametrize("case", sorted(BAD_POLICY))
def test_a_bad_policy_value_is_rejected_before_anything_runs(flows, case):
    policy, drop, phrase = BAD_POLICY[case]

    run = flows.run("apply", "production", drop=drop, callback=DEFAULT_CALLBACK, **policy)

    refused(run, phrase)
    assert "Check the target read-only" not in run.stdout  # rejected before anything connected
    nothing_changed(flows)


def test_a_bad_policy_value_says_where_it_came_from_and_where_to_fix_it(flows):
    """-e indexops_lock_timeout=banana is fixed on the command line, not in group_vars (issue 16 item 12)."""
    typed = flows.run("apply", extra={"indexops_lock_timeout": "banana"})
    inventory = flows.run("apply", "production", indexops_lock_timeout="banana")

    message = refused(typed, 'indexops_lock_timeout is "banana" (given with -e on the command line)',
                      "fix the -e value")
    assert "inventory" not in message and "group_vars" not in message, message
    message = refused(inventory, 'indexops_lock_timeout is "banana" in the production policy',
                      "fix it in the inventory (group_vars or host_vars of pgtest)")
    assert "-e" not in message, message
    nothing_changed(flows)


def test_rollback_of_a_drop_reads_the_definition_from_the_ledger_when_no_report_is_on_this_machine(flows):
    flows.db.execute("CREATE INDEX orders_status_note_idx ON public.orders (status, lower(note) DESC NULLS LAST)")
    before = flows.index("orders_status_note_idx")
    flows.write_change("orders-drop-status-note", action="drop",
                       index={"name": "orders_status_note_idx", "table": "public.orders"},
                       expected={"valid": False},
                       rollback={"note": "Recreating it restores the notes report."})
    ok(flows.run("apply", change="orders-drop-status-note"))
    for path in flows.reports("orders-drop-status-note") + flows.reports("orders-drop-status-note", ".md"):
        path.unlink()  # the apply ran from another machine: only the ledger knows the definition

    run = flows.run("rollback", change="orders-drop-status-note")

    ok(run)
    assert flows.index("orders_status_note_idx") == before
