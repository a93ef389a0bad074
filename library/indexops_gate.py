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
  - "Rehearsal: with O(require_rehearsal=true) the change must have a successful rehearsal report
    (C(kind: rehearse), C(success: true)) with the same O(digest), from one of
    O(rehearsal_environments), finished within O(rehearsal_max_age). Reports are read from
    C(<reports_dir>/<change_id>/*.json); the newest match wins."
  - A break-glass O(override_reason) passes the window and the rehearsal requirement; the result
    lists what it passed in RV(overridden) and sets RV(override), so the reason and the operator
    can be recorded in the ledger and the report.
  - O(operation=read) (preflight, status, cleanup listings) skips the kill switch and the window.
  - Runs on the control node and never connects to a database; use it with C(delegate_to=localhost)
    and C(run_once=true).
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
    description: Directory holding C(<change_id>/<env>-<timestamp>.json) reports, on the control node.
    type: path
    default: reports
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
    details: The module only reads report files; check mode returns the same result.
  diff_mode:
    support: none
notes:
  - The module never reports C(changed).
  - Unreadable report files are counted in the refusal, never used.
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
    path:
      description: Path of the report's JSON file.
      type: str
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
    digest:
      description: The change digest the rehearsal ran with.
      type: str
    operator:
      description: Who ran the rehearsal.
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

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.indexops.errors import IndexOpsError
from ansible.module_utils.indexops.gate import build_policy, decide

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
        "maintenance_window": {"type": "dict", "options": WINDOW_OPTIONS},
        "require_rehearsal": {"type": "bool", "default": False},
        "rehearsal_environments": {"type": "list", "elements": "str", "default": ["staging"]},
        "rehearsal_max_age": {"type": "str", "default": "7d"},
        "reports_dir": {"type": "path", "default": "reports"},
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


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        result = decide(build_policy(module.params))
    except IndexOpsError as exc:
        module.fail_json(msg=exc.msg, retry_safe=exc.retry_safe, **exc.details)
    except Exception as exc:  # an unexpected failure still gets one clear line and the traceback
        module.fail_json(msg=f"indexops_gate failed unexpectedly: {exc}", exception=traceback.format_exc())
    if not result["go"] and module.params["fail_on_refusal"]:
        module.fail_json(msg=refusal_message(result), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
