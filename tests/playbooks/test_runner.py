"""The playbooks run unchanged through ansible-runner (the engine of AWX / Automation Platform), each job
in a fresh private data directory that shares nothing with another (issue 15).

Every job gets its own private data directory holding its own copy of the project (the repository's
ansible.cfg, library, collections, plugins, roles, playbooks and changes, as AWX checks a project out),
its own inventory and its own reports directory. Staging and production are two databases on the test
server. Production's policy takes the rehearsal evidence from staging's ledger
(indexops_rehearsal_source: ledger), so the only thing the two jobs share is what staging's database
recorded. The job events are what AWX shows: they must carry indexops_wait's progress lines and the
results of the pg_index steps.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml
from psycopg2 import sql

from tests.pg_index_runner import run_module
from tests.playbooks.conftest import VENV_BIN, VENV_PYTHON
from tests.playbooks.test_flows import seed_orders

pytestmark = pytest.mark.playbook

ROOT = Path(__file__).resolve().parents[2]
CHANGE = "orders-customer-created"
INDEX = "orders_customer_created_idx"
OPERATOR = "alice"
# What AWX checks out of the project: everything ansible-playbook reads from the repository.
PROJECT_CONTENT = ("ansible.cfg", "library", "collections", "action_plugins", "filter_plugins", "roles",
                   "playbooks", "changes", "schemas")
# How long the test keeps the first build waiting at most before it gives up waiting for a progress line.
PROGRESS_DEADLINE_S = 180
JOB_TIMEOUT_S = 600


# --------------------------------------------------------------------------- databases and jobs

@pytest.fixture
def production_db(db):
    """A second database on the same server: production. ``db`` plays staging."""
    name = f"{db.name}_prod"
    with contextlib.closing(db.server.connect()) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    production = type(db)(server=db.server, name=name)
    try:
        yield production
    finally:
        production.close()
        with contextlib.closing(db.server.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def connection(database) -> dict[str, Any]:
    params = database.params
    return {"login_host": params["login_host"], "login_port": params["login_port"],
            "login_user": params["login_user"], "db": params["db"]}


def policy(env: str, database, **extra) -> dict[str, Any]:
    """group_vars/<env>.yml as the repository's inventories set it, pointed at ``database``."""
    return {
        "indexops_environment": env, "indexops_production": env == "production",
        "indexops_login_host": database.params["login_host"], "indexops_login_port": database.params["login_port"],
        "indexops_login_user": database.params["login_user"], "indexops_db": database.name,
        "indexops_enabled": True, "indexops_lock_timeout": "1s", "indexops_lock_retries": 5,
        "indexops_statement_timeout": None, "indexops_maintenance_window": None,
        "indexops_require_rehearsal": env == "production", "indexops_rehearsal_environments": ["staging"],
        "indexops_rehearsal_max_age": "7d", "indexops_poll_interval": 1, **extra,
    }


class Job:
    """One ansible-runner job in a fresh private data directory of its own."""

    def __init__(self, base: Path, name: str, env: str, group_vars: dict[str, Any], password: str | None = None):
        self.password = password
        self.dir = base / f"{name}-{uuid.uuid4().hex[:6]}"
        self.project = self.dir / "project"
        self.reports = self.dir / "reports"
        self.env = env
        self.project.mkdir(parents=True)
        for item in PROJECT_CONTENT:
            source = ROOT / item
            if source.is_dir():
                shutil.copytree(source, self.project / item, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(source, self.project / item)
        inventory = self.dir / "inventory"
        (inventory / "group_vars").mkdir(parents=True)
        hosts = {"all": {"children": {"postgres": {"children": {env: {"hosts": {f"{env}-db": {
            "ansible_connection": "local", "ansible_python_interpreter": str(VENV_PYTHON)}}}}}}}}
        (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
        (inventory / "group_vars" / f"{env}.yml").write_text(yaml.safe_dump(group_vars, sort_keys=False))
        self.inventory = inventory
        self.events: list[dict[str, Any]] = []
        self.runner = None

    def change_file(self) -> Path:
        return self.project / "changes" / f"{CHANGE}.yml"

    def start(self, playbook: str, *, check: bool = False, extravars: dict[str, Any] | None = None,
              on_event=None):
        """ansible_runner.run_async; returns the thread. ``on_event`` sees every event as it comes."""
        def handler(event):
            self.events.append(event)
            if on_event:
                on_event(event)
            return True  # keep the event in the artifacts too

        envvars = {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "USER": OPERATOR,
            "ANSIBLE_LOCAL_TEMP": str(self.dir / "tmp" / "local"),
            "ANSIBLE_REMOTE_TEMP": str(self.dir / "tmp" / "remote"),
            "ANSIBLE_HOME": str(self.dir / "tmp" / "home"),
            # The login password as AWX hands a credential to a job: an environment variable libpq reads.
            **({"PGPASSWORD": self.password} if self.password else {}),
        }
        thread, self.runner = ansible_runner.run_async(
            private_data_dir=str(self.dir), project_dir=str(self.project), playbook=playbook,
            inventory=str(self.inventory), ident="job", quiet=True, envvars=envvars,
            extravars={"change": CHANGE, "indexops_reports_dir": str(self.reports), **(extravars or {})},
            cmdline="--check" if check else None, event_handler=handler, timeout=JOB_TIMEOUT_S)
        return thread

    def run(self, playbook: str, **kwargs):
        thread = self.start(playbook, **kwargs)
        thread.join(JOB_TIMEOUT_S + 30)
        return self

    @property
    def status(self) -> str:
        return self.runner.status

    @property
    def stdout(self) -> str:
        return "\n".join(event.get("stdout") or "" for event in self.events)

    def describe(self) -> str:
        return f"job in {self.dir}: status {self.status}, rc {self.runner.rc}\n{self.stdout}"

    def results(self, action: str) -> list[dict[str, Any]]:
        """The ``res`` of every successful task of ``action`` (runner_on_ok events)."""
        return [event["event_data"].get("res") or {} for event in self.events
                if event.get("event") == "runner_on_ok" and event.get("event_data", {}).get("task_action") == action]

    def reports_of(self, change: str = CHANGE) -> list[dict[str, Any]]:
        return [json.loads(path.read_text()) for path in sorted((self.reports / change).glob("*.json"))]


def succeeded(job: Job) -> None:
    assert job.status == "successful" and job.runner.rc == 0, job.describe()


def refused(job: Job, *phrases: str) -> str:
    assert job.status == "failed", job.describe()
    failures = [json.dumps(event["event_data"].get("res") or {}) for event in job.events
                if event.get("event") == "runner_on_failed"]
    text = "\n".join(failures)
    for phrase in phrases:
        assert phrase in text, f"{phrase!r} is not in the failures:\n{text}\n{job.describe()}"
    return text


def index_of(database):
    return database.fetchone(
        "SELECT i.indisvalid, pg_catalog.pg_get_indexdef(c.oid) FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid "
        "WHERE n.nspname = 'public' AND c.relname = %s", (INDEX,))


def ledger_of(database) -> list[tuple]:
    if not database.fetchval("SELECT to_regclass('indexops.jobs') IS NOT NULL"):
        return []
    return database.fetchall("SELECT job_id, kind, action, environment, state, spec_digest FROM indexops.jobs "
                             "WHERE change_id = %s ORDER BY job_id", (CHANGE,))


@contextlib.contextmanager
def snapshot_held_until(database, released: threading.Event):
    """A REPEATABLE READ transaction on ``database`` that a concurrent build must wait for (phase
    'waiting for old snapshots'), ended once ``released`` is set (or after PROGRESS_DEADLINE_S)."""
    holder = database.connect(autocommit=False, application_name="test/report-snapshot")
    with holder.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("SELECT 1")

    def release():
        released.wait(PROGRESS_DEADLINE_S)
        holder.rollback()

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield
    finally:
        released.set()
        thread.join(30)
        holder.close()


def digest_of(change_file: Path) -> str:
    loaded = run_module("indexops_change", {"path": str(change_file)})
    assert "digest" in loaded, loaded
    return loaded["digest"]


# --------------------------------------------------------------------------- the test

def test_rehearse_and_apply_through_ansible_runner_with_the_gate_reading_staging_s_ledger(
        db, production_db, tmp_path):
    staging, production = db, production_db
    seed_orders(staging)
    seed_orders(production)
    production_vars = policy("production", production, indexops_rehearsal_source="ledger",
                             indexops_rehearsal_ledger=connection(staging))

    def job(name: str, env: str) -> Job:
        return Job(tmp_path, name, env, production_vars if env == "production" else policy(env, staging),
                   password=staging.params.get("login_password"))

    # 1. Production before any rehearsal: refused by the gate, nothing touched.
    early = job("apply-before-rehearsal", "production").run("playbooks/apply.yml")
    refused(early, "refused: production requires a successful rehearsal of change " + CHANGE,
            f"none found in the rehearsal ledger (indexops.jobs in database {staging.name} on ")
    assert index_of(production) is None and ledger_of(production) == []

    # 2. Rehearse on staging. The first build waits for a held snapshot until a progress line came.
    rehearsal = job("rehearse", "staging")
    progress = f"staging-db: public.{INDEX} building"
    seen = threading.Event()
    with snapshot_held_until(staging, seen):
        thread = rehearsal.start("playbooks/rehearse.yml",
                                 on_event=lambda event: progress in (event.get("stdout") or "") and seen.set())
        thread.join(JOB_TIMEOUT_S + 30)
    succeeded(rehearsal)
    assert progress in rehearsal.stdout and "waits on pid" in rehearsal.stdout, rehearsal.describe()
    # AWX shows them under the task that printed them: display lines become events of that task.
    progress_events = [event for event in rehearsal.events if progress in (event.get("stdout") or "")]
    assert progress_events and all(event["event_data"].get("task") == "Wait for the background job, one progress "
                                   "line per poll" for event in progress_events), progress_events
    steps = [(res.get("action"), res.get("valid")) for res in rehearsal.results("indexops_wait")]
    assert steps == [("created", True), ("dropped", False), ("created", True)], steps
    first_build = rehearsal.results("indexops_wait")[0]
    assert first_build["sql"][0].startswith('CREATE INDEX CONCURRENTLY "orders_customer_created_idx"')
    staging_jobs = ledger_of(staging)
    assert [(kind, action, state) for _, kind, action, _, state, _ in staging_jobs] == [
        ("rehearse", "created", "rolled_back"), ("rollback", "dropped", "succeeded"),
        ("rehearse", "created", "succeeded")]
    digest = staging_jobs[-1][5]
    assert [report["kind"] for report in rehearsal.reports_of()] == ["rehearse"]  # in its own private dir only

    # 3. Production, in a fresh directory with no report at all: the gate finds staging's ledger.
    applied = job("apply", "production").run("playbooks/apply.yml")
    succeeded(applied)
    assert index_of(production)[0] is True
    assert [(kind, action, env, state, spec) for _, kind, action, env, state, spec in ledger_of(production)] == [
        ("apply", "created", "production", "succeeded", digest)]
    [gate] = applied.results("indexops_gate")
    assert gate["go"] is True and gate["rehearsal_source"] == "ledger"
    assert gate["rehearsal"]["job_ids"] == [job_id for job_id, *_ in staging_jobs]
    assert [res.get("action") for res in applied.results("indexops_wait")] == ["created"]
    [report] = applied.reports_of()
    assert report["rehearsal"]["source"] == "ledger" and report["rehearsal"]["digest"] == digest
    assert not list((applied.reports / CHANGE).glob("staging-*"))  # no staging report was ever in this job

    # 4. The change file edited after the rehearsal (another digest): refused.
    edited = job("apply-edited", "production")
    edited.change_file().write_text(edited.change_file().read_text().replace("order: desc", "order: asc"))
    edited_digest = digest_of(edited.change_file())
    assert edited_digest != digest
    edited.run("playbooks/apply.yml")
    refused(edited, "none found in the rehearsal ledger",
            "1 rehearsal in the ledger did not count: 1 for another digest (the change was edited after it)")

    # 5. A forged rehearsal report for the edited digest in the job's own reports directory: with the
    #    ledger as the source it is not even read ...
    def forged(name: str) -> Job:
        forger = job(name, "production")
        forger.change_file().write_text(edited.change_file().read_text())
        [real] = rehearsal.reports_of()
        target = forger.reports / CHANGE / Path(next((rehearsal.reports / CHANGE).glob("*.json")).name)
        target.parent.mkdir(parents=True)
        target.write_text(json.dumps({**real, "digest": edited_digest, "finished_at": real["finished_at"]}))
        return forger

    forgery = forged("apply-forged").run("playbooks/apply.yml")
    refused(forgery, "none found in the rehearsal ledger", "1 for another digest")
    # ... while the same file passes a gate that reads reports (check mode: nothing is built), which
    # shows that the file is a well-formed forgery and that only the source made the difference.
    with_reports = forged("apply-forged-reports-source").run(
        "playbooks/apply.yml", check=True, extravars={"indexops_rehearsal_source": "reports"})
    assert [res["go"] for res in with_reports.results("indexops_gate")] == [True], with_reports.describe()
    assert index_of(production)[0] is True
    assert index_of(production)[1].endswith("(customer_id, created_at DESC)")  # the edited change never ran
    assert len(ledger_of(production)) == 1
