"""Builds as background jobs, attaching to them, and playbooks/status.yml, end to end.

The real ansible-playbook runs against real PostgreSQL servers. A build is held in its
"waiting for writers before build" phase by an open transaction holding ROW EXCLUSIVE on the table
(like tests/integration/helpers_catalog.py's Blocker), never by a large table; the flows run with a
long lock_timeout so that the held build waits instead of timing out.

Status runs over several generated inventories at once, each shaped like inventories/<env>/ (hosts
in group postgres and in a group named after the environment, policy in group_vars/<env>.yml), so
each host keeps its own environment's values.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml

from scripts.sandbox import ORDERS_DDL, ORDERS_SEED
from tests.integration.helpers_catalog import wait_until as wait_for
from tests.playbooks.conftest import ANSIBLE_PLAYBOOK, COMMON_POLICY, ROOT, VENV_PYTHON, _ansible_env, connection_vars
from tests.playbooks.test_flows import CHANGE, DEFINITION, INDEX, OPERATOR, Flows, new_flows, ok

pytestmark = pytest.mark.playbook

HELD_PHASE = "waiting for writers before build"
DEADLINE_S = 120


# --------------------------------------------------------------------------- helpers

def wait_until(probe, what, timeout=DEADLINE_S):
    """helpers_catalog.wait_until with this file's longer deadline: playbooks start slowly."""
    return wait_for(probe, what, timeout=timeout, interval=0.2)


@contextlib.contextmanager
def writer_holding(db, table="public.orders"):
    """An open transaction holding ROW EXCLUSIVE on ``table``: a concurrent build waits for it."""
    conn = db.connect(autocommit=False, application_name="test-open-writer")
    with conn.cursor() as cur:
        cur.execute(f"LOCK TABLE {table} IN ROW EXCLUSIVE MODE")
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    holder = {"pid": pid, "conn": conn}
    try:
        yield holder
    finally:
        if not conn.closed:
            conn.rollback()
            conn.close()


def release(holder):
    holder["conn"].rollback()
    holder["conn"].close()


def build_of(db, index):
    """(pid, phase, index oid) of the build of public.<index> in this database (a shared server runs other
    tests' builds of the same name, often under the same oid), or None."""
    return db.fetchone(
        "SELECT p.pid, p.phase, p.index_relid::bigint FROM pg_stat_progress_create_index p "
        "JOIN pg_class c ON c.oid = p.index_relid WHERE c.relname = %s AND p.datname = current_database()",
        (index,))


def builds_on(db, table="orders"):
    return db.fetchone("SELECT count(*) FROM pg_stat_progress_create_index p JOIN pg_class t ON t.oid = p.relid "
                       "WHERE t.relname = %s AND p.datname = current_database()", (table,))[0]


def index_oid(db, index):
    row = db.fetchone("SELECT c.oid::bigint FROM pg_class c WHERE c.relname = %s AND c.relkind = 'i'", (index,))
    return row[0] if row else None


def ledger_jobs(db, change=CHANGE):
    if not db.fetchone("SELECT to_regclass('indexops.jobs') IS NOT NULL")[0]:
        return []
    return db.fetchall("SELECT job_id, kind, action, state FROM indexops.jobs WHERE change_id = %s ORDER BY job_id",
                       (change,))


def attach_line_of(text):
    """The attach message indexops_wait printed ("... attaching to it instead of ..."), or None."""
    lines = [line.strip().strip('"') for line in text.splitlines() if "instead of starting a second build" in line]
    return lines[0] if lines else None


def attach_line(log):
    return attach_line_of(log.read_text())


def stop(proc):
    """End a background ansible-playbook (its whole process group) if it still runs."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def env_inventory(base: Path, env: str, host: str, *, more_hosts: dict[str, dict[str, Any]] | None = None,
                  **policy: Any) -> Path:
    """inventories/<env>/ as the repository shapes it: group <env> under postgres, group_vars/<env>.yml.
    ``more_hosts`` adds hosts after ``host``, in order, each with its host vars (e.g. its own connection)."""
    root = base / f"inventory-{env}"
    (root / "group_vars").mkdir(parents=True, exist_ok=True)
    local = {"ansible_connection": "local", "ansible_python_interpreter": str(VENV_PYTHON)}
    members = {host: dict(local), **{name: {**local, **hostvars} for name, hostvars in (more_hosts or {}).items()}}
    hosts = {"all": {"children": {"postgres": {"children": {env: {"hosts": members}}}}}}
    (root / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    values = {"indexops_environment": env, "indexops_production": False, "indexops_require_rehearsal": False,
              **COMMON_POLICY, **policy}
    (root / "group_vars" / f"{env}.yml").write_text(yaml.safe_dump(values, sort_keys=False))
    return root


class Runner:
    """Runs playbooks against generated inventories; keeps the changes and reports in tmp_path."""

    def __init__(self, flows: Flows, tmp_path: Path):
        self.flows = flows
        self.tmp_path = tmp_path

    def inventory(self, env="local", host="pgtest", db=None, more_hosts=None, **policy):
        return env_inventory(self.tmp_path, env, host, more_hosts=more_hosts, **{
            **connection_vars(db or self.flows.db), "indexops_changes_dir": str(self.flows.changes_dir),
            "indexops_reports_dir": str(self.flows.reports_dir), "indexops_poll_interval": 1, **policy})

    def extra(self, extra=None, change=CHANGE):
        return {**({"change": change} if change else {}), "indexops_changes_dir": str(self.flows.changes_dir),
                "indexops_reports_dir": str(self.flows.reports_dir), **(extra or {})}

    def run(self, playbook, inventories, *, change=CHANGE, extra=None, **options):
        """``options``: run_playbook's (check=True for --check, timeout=... for a long run)."""
        return self.flows.run_playbook(f"playbooks/{playbook}.yml", inventory=inventories,
                                       extra_vars=self.extra(extra, change), env={"USER": OPERATOR}, **options)

    def start(self, playbook, inventories, *, change=CHANGE, extra=None, name="background", plain=()):
        """ansible-playbook in its own process group (killable as a whole), output to a file.
        ``plain`` adds ``-e key=value`` arguments as an operator types them (the values are strings)."""
        command = [str(ANSIBLE_PLAYBOOK)]
        for inventory in inventories:
            command += ["-i", str(inventory)]
        command += [str(ROOT / "playbooks" / f"{playbook}.yml"), "-e", json.dumps(self.extra(extra, change))]
        for pair in plain:
            command += ["-e", pair]
        log = self.tmp_path / f"{name}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(command, cwd=ROOT, env=_ansible_env(self.tmp_path, {"USER": OPERATOR}),
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return proc, log

    def status(self, inventories, *, change=None, extra=None):
        run = self.run("status", inventories, change=change, extra=extra)
        reports = sorted(self.flows.reports_dir.glob("status-*.json"))
        document = json.loads(reports[-1].read_text()) if reports else None
        return run, document


def rows_of(document, **match):
    return [row for row in document["rows"] if all(row.get(key) == value for key, value in match.items())]


@pytest.fixture
def runner(db, run_playbook, environment_inventory, tmp_path) -> Runner:
    """public.orders as in the sandbox and a copy of the change files, as test_flows.py's ``flows``."""
    return Runner(new_flows(db, run_playbook, environment_inventory, tmp_path), tmp_path)


# --------------------------------------------------------------------------- background builds and attach

@pytest.mark.every_version
def test_a_killed_apply_finishes_its_build_and_a_rerun_attaches_instead_of_building_again(runner):
    db = runner.flows.db
    inventory = runner.inventory(indexops_lock_timeout="10min")
    with writer_holding(db) as writer:
        first, _ = runner.start("apply", [inventory], name="first-apply")
        row = wait_until(lambda: build_of(db, INDEX), "the apply's build to start")
        assert row[1] == HELD_PHASE
        held_oid = row[2]

        os.killpg(first.pid, signal.SIGKILL)  # the operator's terminal dies: ansible-playbook and its children
        first.wait(30)
        time.sleep(1)
        assert build_of(db, INDEX) is not None, "the build died with ansible-playbook"

        # status during the held build: building, its phase, the pid it waits on, the ledger job
        status_run, document = runner.status([inventory], change=CHANGE)
        ok(status_run)
        [change_row] = rows_of(document, change=CHANGE, host="pgtest")
        assert change_row["state"] == "building", change_row
        assert HELD_PHASE in change_row["progress"] and f"pid {writer['pid']}" in change_row["progress"], change_row
        assert change_row["owner"] == "team-checkout" and change_row["environment"] == "local"
        table = status_run.task_output("indexops_status : Print the status table")
        assert CHANGE in table and "building" in table and f"waits on pid {writer['pid']}" in table

        # a rerun that does not wait: attaches, prints one progress line, returns at once
        no_wait = runner.run("apply", [inventory], extra={"indexops_wait": False})
        ok(no_wait)
        assert "attaching to it instead of starting a second build (not waiting)" in no_wait.stdout
        # one line, whole seconds in UTC, no literal \n, a named operator (issue 16 item 11)
        said = attach_line_of(no_wait.stdout)
        assert "\\n" not in said, said
        assert re.search(r"started by \S+ at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)", said), said
        assert "started by unknown" not in said, said
        follow = no_wait.task_output("indexops_operation : Follow the running build")
        assert f"pgtest: public.{INDEX} building" in follow and HELD_PHASE in follow
        assert f"waits on pid {writer['pid']}" in follow
        assert "RETRYING" not in no_wait.stdout
        assert builds_on(db) == 1 and index_oid(db, INDEX) == held_oid  # no second build, nothing dropped
        assert [job[3] for job in ledger_jobs(db)] == ["running"]  # the rerun recorded no job of its own

        # the same with -e indexops_wait=false typed on the command line: the string "false"
        typed, typed_log = runner.start("apply", [inventory], name="typed-no-wait", plain=["indexops_wait=false"])
        try:
            said = wait_until(lambda: attach_line(typed_log), "the typed rerun to say it attaches")
            assert said.endswith("(not waiting)"), typed_log.read_text()
            assert typed.wait(DEADLINE_S) == 0, typed_log.read_text()
        finally:
            stop(typed)
        assert builds_on(db) == 1 and [job[3] for job in ledger_jobs(db)] == ["running"]

        # a rerun that waits: attaches, and finishes once the build does
        waiter, waiter_log = runner.start("apply", [inventory], name="attached-apply")
        wait_until(lambda: "Follow the running build" in waiter_log.read_text(), "the rerun to attach")
        assert builds_on(db) == 1 and index_oid(db, INDEX) == held_oid
        release(writer)

        assert waiter.wait(DEADLINE_S) == 0, waiter_log.read_text()

    out = waiter_log.read_text()
    assert "attaching to it instead of starting a second build" in out and "(not waiting)" not in out
    assert runner.flows.index() == (True, DEFINITION)
    assert index_oid(db, INDEX) == held_oid  # the build the killed run started is the index
    jobs = ledger_jobs(db)
    assert jobs[0][1:] == ("apply", "created", "succeeded"), jobs  # finished by the background job
    assert [job[2] for job in jobs[1:]] == ["none"], jobs  # the attached rerun only verified

    # status dates the change by the job that built it, not by the rerun that found nothing to do
    _, document = runner.status([inventory], change=CHANGE)
    [change_row] = rows_of(document, change=CHANGE, host="pgtest")
    built = db.fetchone("SELECT to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM indexops.jobs "
                        "WHERE job_id = %s", (jobs[0][0],))[0]
    assert change_row["state"] == "done" and change_row["started"] == built, (change_row, jobs)
    # the JSON's machine fields: ISO 8601 with its zone, seconds as a number (issue 16 item 16)
    assert change_row["started_at"].startswith(built.replace(" ", "T")) and change_row["started_at"].endswith("+00:00")
    assert isinstance(change_row["duration_s"], float) and change_row["duration_s"] > 0, change_row


def lock_holder(db, table="public.orders"):
    """An open transaction holding SHARE UPDATE EXCLUSIVE on ``table``: a concurrent build cannot even
    start (no progress row), it waits for the lock."""
    conn = db.connect(autocommit=False, application_name="test-lock-holder")
    with conn.cursor() as cur:
        cur.execute(f"LOCK TABLE {table} IN SHARE UPDATE EXCLUSIVE MODE")
    return conn


def running_job(db):
    """(job_id, backend_pid) of the change's running job while its backend waits for a lock, or None."""
    return db.fetchone(
        "SELECT j.job_id, j.backend_pid FROM indexops.jobs j JOIN pg_stat_activity a ON a.pid = j.backend_pid "
        "WHERE j.change_id = %s AND j.state = 'running' AND a.wait_event_type = 'Lock'", (CHANGE,)) \
        if db.fetchone("SELECT to_regclass('indexops.jobs') IS NOT NULL")[0] else None


def test_a_rerun_attaches_to_a_job_with_no_build_yet_and_fails_clearly_when_that_job_fails(runner):
    db = runner.flows.db
    inventory = runner.inventory(indexops_lock_timeout="10min")
    holder = lock_holder(db)
    first = attached = None
    try:
        first, _ = runner.start("apply", [inventory], name="first-apply")
        job_id, backend_pid = wait_until(lambda: running_job(db), "the apply's job to wait for its lock")
        assert build_of(db, INDEX) is None  # no progress row: the build has not started

        attached, log = runner.start("apply", [inventory], name="attached-apply")
        # (A skipped task prints its banner too: the attach message is what says it attached.)
        wait_until(lambda: attach_line(log) or "TASK [indexops_preflight" in log.read_text(),
                   "the rerun to attach or go on to preflight")
        assert "(no build in progress right now" in (attach_line(log) or ""), log.read_text()

        db.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))  # the first job fails
        assert attached.wait(DEADLINE_S) != 0, log.read_text()
    finally:
        holder.rollback()
        holder.close()
        for proc in (first, attached):
            if proc is not None:
                stop(proc)

    out = log.read_text()
    assert f"that this run attached to on pgtest (indexops job {job_id}" in out, out
    assert "failed: the session running" in out and "This run started nothing" in out, out
    assert "running apply again is safe" in out, out
    assert "TASK [indexops_preflight" not in out and "Start the change with pg_index" not in out, out
    assert [job[0] for job in ledger_jobs(db)] == [job_id]  # the rerun started no job of its own
    assert [job[3] for job in ledger_jobs(db)] == ["failed"]
    assert runner.flows.index() is None


def test_a_job_past_its_time_limit_then_a_terminated_build_shows_as_lost_and_fails_monitoring(runner):
    db = runner.flows.db
    db.execute("CREATE TABLE public.archive AS SELECT g AS id, g % 97 AS total FROM generate_series(1, 2000) g")
    inventory = runner.inventory(indexops_lock_timeout="10min", indexops_async_timeout=3)
    by_hand = None
    with writer_holding(db) as writer, writer_holding(db, "public.archive"):
        # a build started by plain SQL, outside indexops, held the same way
        by_hand_conn = db.connect(application_name="psql-by-hand")
        errors = []

        def build_by_hand():
            try:
                with by_hand_conn.cursor() as cur:
                    cur.execute("CREATE INDEX CONCURRENTLY archive_total_idx ON public.archive (total)")
            except psycopg2.Error as exc:
                errors.append(exc)

        by_hand = threading.Thread(target=build_by_hand, daemon=True)
        by_hand.start()
        wait_until(lambda: build_of(db, "archive_total_idx"), "the build by hand to start")

        run = runner.run("apply", [inventory])

        assert run.returncode != 0, run.describe()
        assert "ran past its time limit of 3.0 s" in run.stdout and "status.yml" in run.stdout
        # async_wrapper sets the module's process group only after forking it, so on a loaded machine
        # the module can escape the time limit's killpg (ansible-core's race, not ours): finish the kill.
        for proc in job_processes(db):
            proc.kill()
        build = build_of(db, INDEX)
        assert build is not None and build[1] == HELD_PHASE  # the server's build goes on

        _, during = runner.status([inventory])
        [change_row] = rows_of(during, change=CHANGE)
        assert change_row["state"] == "building" and f"pid {writer['pid']}" in change_row["progress"], change_row
        [outside] = rows_of(during, index="public.archive_total_idx")
        assert outside["state"] == "building" and outside["change"] == "-"
        assert "outside indexops" in outside["owner"] and "psql-by-hand" in outside["owner"]
        assert HELD_PHASE in outside["progress"]

        db.execute("SELECT pg_terminate_backend(%s)", (build[0],))
        wait_until(lambda: build_of(db, INDEX) is None, "the terminated build to end")

        run, after = runner.status([inventory], extra={"indexops_status_fail_on": "invalid,failed,lost"})

    assert run.returncode != 0, run.describe()
    assert "in a state listed in indexops_status_fail_on (invalid, failed, lost)" in run.output
    [change_row] = rows_of(after, change=CHANGE)
    assert "lost" in change_row["states"], change_row
    assert "index invalid" in change_row["progress"], change_row
    assert "lost" in change_row["last_error"], change_row
    assert after["failing"] >= 1 and after["fail_on"] == ["invalid", "failed", "lost"]
    assert runner.flows.index()[0] is False  # the terminated build's invalid index, left for cleanup.yml
    by_hand.join(60)
    by_hand_conn.close()
    assert not errors, errors


# --------------------------------------------------------------------------- several inventories

def second_server_params():
    """127.0.0.1:5432 when a PostgreSQL answers there, else None."""
    try:
        with contextlib.closing(psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres",
                                                 connect_timeout=3)):
            return {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
    except psycopg2.OperationalError:
        return None


@contextlib.contextmanager
def scratch_database(params, name):
    admin = psycopg2.connect(**params, dbname="postgres", connect_timeout=5)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn = psycopg2.connect(**params, dbname=name, connect_timeout=5)
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def seed_orders(conn, with_index):
    with conn.cursor() as cur:
        cur.execute(ORDERS_DDL)
        cur.execute(ORDERS_SEED, {"rows": 500})
        if with_index:
            cur.execute(DEFINITION)


def test_status_over_several_inventories_databases_and_servers_with_one_unreachable(runner):
    db = runner.flows.db
    runner.flows.db.execute(DEFINITION)  # staging: done
    server = {"host": db.conn_params["host"], "port": int(db.conn_params["port"]), "user": db.conn_params["user"]}
    second = second_server_params()
    with contextlib.ExitStack() as stack:
        prod_conn = stack.enter_context(scratch_database(server, f"{db.name}_prod2"))
        seed_orders(prod_conn, with_index=False)  # production: pending
        inventories = [
            runner.inventory("staging", "stg-db"),
            env_inventory(runner.tmp_path, "production", "prod-db", indexops_login_host=server["host"],
                          indexops_login_port=server["port"], indexops_login_user=server["user"],
                          indexops_db=f"{db.name}_prod2"),
            env_inventory(runner.tmp_path, "broken", "broken-db", indexops_login_host="127.0.0.1",
                          indexops_login_port=1, indexops_login_user="postgres", indexops_db="nowhere",
                          indexops_status_connect_timeout=2),
        ]
        if second:
            qa_conn = stack.enter_context(scratch_database(second, f"{db.name}_qa"))
            seed_orders(qa_conn, with_index=True)  # qa, on the other server: done
            inventories.append(env_inventory(runner.tmp_path, "qa", "qa-db", indexops_login_host=second["host"],
                                             indexops_login_port=second["port"], indexops_login_user=second["user"],
                                             indexops_db=f"{db.name}_qa"))

        run, document = runner.status(inventories, change=CHANGE)

        ok(run)
        [staging] = rows_of(document, host="stg-db", change=CHANGE)
        [production] = rows_of(document, host="prod-db", change=CHANGE)
        assert (staging["environment"], staging["state"], staging["database"]) == ("staging", "done", db.name)
        assert (production["environment"], production["state"], production["database"]) == (
            "production", "pending", f"{db.name}_prod2")
        [broken] = rows_of(document, host="broken-db")
        assert broken["environment"] == "broken" and broken["state"] == "unreachable"
        assert "could not connect" in broken["last_error"]
        if second:
            [qa] = rows_of(document, host="qa-db", change=CHANGE)
            assert (qa["environment"], qa["state"]) == ("qa", "done")
        table = run.task_output("indexops_status : Print the status table")
        for host in ("stg-db", "prod-db", "broken-db") + (("qa-db",) if second else ()):
            assert host in table
        markdown = sorted(runner.flows.reports_dir.glob("status-*.md"))[-1].read_text()
        assert ("| orders-customer-created | public.orders_customer_created_idx | production | prod-db | "
                f"{db.name}_prod2 | pending |") in markdown

        failing, _ = runner.status(inventories, change=CHANGE, extra={"indexops_status_fail_on": "unreachable"})

        assert failing.returncode != 0, failing.describe()
        assert "broken-db * - unreachable" in failing.output


# --------------------------------------------------------------------------- the background job dies


def job_processes(db, index=INDEX):
    """The OS processes of the background job building ``index``, in the order to kill them: async_wrapper's
    processes above the pg_index module first (so none of them outlives the module to write a result), then
    the module itself (it owns the build session's client socket)."""
    import psutil

    # This database's session only: on a shared server another test's job builds an index of that name.
    port = db.fetchval("SELECT client_port FROM pg_stat_activity WHERE application_name = %s AND client_port > 0 "
                       "AND datname = current_database()", (f"indexops/{index}",))
    if port is None:
        return []
    owners = {conn.pid for conn in psutil.net_connections(kind="tcp") if conn.laddr and conn.laddr.port == port}
    modules = [psutil.Process(pid) for pid in owners if pid]
    wrappers = [parent for module in modules for parent in module.parents()
                if "async_wrapper" in " ".join(parent.cmdline())]
    return wrappers + modules


# How the job dies: the OOM killer picks the pg_index process alone, and async_wrapper, still alive, writes a
# result without one (a Python traceback); or an admin kills the whole job, and its status file never says
# finished. Both must end the waiting run within a few polls, with the same words.
KILLS = {
    "module_only": lambda processes: [proc for proc in processes if "async_wrapper" not in " ".join(proc.cmdline())],
    "whole_job": lambda processes: processes,
}


@pytest.mark.parametrize("kill", [pytest.param("module_only", marks=pytest.mark.every_version), "whole_job"])
def test_apply_notices_its_background_job_died_says_what_the_index_is_and_writes_the_report(runner, kill):
    """The OOM killer (or an admin) kills the background job while apply waits: the build goes on in
    the server. The waiting run must end within a few polls, say the job died and what the index is,
    and write its report; status shows the job lost and the build still running."""
    db = runner.flows.db
    inventory = runner.inventory()
    with writer_holding(db) as writer:
        apply, log = runner.start("apply", [inventory], name=f"apply-job-killed-{kill}")
        try:
            build = wait_until(lambda: build_of(db, INDEX), "the apply's build to start")
            processes = wait_until(lambda: job_processes(db), "the background job's processes")
            assert any("async_wrapper" in " ".join(proc.cmdline()) for proc in processes), processes
            victims = KILLS[kill](processes)
            assert victims, processes
            for proc in victims:
                proc.kill()
            returncode = apply.wait(60)  # a few 1 s polls once the job is gone, not its 24 h time limit
        finally:
            stop(apply)
        out = log.read_text()
        assert returncode != 0, out
        assert "died: its pg_index process is gone" in out, out
        assert f"still being built by the server (pid {build[0]}" in out, out
        assert "Traceback" not in out and "MODULE FAILURE" not in out
        report = runner.flows.report()
        assert report["success"] is False and "died" in report["hosts"]["pgtest"]["error"]
        assert build_of(db, INDEX) is not None  # the server goes on with the build

        status_run, document = runner.status([inventory], change=CHANGE)
        [row] = rows_of(document, change=CHANGE, host="pgtest")
        assert row["states"] == ["building", "lost"], row
        assert "its pg_index process is gone" in row["last_error"], row
        assert "the server goes on with the build" in row["last_error"], row
        release(writer)

    wait_until(lambda: build_of(db, INDEX) is None, "the orphaned build to finish")
    assert runner.flows.index() == (True, DEFINITION)
    _, document = runner.status([inventory], change=CHANGE)
    [row] = rows_of(document, change=CHANGE, host="pgtest")
    assert row["state"] == "done" and row["job_lost"] is True, row
    again = runner.run("apply", [inventory])
    ok(again)
    assert [job[2:] for job in ledger_jobs(db)][-1] == ("none", "succeeded")
