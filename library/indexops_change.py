#!/usr/bin/python
# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: indexops_change
short_description: Read and validate one indexops change file
description:
  - Reads C(changes/<id>.yml), validates it against the change-file JSON Schema
    (C(schemas/change.schema.json)) and the pg_index spec rules, and returns what the playbooks need
    to carry it out, to undo it and to tie it to its rehearsal.
  - The RV(digest) is computed from the normalised C(action), C(database) and C(index), so comments,
    key order, quoting and the spelling of expressions do not change it; editing the index does.
  - Runs on the control node and never connects to a database; use it with C(delegate_to=localhost)
    and C(run_once=true).
  - A bad change file fails with the file, the field and what was expected; a YAML syntax error
    names the file and the line.
version_added: "0.1.0"
author: indexops contributors
options:
  path:
    description:
      - Path of the change file on the control node, e.g. V(changes/orders-customer-created.yml).
      - The file name without C(.yml) must equal the change's C(id).
      - A relative path is taken from the working directory of the module, which is not always the
        playbook's; playbooks pass C({{ playbook_dir }}/../changes/<id>.yml).
    type: path
    required: true
  definition_before:
    description:
      - The C(CREATE INDEX) statement a C(drop) or C(replace) change took away (recorded in the ledger or a
        report before the change). With it, RV(inverse_args) recreates that definition; without it,
        RV(inverse_args) is null for those actions. Ignored for C(create) and C(rebuild).
    type: str
attributes:
  check_mode:
    support: full
    details: The module only reads the file; check mode returns the same result.
  diff_mode:
    support: none
notes:
  - The module never reports C(changed).
requirements:
  - jsonschema
  - pglast
seealso:
  - module: pg_index
    description: The module RV(apply_args) and RV(inverse_args) are options of.
  - module: indexops_gate
    description: Decides whether the change may run on an environment, using RV(digest).
"""

EXAMPLES = r"""
- name: Read the change file
  indexops_change:
    path: "{{ playbook_dir }}/../changes/{{ change }}.yml"
  delegate_to: localhost
  run_once: true
  register: indexops_change

- name: Say what will run and how it is undone
  ansible.builtin.debug:
    msg:
      - "{{ indexops_change.id }} ({{ indexops_change.digest[:12] }}): {{ indexops_change.action }}
        {{ indexops_change.index.name }}"
      - "rollback: {{ indexops_change.rollback_note }}"
"""

RETURN = r"""
id:
  description: The change's id, equal to the file name without C(.yml).
  returned: success
  type: str
  sample: orders-customer-created
digest:
  description: SHA-256 (hex) of the normalised action, database and index; a rehearsal counts only for the same digest.
  returned: success
  type: str
  sample: d2eb664bb81b1820e12da274ab4394b964af6988c1b364201536e3f6c9762378
action:
  description: What the change does.
  returned: success
  type: str
  choices: [create, drop, rebuild, replace]
  sample: create
database:
  description: The database named in the change file, or null to use the inventory's.
  returned: success
  type: str
  sample: null
owner:
  description: Team or person who owns the index.
  returned: success
  type: str
  sample: team-checkout
reason:
  description: Ticket or link explaining the change.
  returned: success
  type: str
  sample: "OPS-1042: the 'my orders' page scans all of a customer's orders"
rollback_note:
  description: The change file's C(rollback.note), for the person who rolls it back.
  returned: success
  type: str
expected:
  description: The change file's C(expected) block (valid, max_duration, max_size, plan_uses_index).
  returned: success
  type: dict
  sample: {valid: true, max_duration: 10min, max_size: 500MB}
index:
  description: The C(index) block exactly as written in the file.
  returned: success
  type: dict
  sample:
    name: orders_customer_created_idx
    table: public.orders
    columns: [customer_id, {name: created_at, order: desc}]
apply_args:
  description:
    - Options for M(pg_index) that carry out the change, including C(state), C(on_mismatch) and C(expected).
    - The connection options and C(db) are not included.
  returned: success
  type: dict
  sample:
    name: orders_customer_created_idx
    table: public.orders
    columns: [customer_id, {name: created_at, order: desc}]
    state: present
    on_mismatch: fail
    expected: {valid: true, max_duration: 10min, max_size: 500MB}
inverse_args:
  description:
    - Options for M(pg_index) that undo the change. For C(create) it drops the index concurrently.
    - For C(drop) and C(replace) it recreates O(definition_before) concurrently (C(on_mismatch=replace));
      null when O(definition_before) is not given.
    - Null for C(rebuild), which has no inverse.
  returned: success
  type: dict
  sample: {name: orders_customer_created_idx, table: public.orders, state: absent}
changed:
  description: Always false; the module only reads the file.
  returned: always
  type: bool
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError
from ansible_collections.indexops.core.plugins.module_utils.fragments import HAS_PGLAST

try:
    import jsonschema  # noqa: F401 - only its presence is checked here; changefile uses it

    HAS_JSONSCHEMA = True
except ImportError:
    HAS_JSONSCHEMA = False

if HAS_PGLAST:
    from ansible_collections.indexops.core.plugins.module_utils import changefile


def read_change(path, definition_before=None):
    """Load, validate and describe one change file; raises IndexOpsError naming the file and field.

    definition_before: what a drop or replace took away, for inverse_args (changefile.inverse_args).
    """
    document = changefile.load_change_file(path)
    normalised = changefile.validate_change(document, path, changefile.change_file_id(path))
    return {
        "id": document["id"],
        "digest": changefile.digest(normalised),
        "action": document["action"],
        "database": document.get("database"),
        "owner": document["owner"],
        "reason": document["reason"],
        "rollback_note": document["rollback"]["note"],
        "expected": document["expected"],
        "index": document["index"],
        "apply_args": {**changefile.pg_index_args(document), "expected": document["expected"]},
        "inverse_args": changefile.inverse_args(document, definition_before),
        "changed": False,
    }


def main():
    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "required": True}, "definition_before": {"type": "str"}},
        supports_check_mode=True,
    )
    if not HAS_PGLAST:
        module.fail_json(msg=missing_required_lib("pglast"))
    if not HAS_JSONSCHEMA:
        module.fail_json(msg=missing_required_lib("jsonschema"))
    try:
        result = read_change(module.params["path"], module.params["definition_before"])
    except IndexOpsError as exc:
        module.fail_json(msg=exc.msg, retry_safe=exc.retry_safe, **exc.details)
    except Exception as exc:  # an unexpected failure still gets one clear line and the traceback
        module.fail_json(msg=f"indexops_change failed unexpectedly: {exc}", exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
