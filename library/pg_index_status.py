#!/usr/bin/python
# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_index_status
short_description: Read-only state of PostgreSQL indexes and the leftovers of failed builds
description:
  - Lists the leftovers in the database, that is every index that is not valid, and says whether a
    session is building it. A failed or cancelled C(CREATE INDEX CONCURRENTLY) leaves kind
    V(invalid); a failed C(REINDEX CONCURRENTLY) leaves C(<name>_ccnew) (kind V(ccnew)) or
    C(<name>_ccold) (kind V(ccold)). A build that is still running is listed too, with
    RV(leftovers[].being_built=true) and its pid, phase and percent.
  - Reports, for each index named in O(indexes), whether it exists, is valid and ready, its
    definition, its size and whether a session is building it.
  - Never changes anything and always returns C(changed=false). A role with pg_monitor is enough.
version_added: "0.1.0"
author: indexops contributors
options:
  leftovers:
    description: List the database's leftovers in RV(leftovers).
    type: bool
    default: true
  indexes:
    description: Indexes to report on in RV(indexes), in this order.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Index name, optionally schema-qualified (V(sales.orders_customer_idx)).
        type: str
        required: true
      schema:
        description: Schema of the index when O(indexes[].name) is not qualified. Unset means V(public).
        type: str
  login_host:
    description: Host of the server; unset uses C(PGHOST) or the local socket.
    type: str
    aliases: [host]
  login_port:
    description: Port of the server; unset uses C(PGPORT) or 5432.
    type: int
    aliases: [port]
  login_user:
    description: Role to connect as; unset uses C(PGUSER) or the OS user.
    type: str
    aliases: [user]
  login_password:
    description: Password; prefer C(.pgpass) or ansible-vault. Never logged or returned.
    type: str
  login_unix_socket:
    description: Directory of the server's Unix socket.
    type: str
  db:
    description: Database to connect to; unset uses C(PGDATABASE).
    type: str
    aliases: [database]
  ssl_mode:
    description: libpq C(sslmode).
    type: str
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  connect_timeout:
    description: Seconds to wait for the connection.
    type: int
    default: 10
attributes:
  check_mode:
    support: full
    details: The module is read-only; check mode returns the same status.
  diff_mode:
    support: none
notes:
  - Read-only. The session runs with C(default_transaction_read_only=on), C(lock_timeout=5s) and
    C(statement_timeout=60s); it reads C(pg_class), C(pg_index), C(pg_stat_activity) and
    C(pg_stat_progress_create_index) and calls C(pg_get_indexdef) and C(pg_relation_size).
  - Whether a leftover is being built is decided conservatively, because the cleanup playbook only
    drops leftovers nobody builds. A C(_ccnew)/C(_ccold) index counts as being built while any
    C(REINDEX CONCURRENTLY) runs on its table (the progress view names the original index). A role
    without pg_read_all_stats cannot see other roles' builds; it then counts every invalid index as
    being built while any build it cannot see runs in the database (RV(progress_visible=false)).
  - Sessions are tagged C(application_name=indexops/status).
requirements:
  - psycopg2 (or psycopg2-binary)
  - pglast
seealso:
  - module: pg_index
  - module: pg_index_preflight
  - name: Progress reporting
    description: pg_stat_progress_create_index, the phases of a build and what its counters mean.
    link: https://www.postgresql.org/docs/current/progress-reporting.html#CREATE-INDEX-PROGRESS-REPORTING
  - name: REINDEX CONCURRENTLY
    description: Where C(_ccnew) and C(_ccold) leftovers come from.
    link: https://www.postgresql.org/docs/current/sql-reindex.html#SQL-REINDEX-CONCURRENTLY
"""

EXAMPLES = r"""
- name: List leftovers of failed builds and the state of one index
  pg_index_status:
    db: shop
    indexes:
      - name: orders_customer_created_idx
  register: status

- name: Stop when a leftover nobody is building is found
  ansible.builtin.assert:
    that: status.leftovers | rejectattr('being_built') | list | length == 0
    fail_msg: >-
      Leftovers to clean up:
      {{ status.leftovers | rejectattr('being_built') | map(attribute='name') | join(', ') }}

- name: Check a few indexes as a pg_monitor role, without listing leftovers
  pg_index_status:
    db: shop
    login_user: monitoring
    leftovers: false
    indexes:
      - name: sales.orders_customer_idx
      - {name: orders_email_idx, schema: public}
"""

RETURN = r"""
changed:
  description: Always false; the module changes nothing.
  returned: always
  type: bool
leftovers:
  description: Every index of the database that is not valid, by schema and name; empty when O(leftovers=false).
  returned: always
  type: list
  elements: dict
  contains:
    schema:
      description: Schema of the index (and of its table).
      type: str
    name:
      description: Index name.
      type: str
      sample: orders_customer_idx_ccnew
    table:
      description: Table the index is on.
      type: str
    kind:
      description: V(ccnew) or V(ccold) for the leftovers of REINDEX CONCURRENTLY, V(invalid) for any other.
      type: str
      choices: [invalid, ccnew, ccold]
    valid:
      description: C(pg_index.indisvalid); false for every leftover.
      type: bool
    ready:
      description: C(pg_index.indisready).
      type: bool
    being_built:
      description: Whether a session is (or may be, see the notes) building it; never drop one that is.
      type: bool
    build:
      description: The build, when RV(leftovers[].being_built) is true; null otherwise.
      type: dict
      contains:
        pid:
          description: pid of the building session.
          type: int
        command:
          description: C(CREATE INDEX CONCURRENTLY), C(REINDEX CONCURRENTLY), ...; null when hidden.
          type: str
        phase:
          description: Phase from pg_stat_progress_create_index; null when hidden from this role.
          type: str
          sample: waiting for writers before build
        percent:
          description: Overall percent done across phases (0-100); null when hidden.
          type: float
        elapsed_s:
          description: Seconds since the building statement started.
          type: float
        application_name:
          description: application_name of the building session.
          type: str
        waiting_for_pid:
          description: pid of the session the build is waiting for, if any.
          type: int
        details_visible:
          description: False when this role lacks pg_read_all_stats and sees only that a build runs.
          type: bool
    size_bytes:
      description: Size of the index.
      type: int
    definition:
      description: C(pg_get_indexdef) of the index.
      type: str
      sample: CREATE UNIQUE INDEX orders_email_idx ON public.orders USING btree (email)
indexes:
  description: One entry per O(indexes) item, in the same order.
  returned: always
  type: list
  elements: dict
  contains:
    schema:
      description: Schema looked in.
      type: str
    name:
      description: Index name.
      type: str
    exists:
      description: Whether an index of that name exists in that schema.
      type: bool
    valid:
      description: C(pg_index.indisvalid); false when it does not exist.
      type: bool
    ready:
      description: C(pg_index.indisready); false when it does not exist.
      type: bool
    definition:
      description: C(pg_get_indexdef); empty when it does not exist.
      type: str
    size_bytes:
      description: Size of the index; 0 when it does not exist.
      type: int
    building:
      description: Whether a session is building (or rebuilding) it.
      type: bool
    build:
      description: The build, as in RV(leftovers[].build); null when none.
      type: dict
    table:
      description: Table the index is on; null when it does not exist.
      type: str
progress_visible:
  description: Whether this role sees other roles' builds (superuser or member of pg_read_all_stats).
  returned: always
  type: bool
database:
  description: The database that was read.
  returned: always
  type: str
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible.module_utils.indexops.connection import HAS_PSYCOPG2, connect, connection_argument_spec
from ansible.module_utils.indexops.errors import IndexOpsError
from ansible.module_utils.indexops.fragments import HAS_PGLAST

if HAS_PSYCOPG2 and HAS_PGLAST:
    from ansible.module_utils.indexops.status import Status

APPLICATION_NAME = "indexops/status"


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        leftovers={"type": "bool", "default": True},
        indexes={"type": "list", "elements": "dict", "default": [],
                 "options": {"name": {"type": "str", "required": True}, "schema": {"type": "str"}}},
    )
    return spec


def run(params):
    status = Status(lambda: connect(params, APPLICATION_NAME))
    return status.run(leftovers=params["leftovers"], indexes=params["indexes"])


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
        module.fail_json(msg=f"pg_index_status failed unexpectedly: {exc}. Nothing was changed.",
                         exception=traceback.format_exc(), changed=False)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
