#!/usr/bin/python
# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: indexops_gate
short_description: Decide whether an index change may run on an environment now
description:
  - Checks an environment's policy before any DDL runs, and answers go or no-go with every reason
    as one line that says what is refused, why, and what to do.
  - "Kill switch: with O(enabled=false) no DDL runs. A break-glass override never passes it."
  - "Maintenance window: DDL runs only inside O(maintenance_window); when it is closed the result
    says when it opens."
  - "Rehearsal: with O(require_rehearsal=true) the change must have a successful rehearsal with the
    same O(digest), from one of O(rehearsal_environments), finished within O(rehearsal_max_age); the
    newest match wins. Where the evidence comes from is O(rehearsal_source)."
  - "O(rehearsal_source=reports): rehearsal reports (C(kind: rehearse), C(success: true)) in
    C(<reports_dir>/<change_id>/*.json) on the control node. Anyone who can write there can forge one,
    and a control node that keeps nothing between runs (AWX, ansible-runner) has none."
  - "O(rehearsal_source=ledger): the jobs of the change in the rehearsal environment's ledger
    (C(indexops.jobs) in the database O(rehearsal_ledger) names), read in a read-only session after
    checking that the ledger is owned by the login role or O(rehearsal_ledger.ledger_owner). A rehearsal
    counts when its three jobs follow each other for that change and environment (C(rehearse), then
    C(rollback), then C(rehearse); a rebuild: two C(rehearse) jobs), all with the same digest and none
    failed; its time is the last job's C(finished_at); C(duration_s) and C(table_bytes) come from the
    C(observed) values of the job that built the index. Report files are not read at all."
  - A break-glass O(override_reason) passes the window and the rehearsal requirement; the result
    lists what it passed in RV(overridden) and sets RV(override), so the reason and the operator
    can be recorded in the ledger and the report.
  - O(operation=read) (preflight, status, cleanup listings) skips the kill switch and the window.
  - Runs on the control node; use it with C(delegate_to=localhost) and C(run_once=true). It connects to
    a database only with O(rehearsal_source=ledger), and then only reads.
version_added: "0.1.0"
author: indexops contributors
options:
  change_id:
    description: The change's id (the change file's name without C(.yml)).
    type: str
    required: true
  digest:
    description: The change's digest, as M(indexops_change) returns it.
    type: str
    required: true
  environment:
    description: Name of the environment the change is about to run on, e.g. V(production).
    type: str
    required: true
  operation:
    description: V(ddl) for anything that changes an index; V(read) for read-only runs.
    type: str
    choices: [ddl, read]
    default: ddl
  enabled:
    description: The environment's kill switch (C(indexops_enabled)). V(false) refuses every DDL.
    type: bool
    default: true
  given_on_command_line:
    description:
      - The policy variables (e.g. V(indexops_enabled), V(indexops_rehearsal_source)) this run was given with
        C(-e), as the C(indexops.core.value_source) filter says. A refusal caused by one of them says to change
        the command line, not the inventory.
    type: list
    elements: str
    default: []
  maintenance_window:
    description:
      - The weekly window in which DDL may run; null means always open.
      - An O(maintenance_window.end) at or before O(maintenance_window.start) closes on the next
        day, so a window may cross midnight. O(maintenance_window.days) are the days on which the
        window opens.
    type: dict
    suboptions:
      days:
        description:
          - Days on which the window opens, as V(mon) ... V(sun) (or full names) and ranges like
            V(mon-fri). Unset means every day.
        type: list
        elements: str
      start:
        description: Local opening time, V(HH:MM). Quote it in YAML, which reads an unquoted V(22:00) as a number.
        type: str
        required: true
      end:
        description: Local closing time, V(HH:MM); V(24:00) is midnight at the end of the day.
        type: str
        required: true
      timezone:
        description: IANA time zone of O(maintenance_window.start) and O(maintenance_window.end), e.g. V(Europe/Berlin).
        type: str
        required: true
  require_rehearsal:
    description: Whether a successful rehearsal of the same digest is required (true in production).
    type: bool
    default: false
  rehearsal_environments:
    description: Environments whose rehearsals count.
    type: list
    elements: str
    default: [staging]
  rehearsal_max_age:
    description: How old a rehearsal may be, with a unit, e.g. V(7d), V(12h), V(30min).
    type: str
    default: 7d
  reports_dir:
    description:
      - Directory holding C(<change_id>/<env>-<timestamp>.json) reports, on the control node.
      - Read only with O(rehearsal_source=reports).
    type: path
    default: reports
  rehearsal_source:
    description:
      - Where the evidence of a rehearsal comes from. V(reports) (rehearsal reports in O(reports_dir)) or
        V(ledger) (the rehearsal environment's ledger, see O(rehearsal_ledger)).
    type: str
    choices: [reports, ledger]
    default: reports
  rehearsal_ledger:
    description:
      - Connection to the rehearsal environment's database whose ledger holds the rehearsals, for
        O(rehearsal_source=ledger). Unset options fall back to libpq's C(PG*) variables and C(.pgpass).
      - Required when O(rehearsal_source=ledger) and O(require_rehearsal=true). The ledger is read only when
        the rehearsal is required (rollbacks, cleanups and rehearsals never connect to it); otherwise
        RV(rehearsal) is null.
      - The role needs USAGE on schema C(indexops) and SELECT on C(indexops.jobs); nothing else.
    type: dict
    suboptions:
      login_host:
        description: Host of the rehearsal environment's server; unset uses C(PGHOST).
        type: str
      login_port:
        description: Port; unset uses C(PGPORT) or 5432.
        type: int
      login_user:
        description: Role to read the ledger as; unset uses C(PGUSER).
        type: str
      login_password:
        description: Password; prefer C(.pgpass) or C(PGPASSWORD). Never logged.
        type: str
      login_unix_socket:
        description: Directory of the server's Unix socket, instead of O(rehearsal_ledger.login_host).
        type: str
      db:
        description: Database whose ledger holds the rehearsal (where the rehearsal ran); unset uses C(PGDATABASE).
        type: str
      ssl_mode:
        description: libpq C(sslmode).
        type: str
        choices: [allow, disable, prefer, require, verify-ca, verify-full]
      ssl_rootcert:
        description: CA certificate file (libpq C(sslrootcert)).
        type: path
      ledger_owner:
        description:
          - A role besides O(rehearsal_ledger.login_user) that may own schema C(indexops) there (the rehearsal
            environment's apply role, when the gate reads as a read-only role). A ledger owned by anyone else is
            not read.
        type: str
      connect_timeout:
        description: Seconds to wait for the connection.
        type: int
        default: 10
  override_reason:
    description:
      - Break glass. Passes a closed window and a missing rehearsal, never the kill switch.
      - Needs O(operator). An empty string counts as not given.
    type: str
  operator:
    description: Who runs the change; required with O(override_reason).
    type: str
  now:
    description: The current time as ISO-8601 with a UTC offset; unset means the control node's clock. For tests.
    type: str
  fail_on_refusal:
    description: Fail the task when the answer is no-go. With V(false) the task succeeds and RV(go) says no.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: The module only reads report files or the rehearsal ledger; check mode returns the same result.
  diff_mode:
    support: none
notes:
  - The module never reports C(changed).
  - Unreadable report files are counted in the refusal, never used.
  - "With O(rehearsal_source=ledger) a ledger that cannot be read (unreachable, not owned by the trusted role,
    not readable) is named in the refusal with the reason; running again is safe."
seealso:
  - module: indexops_change
    description: Reads a change file and returns its digest.
"""

EXAMPLES = r"""
- name: Refuse the change unless production's policy allows it now
  indexops_gate:
    change_id: "{{ change }}"
    digest: "{{ indexops_change.digest }}"
    environment: production
    enabled: true
    maintenance_window:
      days: [mon-thu]
      start: "22:00"
      end: "04:00"
      timezone: Europe/Berlin
    require_rehearsal: true
    rehearsal_environments: [staging]
    rehearsal_max_age: 7d
    reports_dir: "{{ playbook_dir }}/../reports"
    override_reason: "{{ indexops_override_reason | default(omit) }}"
    operator: "{{ lookup('ansible.builtin.env', 'USER') }}"
  delegate_to: localhost
  run_once: true
  register: indexops_gate

- name: Take the evidence from staging's ledger, not from files on this machine
  indexops_gate:
    change_id: "{{ change }}"
    digest: "{{ indexops_change.digest }}"
    environment: production
    require_rehearsal: true
    rehearsal_source: ledger
    rehearsal_ledger:
      login_host: db.staging.example.com
      login_port: 5432
      login_user: indexops_gate
      db: app
      ssl_mode: verify-full
      ssl_rootcert: /etc/indexops/staging-ca.crt
      ledger_owner: indexops
  delegate_to: localhost
  run_once: true

- name: Ask without failing, to list what would be refused
  indexops_gate:
    change_id: orders-customer-created
    digest: "{{ indexops_change.digest }}"
    environment: staging
    operation: read
    fail_on_refusal: false
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
go:
  description: Whether the change may run now.
  returned: always
  type: bool
reasons:
  description: The refusals that stand, one line each; empty when RV(go) is true.
  returned: always
  type: list
  elements: str
  sample:
    - "refused: production requires a successful rehearsal of change orders-customer-created digest d2eb664bb81b…
      from staging within 7d; none found in reports/orders-customer-created/
      (run playbooks/rehearse.yml -i inventories/staging -e change=orders-customer-created)"
overridden:
  description: Refusals that O(override_reason) passed, each naming the operator and the reason.
  returned: always
  type: list
  elements: str
override:
  description: True when O(override_reason) was used to pass at least one refusal.
  returned: always
  type: bool
override_reason:
  description: The break-glass reason when it was used, else null.
  returned: always
  type: str
rehearsal:
  description: The newest rehearsal report that counts, whether or not one is required; null when there is none.
  returned: always
  type: dict
  contains:
    source:
      description: V(reports) or V(ledger), as O(rehearsal_source).
      type: str
    path:
      description: Path of the report's JSON file; null for a rehearsal found in the ledger.
      type: str
    where:
      description: The report's path, or the ledger's table, database and server.
      type: str
    job_ids:
      description: The ledger jobs that make up the rehearsal (source V(ledger) only).
      type: list
      elements: int
    environment:
      description: Environment the rehearsal ran on.
      type: str
    finished_at:
      description: When the rehearsal finished (ISO-8601).
      type: str
    age_s:
      description: Seconds between RV(rehearsal.finished_at) and now.
      type: float
    duration_s:
      description: Measured build time of the rehearsal in seconds, from its C(measurements).
      type: float
    table_bytes:
      description: Size of the rehearsal's table, to scale RV(rehearsal.duration_s) to another environment.
      type: int
    size_bytes:
      description: Size of the index the rehearsal built (source V(ledger) only).
      type: int
    table_rows_estimate:
      description: Estimated rows of the rehearsal's table (source V(ledger) only).
      type: int
    databases:
      description:
        - Over how many databases the rehearsal was measured (source V(reports) only); over more than one (a server's
          databases in waves), RV(rehearsal.duration_s) and RV(rehearsal.table_bytes) are the slowest database's.
      type: int
    digest:
      description: The change digest the rehearsal ran with.
      type: str
    operator:
      description: Who ran the rehearsal.
      type: str
rehearsal_source:
  description: Where the evidence was looked for, as O(rehearsal_source).
  returned: always
  type: str
window:
  description: The maintenance window's state now.
  returned: always
  type: dict
  contains:
    open:
      description: Whether DDL may run now (true when there is no window).
      type: bool
    opens_at:
      description: When a closed window opens next, ISO-8601 in the window's time zone; null when open.
      type: str
      sample: "2025-03-03T22:00:00+01:00"
    closes_at:
      description: When an open window closes, ISO-8601 in the window's time zone; null when closed or unbounded.
      type: str
    remaining_s:
      description:
        - Seconds until an open window closes; null when closed or unbounded.
        - Preflight compares its duration estimate with it (O(window_remaining_s) of pg_index_preflight).
      type: float
    timezone:
      description: The window's time zone; null when there is no window.
      type: str
now:
  description: The time the decision was made for, ISO-8601.
  returned: always
  type: str
changed:
  description: Always false.
  returned: always
  type: bool
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.indexops.core.plugins.module_utils.connection import HAS_PSYCOPG2, connection_argument_spec
from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError
from ansible_collections.indexops.core.plugins.module_utils.gate import build_policy, decide
from ansible_collections.indexops.core.plugins.module_utils.rehearsals import where_text

if HAS_PSYCOPG2:
    import psycopg2

APPLICATION_NAME = "indexops-gate/{change_id}"

# The ledger is read with the same connection options as every module takes.
LEDGER_OPTIONS = connection_argument_spec()

WINDOW_OPTIONS = {
    "days": {"type": "list", "elements": "str"},
    "start": {"type": "str", "required": True},
    "end": {"type": "str", "required": True},
    "timezone": {"type": "str", "required": True},
}


def argument_spec():
    return {
        "change_id": {"type": "str", "required": True},
        "digest": {"type": "str", "required": True},
        "environment": {"type": "str", "required": True},
        "operation": {"type": "str", "choices": ["ddl", "read"], "default": "ddl"},
        "enabled": {"type": "bool", "default": True},
        "given_on_command_line": {"type": "list", "elements": "str", "default": []},
        "maintenance_window": {"type": "dict", "options": WINDOW_OPTIONS},
        "require_rehearsal": {"type": "bool", "default": False},
        "rehearsal_environments": {"type": "list", "elements": "str", "default": ["staging"]},
        "rehearsal_max_age": {"type": "str", "default": "7d"},
        "reports_dir": {"type": "path", "default": "reports"},
        "rehearsal_source": {"type": "str", "choices": ["reports", "ledger"], "default": "reports"},
        "rehearsal_ledger": {"type": "dict", "options": LEDGER_OPTIONS},
        "override_reason": {"type": "str"},
        "operator": {"type": "str"},
        "now": {"type": "str"},
        "fail_on_refusal": {"type": "bool", "default": True},
    }


def refusal_message(result):
    """One message for a failed task: the single reason, or every reason numbered."""
    reasons = result["reasons"]
    if len(reasons) == 1:
        return reasons[0]
    return " ".join(f"({number}) {reason}" for number, reason in enumerate(reasons, start=1))


def read_ledger(module):
    """The change's rows from the rehearsal ledger ({jobs, error}), or None when none is to be read."""
    params = module.params
    if params["rehearsal_source"] != "ledger" or not params["rehearsal_ledger"]:
        return None
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    from ansible_collections.indexops.core.plugins.module_utils.rehearsal_ledger import (
        read_jobs,  # only this source needs a database
    )

    try:
        jobs = read_jobs(params["rehearsal_ledger"], params["change_id"],
                         APPLICATION_NAME.format(change_id=params["change_id"]))
    except IndexOpsError as exc:
        return {"jobs": None, "error": exc.msg}
    except psycopg2.Error as exc:  # a server error while reading: named, never a traceback
        return {"jobs": None, "error": f"PostgreSQL said: {' '.join(str(exc).split())}"}
    return {"jobs": jobs, "error": None}


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    ledger = module.params["rehearsal_ledger"]
    params = {**module.params, "ledger_where": where_text(ledger) if ledger else None}
    try:
        policy = build_policy(params)
        # Only a required rehearsal is worth a connection to another environment's server.
        evidence = read_ledger(module) if policy.require_rehearsal else None
        result = decide(policy, evidence)
    except IndexOpsError as exc:
        module.fail_json(msg=exc.msg, retry_safe=exc.retry_safe, **exc.details)
    except Exception as exc:  # an unexpected failure still gets one clear line and the traceback
        module.fail_json(msg=f"indexops_gate failed unexpectedly: {exc}", exception=traceback.format_exc())
    if not result["go"] and module.params["fail_on_refusal"]:
        module.fail_json(msg=refusal_message(result), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
