# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin indexops_wait: follow an index build on the control node, one line per poll.

Runs on the controller. Each poll runs async_status (for a job this run started) and pg_index_status
on the target, and prints one line through Display: host, index, state, phase, percent, elapsed,
ETA and what the build waits on. There is no until/retries loop, so no "FAILED - RETRYING" noise.

Its documentation renders with ``ansible-doc -M action_plugins indexops_wait``.
"""

from __future__ import annotations

import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.indexops.core.plugins.module_utils import humanize, states
from ansible_collections.indexops.core.plugins.module_utils.connection import connection_argument_spec

DOCUMENTATION = r"""
---
module: indexops_wait
short_description: Wait for an index build, printing one progress line per poll
description:
  - Action plugin; runs on the control node. Follows one index build until it ends and prints one
    line per poll (host, index, state, phase, percent done, elapsed time, ETA and the sessions the
    build waits on), read with M(pg_index_status). It never loops with C(until)/C(retries), so the
    output has no retry noise.
  - With O(jid), it follows the background job (C(async), C(poll=0)) that this run started with
    M(pg_index), polls it with C(async_status), and returns that job's result as its own, failing
    when the job failed.
  - Without O(jid), it attaches to a build that is already running in the database (started by an
    earlier run whose controller went away, or by someone else); it polls M(pg_index_status) until
    the change's state is no longer V(building) (no session builds its index or, for a replace, its
    replacement index, and its latest ledger job no longer runs; lock retries, ANALYZE and
    verification between statements count as running) and returns the final state. The caller decides
    what a final V(failed) or V(lost) job means; RV(status) holds it and RV(job_end) says it.
  - With O(wait=false) it polls once, prints the line and returns at once; the build goes on.
version_added: "0.2.0"
author: indexops contributors
options:
  jid:
    description: The C(ansible_job_id) of the background job to follow. Unset attaches to a running build.
    type: str
  results_file:
    description:
      - The C(results_file) the background job returned when it started; its directory is where the job
        writes its status. Unset uses the shell's C(async_dir).
    type: str
  change:
    description:
      - The change whose build is followed, as M(pg_index_status) takes it in its C(changes) option
        (V(id), V(index) with V(name), V(schema) and V(table), V(action), V(environment)).
    type: dict
    required: true
  wait:
    description: V(false) polls once, prints the line and returns while the build goes on.
    type: bool
    default: true
  interval:
    description: Seconds between progress polls (the first polls come sooner, so a short job ends quickly).
    type: float
    default: 5
  timeout:
    description:
      - Attaching only; stop waiting after this many seconds (the build goes on). V(0) waits as long as it runs.
    type: int
    default: 0
  time_limit:
    description: The job's C(async) time limit in seconds, named in the message when the job ran past it.
    type: int
  show_database:
    description:
      - "Name the database (O(db)) in every progress line, after the host: C(<host> db <db>: ...). Apply and rollback
        over the databases of one server (indexops_waves) set it, so that each line says which database it is about."
    type: bool
    default: false
  databases:
    description:
      - "With O(jid), the databases the job works on (M(pg_index) with its O(pg_index#module:databases) option), read
        in one M(pg_index_status) run per poll. Each poll prints a line for every database whose build is running,
        C(<host> db <db>: ...), and one line with how many databases are in each state, C(<host>: change <id> over
        N database(s): 3 done, 2 building, 7 pending); when the job has ended, the count line once more, from its
        result."
    type: list
    elements: str
  attached_to:
    description:
      - Attaching only; the RV(pg_index_status#module:changes) entry that found the change V(building). The
        plugin says which build and job it attaches to, and RV(job_end) says whether that job failed or was lost.
    type: dict
extends_documentation_fragment:
  - indexops.core.connection
attributes:
  check_mode:
    support: partial
    details: With O(jid) it is skipped (nothing was started); attaching polls once, as with O(wait=false).
  diff_mode:
    support: none
notes:
  - A status read that fails (the server restarted, a network blip) is printed and retried at the next
    poll; it never stops the wait, because the build itself does not depend on it.
  - "The progress line reads C(<host>: <schema.index> <state> <percent>% <phase>, pid <pid>, running <elapsed>,
    ETA <eta>; waits on pid <pid> (<state> <age>): <query>), with C(, attempt <n>/<N>) after the pid while a
    statement is tried again after a lock timeout (a retry starts the build over)."
seealso:
  - module: pg_index_status
  - module: pg_index
  - name: Asynchronous actions and polling
    description: How C(async) and C(poll=0) start a task in the background.
    link: https://docs.ansible.com/ansible/latest/playbook_guide/playbooks_async.html
"""

EXAMPLES = r"""
- name: Start the build in the background
  pg_index:
    db: shop
    name: orders_customer_idx
    table: public.orders
    columns: [customer_id]
  async: 86400
  poll: 0
  register: build_job

- name: Wait for the build, one progress line per poll
  indexops_wait:
    jid: "{{ build_job.ansible_job_id }}"
    results_file: "{{ build_job.results_file }}"
    db: shop
    change:
      id: orders-customer
      action: create
      index: {name: orders_customer_idx, schema: public, table: orders}
  register: build

- name: Attach to a build that an earlier run left running, and return at once
  indexops_wait:
    db: shop
    wait: false
    change:
      id: orders-customer
      action: create
      index: {name: orders_customer_idx, schema: public, table: orders}
"""

RETURN = r"""
finished:
  description:
    - Whether the job (with O(jid)) or, attaching, the change's build and ledger job have ended (its
      state is no longer V(building)).
  returned: always
  type: bool
polls:
  description: How many progress lines were printed.
  returned: always
  type: int
line:
  description: The last progress line printed.
  returned: always
  type: str
  sample: "db1: public.orders_customer_idx building 1.2% waiting for writers before build, running 42s, ETA ?"
status:
  description: The last RV(pg_index_status#module:changes) entry read for the change, or null.
  returned: always
  type: dict
job_end:
  description:
    - Attaching only; the message when the ledger job this run attached to (O(attached_to)) ended failed or
      lost, and an empty string otherwise.
  returned: when attaching
  type: str
result:
  description: With O(jid), the finished job's own result (the M(pg_index) return values).
  returned: when O(jid) is set and the job finished
  type: dict
"""

display = Display()

CONNECTION_OPTIONS = ("login_host", "login_port", "login_user", "login_password", "login_unix_socket", "db",
                      "ssl_mode", "ssl_rootcert", "connect_timeout", "ledger_owner")
# The first polls come quickly (a small build is over in a second), then every `interval` seconds.
FIRST_DELAY_S = 0.25
# How long a job that was just started may have no status file yet.
JOB_FILE_GRACE_S = 60
# Polls in a row that must see the job's client session gone before the run says the job died.
JOB_GONE_POLLS = 2


def progress_line(host, change, status, error=None):
    """The line of one poll: pg_index_status's own line for the change, after the host."""
    name = states.index_label(change.get("index") or {})
    if error:
        return f"{host}: {name} status unavailable this poll: {error}"
    if not status:
        return f"{host}: {name} no status yet"
    return f"{host}: {status['line']}"


def many_line(host, change, databases, entries, read):
    """The count line of a poll over many databases: how many are in each change state, in the states' order."""
    head = f"{host}: change {change.get('id')} over {len(databases)} database(s): "
    if read.get("failed"):
        return head + f"status unavailable this poll: {str(read.get('msg') or '').splitlines()[0]}"
    found = [(entry or {}).get("state") or "unread" for entry in entries.values()]
    counts = [f"{found.count(name)} {name}" for name in (*states.CHANGE_STATES, "unread") if name in found]
    return head + ", ".join(counts)


def ended_line(host, change, entries):
    """The count line once the run over many databases has ended, from its own result (no status read)."""
    failed = sum(1 for entry in entries if entry.get("failed"))
    counts = [f"{count} {name}" for count, name in ((len(entries) - failed, "done"), (failed, "failed")) if count]
    return f"{host}: change {change.get('id')} over {len(entries)} database(s): " + ", ".join(counts)


def module_crashed(outcome):
    """Whether a finished job's result is async_wrapper's own word that the module printed no result:
    it puts the module's raw output under C(data) (C(outdata) when it could not start it) only then,
    as when the OOM killer or an admin killed the pg_index process but not the watcher above it."""
    return bool(outcome.get("failed")) and ("data" in outcome or "outdata" in outcome)


# async_status's bookkeeping, not the job's result. "exception" too: ansible-core 2.19 gives every failed
# module result one, which prints as "(traceback unavailable)" unless tracebacks are enabled; the job's
# msg is its one line, and Ansible adds a real traceback to this task's own result when they are.
NOT_THE_JOBS = ("ansible_job_id", "started", "finished", "results_file", "invocation", "stdout", "stderr",
                "stdout_lines", "stderr_lines", "_ansible_parsed", "exception")


def job_outcome(job):
    """A finished background job's result as this task's own: what pg_index returned, nothing else."""
    return {key: value for key, value in job.items() if key not in NOT_THE_JOBS}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _, args = self.validate_argument_spec(argument_spec={
            "jid": {"type": "str"},
            "results_file": {"type": "str"},
            "change": {"type": "dict", "required": True},
            "wait": {"type": "bool", "default": True},
            "interval": {"type": "float", "default": 5.0},
            "timeout": {"type": "int", "default": 0},
            "time_limit": {"type": "int"},
            "attached_to": {"type": "dict"},
            "show_database": {"type": "bool", "default": False},
            "databases": {"type": "list", "elements": "str"},
            **connection_argument_spec(),
        })
        if self._task.check_mode:
            if args["jid"]:
                result.update(skipped=True, msg="check mode: nothing was started, so there is nothing to wait for")
                return result
            args["wait"] = False  # attaching reads only: one poll
        self.task_vars = task_vars or {}
        self.args = args
        self.host = self.task_vars.get("inventory_hostname", "?")
        if args["show_database"] and args.get("db"):
            self.host = f"{self.host} db {args['db']}"
        try:
            if args["jid"]:
                result.update(self.follow_job(args["jid"]))
            else:
                result.update(self.attach())
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        result.pop("invocation", None)
        return result

    # ----------------------------------------------------------------- polling
    def status(self):
        """(the change status, pg_index_status's entry for the status request, error text)."""
        module_args = {key: self.args[key] for key in CONNECTION_OPTIONS if self.args.get(key) is not None}
        module_args.update(changes=[self.args["change"]], builds=False, leftovers=False, ledger=True)
        read = self._execute_module(module_name="pg_index_status", module_args=module_args, task_vars=self.task_vars)
        if read.get("failed"):
            return None, str(read.get("msg") or "pg_index_status failed").splitlines()[0]
        changes = read.get("changes") or []
        return (changes[0] if changes else None), None

    def show(self, state):
        if self.args["databases"]:
            return self.show_databases(state)
        status, error = self.status()
        line = progress_line(self.host, self.args["change"], status, error)
        display.display(line)
        state["polls"] += 1
        state["line"] = line
        if status is not None:
            state["status"] = status
        return status

    def show_databases(self, state):
        """One poll over the job's databases: a line per running build, then the count of each state. Returns
        the change entry the died-job check reads: a running one, one that lost its client only when all have."""
        module_args = {key: self.args[key] for key in CONNECTION_OPTIONS if self.args.get(key) is not None}
        module_args.update(databases=self.args["databases"], changes=[self.args["change"]], builds=False,
                           leftovers=False, ledger=True)
        read = self._execute_module(module_name="pg_index_status", module_args=module_args, task_vars=self.task_vars)
        results = [] if read.get("failed") else read.get("database_results") or []
        entries = {entry["database"]: (entry.get("changes") or [None])[0] for entry in results}
        running = [(name, entry) for name, entry in entries.items() if entry and entry.get("state") == "building"]
        for database, entry in running:
            display.display(f"{self.host} db {database}: {states.progress_line(entry)}")
        line = many_line(self.host, self.args["change"], self.args["databases"], entries, read)
        display.display(line)
        state["polls"] += 1
        state["line"] = line
        gone = [entry for _, entry in running if states.client_gone(entry)]
        status = gone[0] if running and len(gone) == len(running) else (running[0][1] if running else None)
        state["status"] = status
        return status

    def delays(self):
        delay = FIRST_DELAY_S
        while True:
            yield min(delay, self.args["interval"])
            delay *= 2

    # ----------------------------------------------------------------- a job this run started
    def async_status(self, jid, mode="status"):
        if self.args["results_file"]:  # where the job said it writes: no guessing of the remote home
            async_dir = self._connection._shell.join_path(*self.args["results_file"].rsplit("/", 1)[:1])
        else:
            async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        return self._execute_module(module_name="ansible.legacy.async_status", task_vars=self.task_vars,
                                    module_args={"jid": jid, "mode": mode, "_async_dir": async_dir})

    def follow_job(self, jid):
        state = {"polls": 0, "line": "", "status": None, "finished": False}
        delays = self.delays()
        gone_polls = 0
        # On a loaded control node the job writes its status file a few seconds after it was started.
        missing_until = time.monotonic() + JOB_FILE_GRACE_S
        while True:
            job = self.async_status(jid)
            if job.get("msg") == "could not find job" and time.monotonic() < missing_until:
                time.sleep(next(delays))
                continue
            if job.get("finished"):
                break
            if job.get("failed"):  # the job file is unreadable: nothing more to learn from polling
                raise AnsibleActionFail(f"cannot follow background job {jid}: {job.get('msg')}")
            status = self.show(state)
            # The job file never says finished when the job's own processes died: the ledger's client
            # session does. Two polls in a row, so that a job that is just ending is not misread.
            gone_polls = gone_polls + 1 if states.client_gone(status) else 0
            if gone_polls >= JOB_GONE_POLLS:
                raise AnsibleActionFail(states.job_died(jid, self.host, status), result={"job_died": True, **state})
            if not self.args["wait"]:
                return state
            time.sleep(next(delays))
        self.async_status(jid, mode="cleanup")
        state["finished"] = True
        if self.args["databases"] and job.get("database_results"):  # what every database of the run ended as
            display.display(ended_line(self.host, self.args["change"], job["database_results"]))
        if module_crashed(job):
            self.confirm_died(jid, state)
        outcome = job_outcome(job)
        if outcome.get("failed") and outcome.get("msg") == "Timeout exceeded":
            limit = self.args["time_limit"]
            outcome["msg"] = (
                f"the background job ran past its time limit{f' of {humanize.duration(limit)}' if limit else ''} "
                "(indexops_async_timeout) and was stopped on the control node; the build itself may still "
                "be running on the server: watch it with playbooks/status.yml, it is shown there as building or, "
                "once its session has ended, as lost")
        state["result"] = dict(outcome)
        state.update(outcome)
        return state

    def confirm_died(self, jid, state):
        """The job's watcher outlived its pg_index process and wrote a result without one (a Python
        traceback from async_wrapper, not the module's). Read the change until the ledger shows the
        job's client session gone, then fail with what the index is now: never the traceback. A module
        that crashed before its job row (no client session to lose) keeps its own error, which says more."""
        delays = self.delays()
        for _ in range(JOB_GONE_POLLS + 3):  # the client's backend ends as soon as its socket closes
            status = self.show(state)
            if states.client_gone(status):
                raise AnsibleActionFail(states.job_died(jid, self.host, status), result={"job_died": True, **state})
            time.sleep(next(delays))

    # ----------------------------------------------------------------- attach to a running build
    def attach(self):
        found = self.args["attached_to"] or {}
        display.display(f"{self.host}: " + states.attach_line(self.args["change"].get("id"), found, self.args["wait"]))
        state = {"polls": 0, "line": "", "status": None, "finished": False, "job_end": ""}
        deadline = time.monotonic() + self.args["timeout"] if self.args["timeout"] else None
        delays = self.delays()
        while True:
            status = self.show(state)
            if states.ended(status):
                state["finished"] = True
                state["job_end"] = states.attached_job_end(self.args["change"].get("id"), self.host, found, status)
                return state
            if not self.args["wait"] or (deadline is not None and time.monotonic() >= deadline):
                return state
            time.sleep(next(delays))
