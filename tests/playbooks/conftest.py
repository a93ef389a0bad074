"""Fixtures that run the real ``ansible-playbook`` against the ``db`` fixture's database.

``run_playbook`` (function scope) returns a callable::

    run = run_playbook("pg_index_present.yml", extra_vars={...}, check=False, diff=False, verbosity=0)
    returncode, stdout, stderr, results = run

It starts ``.venv/bin/ansible-playbook`` in a subprocess with the repository root as working
directory, so ansible.cfg applies (library, collections_path, roles_path), against a temporary YAML
inventory: group ``postgres`` with one host ``pgtest`` (``ansible_connection: local``, the venv's
Python) whose host vars point ``indexops_login_host/port/user`` and ``indexops_db`` at the test
database, like the group_vars of inventories/local do for playbooks/demo.yml.

Structured results: ansible-core 2.19 ships no JSON stdout callback (``json`` lives in the
ansible.posix collection, which is not a dependency). So the test playbooks register their module
results as ``result_*`` variables and import files/report_results.yml in an ``always:`` section:
a debug task that prints them as one JSON document, also in check mode and after a failed task
(debug runs on the controller, so it costs none of the module round trip a copy task would).
``PlaybookRun.results`` is that document read back from the output
(``ANSIBLE_CALLBACK_RESULT_FORMAT=json``); everything else in the output is what ansible.cfg's stdout
callback (callback_plugins/indexops.py) prints for the operator, which the tests read: the banners and
plain lines of the tasks that print something, PLAY RECAP, diffs, ``FAILED <host>: <message>`` lines
(``PlaybookRun.failures``). A test that must see every task's banner or status word (ok, skipping)
passes ``env=DEFAULT_CALLBACK``: Ansible's default callback.

A playbook name without a slash is looked up in tests/playbooks/files/; anything else is relative to
the repository root (e.g. ``playbooks/demo.yml``). ``inventory=None`` uses ansible.cfg's default
inventory (inventories/local).

``environment_inventory`` (function scope) builds an inventory directory shaped like
inventories/<env>/ for the test database: ``hosts.yml`` (group ``postgres``, host ``pgtest``) and
``group_vars/all.yml`` with that environment's policy (see ``ENVIRONMENT_POLICY``) plus the
connection vars, any of which a test can override or remove::

    path = environment_inventory("production", indexops_enabled=False, drop=["indexops_environment"])
    run = run_playbook("playbooks/apply.yml", inventory=path, extra_vars={"change": "..."})
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
ANSIBLE_PLAYBOOK = VENV_BIN / "ansible-playbook"
VENV_PYTHON = VENV_BIN / "python"
PLAYBOOK_FILES = Path(__file__).resolve().parent / "files"

TEST_HOST = "pgtest"
RESULTS_TASK = "Report the registered results to the test suite"  # files/report_results.yml
RESULTS_VAR = "indexops_test_results"
PLAYBOOK_TIMEOUT_S = 300

# "pgtest                     : ok=2    changed=1    unreachable=0    failed=0    skipped=0 ..."
RECAP_LINE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<stats>(?:[a-z]+=\d+\s*)+)$", re.M)
TASK_BANNER = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?P<name>[^\]]*)\] \**$", re.M)
SECTION_END = re.compile(r"^(?:TASK|RUNNING HANDLER|PLAY)\b.*\*{3,}$", re.M)  # the next banner
# A failure as callback_plugins/indexops.py prints it (its further lines are indented by two spaces),
# and as the default callback does (fatal: [host]: FAILED! => {...}, [ERROR]: ...).
FAILURE_START = ("FAILED ", "UNREACHABLE ")
DEFAULT_FAILURE_START = ("fatal:", "failed:", "[ERROR]")
# env= of run_playbook for Ansible's default callback (every task's banner and status word).
DEFAULT_CALLBACK = {"ANSIBLE_STDOUT_CALLBACK": "default"}


# Default of run_playbook(inventory=...): the temporary inventory built for the test database.
TEST_INVENTORY = object()


@dataclass
class PlaybookRun:
    """One finished ansible-playbook run. Unpacks as (returncode, stdout, stderr, results)."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    results: dict[str, Any] = field(default_factory=dict)  # result_* vars printed by report_results.yml

    def __iter__(self):
        return iter((self.returncode, self.stdout, self.stderr, self.results))

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP per host, e.g. {"pgtest": {"ok": 2, "changed": 1, "failed": 0, ...}}."""
        _, _, tail = self.stdout.rpartition("PLAY RECAP")
        recap = {}
        for match in RECAP_LINE.finditer(tail):
            stats = dict(pair.split("=") for pair in match.group("stats").split())
            recap[match.group("host")] = {key: int(value) for key, value in stats.items()}
        return recap

    @property
    def failures(self) -> str:
        """The failure lines of the run, with their continuation lines, in either callback's format."""
        lines, inside = [], False
        for line in self.output.splitlines():
            if line.startswith(FAILURE_START + DEFAULT_FAILURE_START):
                lines.append(line)
                inside = line.startswith(FAILURE_START)
            elif inside and line.startswith("  "):
                lines.append(line)
            else:
                inside = False
        return "\n".join(lines)

    def task_output(self, name: str) -> str:
        """What the default callback printed for the task called ``name`` (its banner excluded)."""
        sections = []
        for match in TASK_BANNER.finditer(self.stdout):
            if match.group("name") == name:
                end = SECTION_END.search(self.stdout, match.end())
                sections.append(self.stdout[match.end(): end.start() if end else len(self.stdout)])
        if not sections:
            raise AssertionError(f"task {name!r} is not in the output of the run:\n{self.describe()}")
        return "".join(sections)

    def describe(self) -> str:
        """The command and its output, for assertion messages."""
        return (f"$ {' '.join(self.command)}\n--- rc={self.returncode} stdout:\n{self.stdout}\n"
                f"--- stderr:\n{self.stderr}")


def _printed_results(stdout: str) -> dict[str, Any]:
    """The ``result_*`` variables that files/report_results.yml printed, or {} if it did not run."""
    for match in TASK_BANNER.finditer(stdout):
        if match.group("name") != RESULTS_TASK:
            continue
        start = stdout.find("=> {", match.end())
        if start < 0:
            break
        printed, _ = json.JSONDecoder().raw_decode(stdout, start + len("=> "))
        return printed.get(RESULTS_VAR) or {}
    return {}


def _ansible_env(tmp_path: Path, extra: dict[str, str] | None) -> dict[str, str]:
    """The caller's environment minus any ANSIBLE_* setting, so only ansible.cfg and these apply."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"),
        ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-remote"),
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
    )
    env.update(extra or {})
    return env


def connection_vars(db) -> dict[str, Any]:
    """The indexops_* connection vars (as in inventories/*/group_vars) for the test database."""
    params = db.params
    out = {
        "indexops_login_host": params["login_host"],
        "indexops_login_port": params["login_port"],
        "indexops_login_user": params["login_user"],
        "indexops_db": params["db"],
        "indexops_lock_timeout": "1s",
        "indexops_lock_retries": 5,
    }
    if params.get("login_password"):
        out["indexops_login_password"] = params["login_password"]
    return out


# The policy of each environment as inventories/<env>/group_vars/all.yml sets it, without the
# connection (the test database's) and without a maintenance window (tests set one explicitly).
ENVIRONMENT_POLICY: dict[str, dict[str, Any]] = {
    "local": {"indexops_production": False, "indexops_require_rehearsal": False},
    "staging": {"indexops_production": False, "indexops_require_rehearsal": False},
    "production": {"indexops_production": True, "indexops_require_rehearsal": True},
}
COMMON_POLICY: dict[str, Any] = {
    "indexops_enabled": True,
    "indexops_statement_timeout": None,
    "indexops_long_transaction_threshold": "5min",
    "indexops_maintenance_window": None,
    "indexops_rehearsal_environments": ["staging"],
    "indexops_rehearsal_max_age": "7d",
}


@pytest.fixture
def environment_inventory(db, tmp_path):
    """Factory: an inventory directory for environment ``env`` pointing at ``db``; see the module docstring."""

    def make(env: str, *, drop: tuple[str, ...] | list[str] = (), **overrides: Any) -> Path:
        python = VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable)
        root = tmp_path / "inventories" / env
        (root / "group_vars").mkdir(parents=True, exist_ok=True)
        hosts = {"all": {"children": {"postgres": {"hosts": {TEST_HOST: {
            "ansible_connection": "local", "ansible_python_interpreter": str(python)}}}}}}
        (root / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
        policy = {"indexops_environment": env, **COMMON_POLICY, **ENVIRONMENT_POLICY.get(env, {}),
                  **connection_vars(db), **overrides}
        for name in drop:
            policy.pop(name, None)
        (root / "group_vars" / "all.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
        return root

    return make


@pytest.fixture
def playbook_inventory(db, tmp_path) -> Path:
    """A YAML inventory: group postgres, host pgtest (local connection, venv Python), vars for ``db``."""
    python = VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable)
    host = {"ansible_connection": "local", "ansible_python_interpreter": str(python), **connection_vars(db)}
    inventory = {"all": {"children": {"postgres": {"hosts": {TEST_HOST: host}}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path


@pytest.fixture
def run_playbook(tmp_path, playbook_inventory):
    """Run ansible-playbook; see the module docstring. Returns a PlaybookRun."""
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.fail(f"{ANSIBLE_PLAYBOOK} is missing: run `make venv` first", pytrace=False)

    def run(playbook: str, *, extra_vars: dict[str, Any] | None = None, check: bool = False,
            diff: bool = False, verbosity: int = 0, inventory=TEST_INVENTORY,
            env: dict[str, str] | None = None, timeout: float = PLAYBOOK_TIMEOUT_S) -> PlaybookRun:
        path = PLAYBOOK_FILES / playbook if "/" not in playbook else ROOT / playbook
        if not path.exists():
            raise FileNotFoundError(path)
        command = [str(ANSIBLE_PLAYBOOK)]
        if inventory is TEST_INVENTORY:
            inventory = playbook_inventory
        for source in (inventory if isinstance(inventory, (list, tuple)) else [inventory]):
            if source is not None:  # a list gives several inventories (-i a -i b)
                command += ["-i", str(source)]
        command.append(str(path))
        if extra_vars:
            command += ["-e", json.dumps(extra_vars)]
        if check:
            command.append("--check")
        if diff:
            command.append("--diff")
        if verbosity:
            command.append("-" + "v" * verbosity)
        proc = subprocess.run(command, cwd=ROOT, env=_ansible_env(tmp_path, env), capture_output=True,
                              text=True, timeout=timeout, check=False)
        return PlaybookRun(command=command, returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr,
                           results=_printed_results(proc.stdout))

    return run
