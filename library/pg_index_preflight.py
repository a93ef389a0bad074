#!/usr/bin/python
# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_index_preflight
short_description: Read-only go/no-go for one index change on one PostgreSQL database
description:
  - Checks whether a change file (C(changes/<id>.yml)) can be applied to the target database now,
    and lists every reason it cannot. It never changes the target and always returns C(changed=false).
  - "Checks, in order, for V(create) and V(replace): C(change_valid) (the change file matches the
    schema and PostgreSQL accepts the index definition), C(server_version) (14.4 or newer),
    C(table_exists), C(columns_exist), C(privileges), C(index_name) (the name is free, already holds
    this definition, or can be replaced), C(equivalent_index) (no valid index with the same
    definition under another name on that table), C(long_transactions) and C(estimated_duration)."
  - For V(drop) and V(rebuild), C(index_exists) takes the place of C(table_exists), C(columns_exist),
    C(index_name) and C(equivalent_index). Dropping an index that is already gone is a go (applying
    changes nothing); rebuilding one that does not exist is not.
  - A change whose index has a C(constraint) gets one more check, C(constraint), last. It says the
    C(ALTER TABLE ... ADD CONSTRAINT ... USING INDEX) applying will run, which primary key columns allow
    NULL (and that they are proven NOT NULL by a validated NOT VALID check, without a scan under ACCESS
    EXCLUSIVE), and whether duplicates are known to be absent; it fails on a partitioned table. For a
    V(drop) with C(drop_constraint), C(index_exists) fails while foreign keys reference the constraint
    and names them.
  - "C(privileges): the role owns the table, is a member of the owning role, or is a superuser
    (on PostgreSQL 17+ the MAINTAIN privilege is enough for V(rebuild)); it has USAGE on the schema,
    TEMPORARY on the database (for the definition check), CREATE on the change's tablespace if one is
    named, and can write the ledger (C(indexops.jobs)) or create it."
  - C(long_transactions) lists client sessions of the database whose transaction is older than
    O(long_transaction_threshold) (pid, age, state, query). A concurrent build or drop waits for them
    to end; that wait blocks no reads or writes, so they are a statement of what the build will wait
    for, not a no-go, unless O(build_wait_timeout) is set and the oldest is already older than it.
  - C(estimated_duration) scales the rehearsal's duration by the ratio of this table's size to the
    rehearsed table's size and compares it with O(window_remaining_s).
  - The kill switch, the maintenance window and the rehearsal requirement are the gate's
    (C(indexops_gate)); this module only compares the estimate with the time left.
version_added: "0.1.0"
author: indexops contributors
options:
  change:
    description:
      - The change document as loaded from its YAML file (the keys C(id), C(owner), C(reason),
        C(database), C(action), C(index), C(expected), C(rollback)).
      - When it names a C(database), that database is checked instead of O(db) (and, with O(databases) or
        O(discover), instead of every database they select).
    type: dict
    required: true
  long_transaction_threshold:
    description: Transactions open longer than this (PostgreSQL duration text, e.g. V(5min)) are listed.
    type: str
    default: 5min
  build_wait_timeout:
    description:
      - The limit pg_index will have on waits for other transactions (its O(build_wait_timeout)).
        A listed transaction already older than this is a no-go. Unset means no limit.
    type: str
  rehearsal:
    description:
      - The newest matching rehearsal as the gate returns it; only V(duration_s) (seconds) and
        V(table_bytes) (size of the rehearsed table) are used. Null means no estimate.
    type: dict
  rehearsal_environments:
    description:
      - The environments whose rehearsals count (the inventory's C(indexops_rehearsal_environments)); only
        named in the V(estimated_duration) check's detail when there is no O(rehearsal), so that the operator
        knows a rehearsal elsewhere (e.g. on the sandbox) gives no estimate.
    type: list
    elements: str
    default: []
  window_remaining_s:
    description: Seconds left in the maintenance window; null when there is no window.
    type: float
  fail_on_nogo:
    description: Fail the task when the answer is no-go, with every reason in the message.
    type: bool
    default: false
extends_documentation_fragment:
  - indexops.core.connection
  - indexops.core.fleet
attributes:
  check_mode:
    support: full
    details: The module is read-only; check mode runs the same checks.
  diff_mode:
    support: none
notes:
  - Read-only. The session runs with C(default_transaction_read_only=on). The one exception is the
    definition check, which, like C(pg_index) in check mode, creates an empty temporary table
    (C(LIKE) the target) and the index on it inside a transaction that is always rolled back; it
    takes ACCESS SHARE on the table and needs the TEMPORARY privilege on the database.
  - Every statement runs with C(lock_timeout=2s) and C(statement_timeout=60s), so the checks never
    queue behind DDL.
  - Without pg_read_all_stats (part of pg_monitor) a role sees only its own sessions, so
    C(long_transactions) may miss other roles' transactions; the check's detail says so.
  - Sessions are tagged C(application_name=indexops/<change id>).
requirements:
  - psycopg2 (or psycopg2-binary)
  - pglast
  - jsonschema
seealso:
  - module: pg_index
  - module: pg_index_status
  - name: CREATE INDEX CONCURRENTLY
    description: Why old transactions stall a concurrent build.
    link: https://www.postgresql.org/docs/current/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY
  - name: pg_stat_activity
    description: Where the long transactions are read from.
    link: https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-ACTIVITY-VIEW
  - name: Privilege functions
    description: has_table_privilege, pg_has_role and friends, used for the privilege check.
    link: https://www.postgresql.org/docs/current/functions-info.html#FUNCTIONS-INFO-ACCESS-TABLE
"""

EXAMPLES = r"""
- name: Check change orders-customer-created against the target
  pg_index_preflight:
    login_host: db1.internal
    login_user: indexops
    db: shop
    change: "{{ lookup('ansible.builtin.file', 'changes/orders-customer-created.yml') | from_yaml }}"
  register: preflight

- name: Show why it is a no-go
  ansible.builtin.debug:
    var: preflight.reasons
  when: not preflight.go

- name: Check the change in every tenant database of the server, 4 at a time
  pg_index_preflight:
    db: postgres
    discover: {include: ["tenant_*"]}
    change: "{{ change }}"
  register: fleet

- name: Refuse a build that will not fit in the maintenance window
  pg_index_preflight:
    db: shop
    change: "{{ change }}"
    long_transaction_threshold: 2min
    rehearsal: "{{ gate.rehearsal }}"
    window_remaining_s: 1800
    fail_on_nogo: true
"""

RETURN = r"""
changed:
  description: Always false; the module changes nothing.
  returned: always
  type: bool
go:
  description:
    - True when no check failed. With O(databases) or O(discover), when every database selected was checked and
      no check failed in any of them.
  returned: always
  type: bool
reasons:
  description:
    - "One line per failed check: the check's name, a colon, what was found and what to do."
    - "With O(databases) or O(discover), each prefixed C(database <name>:), plus one line per database that could
      not be checked (C(database <name>: not checked: <why>))."
  returned: always
  type: list
  elements: str
database_results:
  description:
    - With O(databases) or O(discover) only, one entry per database, in the order of O(databases), then the
      discovered ones by name. Each has C(database), C(failed) and, when it was checked, every key the
      one-database result has (C(go), C(reasons), C(checks), C(table), ...); one that could not be checked has
      C(failed=true), C(msg) and C(retry_safe) instead, and the others are checked all the same.
    - The top-level RV(checks), RV(long_transactions) and RV(equivalent_indexes) are then empty, RV(table) and
      RV(estimate_s) null; RV(digest), RV(role) and RV(server_version) are those of the first database checked.
  returned: with O(databases) or O(discover)
  type: list
  elements: dict
databases_read:
  description: With O(databases) or O(discover), how many databases were checked.
  returned: with O(databases) or O(discover)
  type: int
databases_failed:
  description: With O(databases) or O(discover), the databases that could not be checked, in order.
  returned: with O(databases) or O(discover)
  type: list
  elements: str
  sample: ["equivalent_index: table public.orders already has an equivalent valid index: orders_cust_idx (...)"]
checks:
  description:
    - Every check in order. C(ok) is true or false, or null when the check could not run because an
      earlier one failed (C(detail) then says which).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Check name.
      type: str
      sample: long_transactions
    ok:
      description: Passed, failed, or null when not checked.
      type: bool
    detail:
      description: One line saying what was found.
      type: str
      sample: no transaction in database shop is older than 5min
estimate_s:
  description: Estimated duration in seconds from the rehearsal, scaled by table size; null without a rehearsal.
  returned: always
  type: float
  sample: 41.7
server_version:
  description: C(server_version_num) of the server.
  returned: always
  type: int
  sample: 150020
partitions:
  description:
    - On a partitioned table, its leaf partitions (every level), each of which gets its own concurrent
      build; the estimated duration scales with their total size.
  returned: when the change's table is partitioned
  type: list
  elements: dict
  contains:
    partition:
      description: The partition, as C(schema.table).
      type: str
    bytes:
      description: Size of the partition's main fork.
      type: int
    estimate_s:
      description: The partition's share of RV(estimate_s), by size; null without an estimate.
      type: float
table:
  description: The table the change works on; null when it does not exist.
  returned: always
  type: dict
  contains:
    schema:
      description: Schema of the table.
      type: str
    name:
      description: Table name.
      type: str
    bytes:
      description: Size of the table's main fork (what rehearsal reports record as table_bytes).
      type: int
    rows_estimate:
      description: The planner's row estimate (C(pg_class.reltuples)).
      type: int
long_transactions:
  description: Sessions of the database whose transaction is older than O(long_transaction_threshold).
  returned: always
  type: list
  elements: dict
  contains:
    pid:
      description: Backend pid.
      type: int
    age_s:
      description: Seconds since the transaction started.
      type: float
    state:
      description: C(pg_stat_activity.state), e.g. V(idle in transaction).
      type: str
    query:
      description: The session's current or last statement, first 200 characters on one line.
      type: str
    usename:
      description: Role of the session.
      type: str
    application_name:
      description: application_name of the session.
      type: str
equivalent_indexes:
  description: Names of valid indexes on the table with the change's definition under another name.
  returned: always
  type: list
  elements: str
change_id:
  description: The change's id as given.
  returned: always
  type: str
action:
  description: The change's action as given.
  returned: always
  type: str
digest:
  description: sha256 of the normalised change (as the gate and the reports use it); null when the change is invalid.
  returned: always
  type: str
database:
  description: The database that was checked.
  returned: always
  type: str
role:
  description: The role the checks ran as.
  returned: always
  type: str
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.indexops.core.plugins.module_utils import fleet
from ansible_collections.indexops.core.plugins.module_utils.connection import (
    HAS_PSYCOPG2,
    connect,
    connection_argument_spec,
)
from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError
from ansible_collections.indexops.core.plugins.module_utils.fragments import HAS_PGLAST

if HAS_PSYCOPG2 and HAS_PGLAST:
    from ansible_collections.indexops.core.plugins.module_utils.preflight import (
        Preflight,
        application_name,
        connection_params,
        run_fleet,
    )


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        change={"type": "dict", "required": True},
        long_transaction_threshold={"type": "str", "default": "5min"},
        build_wait_timeout={"type": "str"},
        rehearsal={"type": "dict"},
        rehearsal_environments={"type": "list", "elements": "str", "default": []},
        window_remaining_s={"type": "float"},
        fail_on_nogo={"type": "bool", "default": False},
    )
    spec.update(fleet.argument_spec())
    return spec


def run(params):
    change = params["change"]
    fleet.check_options(params)
    if fleet.wanted(params):
        return run_fleet(params, lambda database: connect({**params, "db": database}, application_name(change)))
    target = connection_params(params, change)
    preflight = Preflight(lambda: connect(target, application_name(change)), change,
                          threshold=params["long_transaction_threshold"], rehearsal=params["rehearsal"],
                          window_remaining_s=params["window_remaining_s"],
                          build_wait_timeout=params["build_wait_timeout"], ledger_owner=params["ledger_owner"],
                          rehearsal_environments=params["rehearsal_environments"])
    return preflight.run()


def nogo_message(result):
    if "database_results" in result:
        return (f"preflight of change {result['change_id']} on {len(result['database_results'])} database(s): "
                "no-go. " + " | ".join(result["reasons"]) + ". Nothing was changed.")
    return (f"preflight of change {result['change_id']} on database {result['database']}: no-go. "
            + " | ".join(result["reasons"]) + ". Nothing was changed.")


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    if not HAS_PGLAST:
        module.fail_json(msg=missing_required_lib("pglast"))
    try:
        result = run(module.params)
    except IndexOpsError as exc:
        module.fail_json(msg=exc.msg, retry_safe=exc.retry_safe, changed=False, **exc.details)
    except Exception as exc:  # an unexpected failure still gets one clear line and the traceback
        module.fail_json(msg=f"pg_index_preflight failed unexpectedly: {exc}. Nothing was changed.",
                         exception=traceback.format_exc(), changed=False)
    if module.params["fail_on_nogo"] and not result["go"]:
        module.fail_json(msg=nogo_message(result), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
