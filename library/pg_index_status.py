#!/usr/bin/python
# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_index_status
short_description: Read-only state of PostgreSQL indexes, index changes, builds in progress and leftovers
description:
  - Reports, for each index named in O(indexes) and each change in O(changes), whether the index is
    absent, being built, valid or invalid, its definition, size and scans, and the build working on it
    (pid, command, phase, overall percent, counters, elapsed time, ETA and, while it waits, the sessions
    it waits on).
  - For each change, compares the catalog with the ledger (C(indexops.jobs)) and says whether the change
    is pending, building, done, mismatched, invalid, failed, lost or rolled back.
  - Lists every C(CREATE INDEX) / C(REINDEX) in progress in the database in RV(builds), whoever started
    it (indexops or any other tool), and the leftovers of failed builds in RV(leftovers) - every index
    that is not valid, with whether a session is building it. A failed or cancelled
    C(CREATE INDEX CONCURRENTLY) leaves type V(invalid); a failed C(REINDEX CONCURRENTLY) leaves
    C(<name>_ccnew) (type V(ccnew)) or C(<name>_ccold) (type V(ccold)).
  - Lists the ledger's lost jobs in RV(lost_jobs) (the ledger says running, but the session that ran
    the job is gone), and with O(change_id) the whole ledger history of one change and the definition a
    rollback restores.
  - Never changes anything and always returns C(changed=false). A role with pg_monitor (for the ledger
    also USAGE on schema indexops and SELECT on indexops.jobs) is enough.
version_added: "0.1.0"
author: indexops contributors
options:
  leftovers:
    description: List the database's leftovers in RV(leftovers).
    type: bool
    default: true
  builds:
    description: List every C(CREATE INDEX) and C(REINDEX) in progress in the database in RV(builds).
    type: bool
    default: true
  ledger:
    description:
      - Read the ledger C(indexops.jobs) for RV(changes[].job) and RV(lost_jobs) when it exists. A missing
        ledger means no jobs (not an error); a ledger this role may not read gives a warning and the
        catalog state only.
      - O(change_id) reads the ledger whatever this option says.
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
  changes:
    description: Index changes (as in C(changes/<id>.yml)) to report on in RV(changes), in this order.
    type: list
    elements: dict
    default: []
    suboptions:
      id:
        description: Id of the change; its ledger jobs are found by it.
        type: str
        required: true
      index:
        description: The index the change is about.
        type: dict
        required: true
        suboptions:
          name:
            description: Index name, optionally schema-qualified.
            type: str
            required: true
          schema:
            description: Schema of the index when O(changes[].index.name) is not qualified. Unset means V(public).
            type: str
          table:
            description: Table of the index (may be schema-qualified); reported back, used when the index is absent.
            type: str
      action:
        description:
          - What the change does; decides which index state counts as done (absent for V(drop), valid otherwise).
        type: str
        choices: [create, drop, replace, rebuild]
        default: create
      environment:
        description: Only ledger jobs of this environment count. Unset means jobs of every environment.
        type: str
      database:
        description:
          - With O(databases) or O(discover), the database the change file names; the change is read in that
            database only (which is read even when not selected otherwise). Unset means in every database read.
        type: str
  change_id:
    description:
      - Return RV(ledger) for this change - every job, oldest first, and the definition a rollback restores.
        This is what the rollback playbook reads instead of report files.
    type: str
  environment:
    description: With O(change_id), only jobs of this environment. Unset means every environment.
    type: str
extends_documentation_fragment:
  - indexops.core.connection
  - indexops.core.fleet
attributes:
  check_mode:
    support: full
    details: The module is read-only; check mode returns the same status.
  diff_mode:
    support: none
notes:
  - Read-only. The session runs with C(default_transaction_read_only=on), C(lock_timeout=2s) and
    C(statement_timeout=60s); it reads C(pg_class), C(pg_index), C(pg_locks), C(pg_stat_activity),
    C(pg_stat_all_indexes), C(pg_stat_progress_create_index) and C(indexops.jobs), and calls
    C(pg_blocking_pids), C(pg_get_indexdef) and C(pg_relation_size).
  - Locks. C(pg_get_indexdef) and C(pg_relation_size) take ACCESS SHARE on the index or its table, so they
    would queue behind DDL holding ACCESS EXCLUSIVE (a plain C(DROP INDEX), C(ALTER TABLE)). Such a read
    gives up after the 2s lock timeout and is repeated without them - definition null, size estimated
    from C(pg_class.relpages) - with a warning naming the DDL's pid. Every other read takes no lock.
  - Percent. The view's counters restart at each phase, so each phase gets a band of one 0-100 scale and
    its own counters move the percent through its band. C(CREATE INDEX CONCURRENTLY) and
    C(REINDEX CONCURRENTLY) - initializing 0-1, waiting for writers before build 1-3, building index
    (scanning table) 3-50, sorting live tuples 50-60, loading tuples in tree 60-75, waiting for writers
    before validation 75-77, validation scanning index 77-83, sorting tuples 83-85, scanning table 85-97,
    waiting for old snapshots 97-98, waiting for readers before marking dead 98-99, before dropping
    99-100. Plain C(CREATE INDEX) / C(REINDEX) - initializing 0-1, scanning 1-60, sorting 60-75,
    loading 75-100. On a partitioned table the percent is (partitions done + the current partition's
    percent) / partitions total. It never goes down while one build runs, with one exception from the
    server itself - at the very start of a table scan it briefly reports C(blocks_done = blocks_total).
  - ETA. The module polls once, so the only rate it knows is the rate so far, RV(builds[].elapsed_s) per
    percent - eta = elapsed * (100 - percent) / percent. It is given only while the build does measurable
    work (a phase counted in blocks or tuples) and once 1% is done; while the build waits for other
    sessions there is no rate and RV(builds[].eta_s) is null. Waits before the current phase make it
    pessimistic; polling again refines it.
  - Lost jobs. A job is lost when the ledger says running but no session with its C(backend_pid) exists
    any more (or that pid now belongs to a later session). A job whose session is alive between two
    statements (lock retry backoff, verification) is not lost.
  - Whether a leftover is being built is decided conservatively, because the cleanup playbook only
    drops leftovers nobody builds. A C(_ccnew)/C(_ccold) index counts as being built while any
    C(REINDEX CONCURRENTLY) runs on its table (the progress view names the original index). A role
    without pg_read_all_stats cannot see other roles' builds; it then counts every invalid index as
    being built while any build it cannot see runs in the database (RV(progress_visible=false)).
  - Warnings (an unreadable ledger, a read that timed out on a lock) are returned the Ansible way, with
    the result's C(warnings) list, which is absent when there are none.
  - Sessions are tagged C(application_name=indexops/status).
requirements:
  - psycopg2 (or psycopg2-binary)
seealso:
  - module: pg_index
  - module: pg_index_preflight
  - name: Progress reporting
    description: pg_stat_progress_create_index, the phases of a build and what its counters mean.
    link: https://www.postgresql.org/docs/current/progress-reporting.html#CREATE-INDEX-PROGRESS-REPORTING
  - name: REINDEX CONCURRENTLY
    description: Where C(_ccnew) and C(_ccold) leftovers come from.
    link: https://www.postgresql.org/docs/current/sql-reindex.html#SQL-REINDEX-CONCURRENTLY
  - name: pg_blocking_pids
    description: Which sessions block a waiting build.
    link: https://www.postgresql.org/docs/current/functions-info.html#FUNCTIONS-INFO-SESSION
"""

EXAMPLES = r"""
- name: Report on one change in this environment and every build in progress
  pg_index_status:
    db: shop
    changes:
      - id: orders-customer-created
        action: create
        index: {name: orders_customer_created_idx, table: public.orders}
        environment: production
  register: status

- name: Show how far the build is and what it waits on
  ansible.builtin.debug:
    msg: >-
      {{ item.index.name }}: {{ item.state }}
      {% if item.build %}{{ item.build.phase }} {{ item.build.percent }}%
      eta {{ item.build.eta_s | indexops.core.humanize('duration') }}
      {% for w in item.build.waiting_on %} waits on pid {{ w.pid }} ({{ w.state }},
      {{ w.xact_age_s | indexops.core.humanize('duration') }}): {{ w.query }}{% endfor %}
      {% endif %}
  loop: "{{ status.changes }}"

- name: Stop when a leftover nobody is building is found
  ansible.builtin.assert:
    that: status.leftovers | rejectattr('being_built') | list | length == 0
    fail_msg: >-
      Leftovers to clean up:
      {{ status.leftovers | rejectattr('being_built') | map(attribute='name') | join(', ') }}

- name: Find the definition a rollback must restore, from the ledger
  pg_index_status:
    db: shop
    change_id: orders-drop-status-note
    environment: staging
    leftovers: false
    builds: false
  register: recorded

- name: Read every tenant database of the server in one run, 8 connections at a time
  pg_index_status:
    db: postgres
    discover:
      include: ["tenant_*"]
      exclude: ["tenant_test_*"]
    max_connections: 8
    changes:
      - id: orders-customer-created
        index: {name: orders_customer_created_idx, table: public.orders}
  register: fleet

- name: Say which databases could not be read, and why
  ansible.builtin.debug:
    msg: "{{ item.database }}: {{ item.msg }}"
  loop: "{{ fleet.database_results | selectattr('failed') }}"

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
database:
  description:
    - The database that was read. With O(databases) or O(discover), O(db) as given (null when unset).
  returned: always
  type: str
server_version:
  description:
    - C(server_version) of the server. With O(databases) or O(discover), of the first database read (null when
      none could be read).
  returned: always
  type: str
  sample: "16.4"
progress_visible:
  description:
    - Whether this role sees other roles' builds (superuser or member of pg_read_all_stats). With O(databases)
      or O(discover), whether it does in every database read.
  returned: always
  type: bool
database_results:
  description:
    - With O(databases) or O(discover) only, one entry per database read, in the order of O(databases), then the
      discovered ones by name, then those O(changes[].database) adds.
    - Each entry has C(database), C(failed) and, when it was read, every key the one-database result has
      (RV(builds), RV(leftovers), RV(indexes), RV(changes), RV(lost_jobs), RV(ledger) with O(change_id), ...).
      A database that could not be read (it does not answer, the role may not connect, a query failed) has
      C(failed=true), C(msg) (what went wrong and what to do) and C(retry_safe) instead; the others are read
      all the same.
    - The top-level RV(builds), RV(leftovers), RV(indexes), RV(changes) and RV(lost_jobs) are then empty.
  returned: with O(databases) or O(discover)
  type: list
  elements: dict
  sample:
    - {database: tenant_001, failed: false, server_version: "18.1", builds: [], leftovers: [], changes: []}
    - {database: tenant_002, failed: true, retry_safe: true,
       msg: "could not connect to PostgreSQL: ... permission denied for database \"tenant_002\" ..."}
databases_read:
  description: With O(databases) or O(discover), how many databases were read.
  returned: with O(databases) or O(discover)
  type: int
databases_failed:
  description: With O(databases) or O(discover), the databases that could not be read, in order.
  returned: with O(databases) or O(discover)
  type: list
  elements: str
builds:
  description:
    - Every C(CREATE INDEX) / C(REINDEX) in progress in the database (but this session), whoever started
      it; empty when O(builds=false). Each entry has the keys below; RV(indexes[].build),
      RV(changes[].build) and RV(leftovers[].build) have the same shape.
  returned: always
  type: list
  elements: dict
  contains:
    pid:
      description: pid of the building session.
      type: int
    command:
      description: V(CREATE INDEX), V(CREATE INDEX CONCURRENTLY), V(REINDEX) or V(REINDEX CONCURRENTLY).
      type: str
    phase:
      description: Phase from pg_stat_progress_create_index; null when hidden from this role.
      type: str
      sample: waiting for writers before build
    percent:
      description: Overall percent done on one 0-100 scale across phases (see the notes); null when hidden.
      type: float
    phase_percent:
      description: Percent of the current phase done, from its own counters; null when the phase has none.
      type: float
    blocks_done:
      description: Blocks processed in the current phase.
      type: int
    blocks_total:
      description: Blocks to process in the current phase.
      type: int
    tuples_done:
      description: Tuples processed in the current phase.
      type: int
    tuples_total:
      description: Tuples to process in the current phase.
      type: int
    partitions_done:
      description: Partitions done (a build on a partitioned table).
      type: int
    partitions_total:
      description: Partitions to build; 0 for a plain table.
      type: int
    lockers_done:
      description: Sessions already waited for in the current waiting phase.
      type: int
    lockers_total:
      description: Sessions to wait for in the current waiting phase.
      type: int
    elapsed_s:
      description: Seconds since the building statement started; null when hidden.
      type: float
    eta_s:
      description: Seconds left at the rate so far (see the notes); null while waiting or before a rate is known.
      type: float
    index_schema:
      description: Schema of the index being built (REINDEX names the original index); null while it is not created yet.
      type: str
    index_name:
      description: Name of the index being built.
      type: str
    table_schema:
      description: Schema of the table.
      type: str
    table:
      description: Table the index is built on.
      type: str
    application_name:
      description: application_name of the building session.
      type: str
    indexops:
      description: Whether indexops runs it (application_name starts with C(indexops/)); false for any other tool.
      type: bool
    waiting:
      description: Whether the build waits for other sessions (a C(waiting for ...) phase or a lock wait).
      type: bool
    waiting_on:
      description:
        - The sessions it waits on, from C(pg_blocking_pids) and the view's C(current_locker_pid); empty
          when not waiting.
      type: list
      elements: dict
      contains:
        pid:
          description: pid of the session (0 for a prepared transaction).
          type: int
        query:
          description: Its current or last query, whitespace collapsed, at most 200 characters.
          type: str
        state:
          description: C(pg_stat_activity.state), e.g. V(idle in transaction).
          type: str
        xact_age_s:
          description: Age of its open transaction in seconds.
          type: float
        lock_mode:
          description: The locks it holds on the build's table, e.g. V(RowExclusiveLock); null for none.
          type: str
        wait_event_type:
          description: What it waits for itself, if anything.
          type: str
        wait_event:
          description: The wait event.
          type: str
        application_name:
          description: Its application_name.
          type: str
    waiting_for_pid:
      description: The first pid of RV(builds[].waiting_on) (C(current_locker_pid) first); null when not waiting.
      type: int
    details_visible:
      description: False when this role lacks pg_read_all_stats and sees only that a build runs.
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
    leftover_type:
      description: V(ccnew) or V(ccold) for the leftovers of REINDEX CONCURRENTLY, V(invalid) for any other.
      type: str
      choices: [invalid, ccnew, ccold]
    kind:
      description:
        - Deprecated, the same as RV(leftovers[].leftover_type); it will be removed in 1.0.0. C(kind) names the
          kind of a run (V(apply), V(rehearse), V(rollback)) everywhere else.
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
      description: The build, as in RV(builds), when RV(leftovers[].being_built) is true; null otherwise.
      type: dict
    size_bytes:
      description: Size of the index.
      type: int
    definition:
      description: C(pg_get_indexdef) of the index; null when a lock held by DDL kept it from being read.
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
    table:
      description: Table the index is on; null when it does not exist.
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
    state:
      description: V(absent), V(building) (a session builds or rebuilds it), V(valid) or V(invalid).
      type: str
      choices: [absent, building, valid, invalid]
    definition:
      description: C(pg_get_indexdef); empty when it does not exist, null when DDL's lock kept it from being read.
      type: str
    size_bytes:
      description: Size of the index; 0 when it does not exist.
      type: int
    scans:
      description: C(pg_stat_all_indexes.idx_scan); null when it does not exist or has no statistics.
      type: int
    building:
      description: Whether a session is building (or rebuilding) it.
      type: bool
    build:
      description: The build, as in RV(builds); null when none.
      type: dict
changes:
  description: One entry per O(changes) item, in the same order.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Id of the change.
      type: str
    action:
      description: The change's action.
      type: str
    index:
      description: C(schema), C(name) and C(table) of the index.
      type: dict
    state:
      description:
        - V(building) - a session builds the index (for a replace, its replacement C(<name>_indexops_new),
          reported in RV(changes[].build)), or its latest job runs (also between statements, e.g. waiting for a
          lock or a retry, ANALYZE, verification).
        - V(lost) - the latest job is running in the ledger but its session is gone, and the index is not what
          the job set out to make.
        - V(rolled_back) - the latest job is a successful rollback (or was marked rolled back).
        - V(done) - drop - the index is absent; otherwise the index is valid and, when the ledger holds the
          definition_after of the latest successful apply, equal to it (a rebuild needs a successful job).
          Also a lost job whose build the server finished (create, drop, or a replace whose index has left
          its old definition); RV(changes[].job.lost) stays true.
        - V(mismatch) - the index is valid but its definition differs from the ledger's definition_after.
        - V(failed) - the latest job failed, even when it left a valid index (an unmet expectation).
        - V(invalid) - the index is invalid and nobody builds it.
        - V(pending) - nothing done yet.
      type: str
      choices: [pending, building, done, mismatch, invalid, failed, lost, rolled_back]
    index_state:
      description: The index, as an RV(indexes) entry.
      type: dict
    build:
      description: The build working on the index, as in RV(builds); null when none.
      type: dict
    job:
      description:
        - The latest ledger job of the change (in O(changes[].environment) when given), as in RV(lost_jobs).
        - Null when there is none or the ledger is not read.
      type: dict
    made_by:
      description:
        - The ledger job that made the index what it is, as RV(changes[].job) - the latest job, unless that one
          succeeded finding nothing to do (a rerun), then the latest job that did something. The status table's
          start and duration are this job's.
      type: dict
    line:
      description:
        - The change as one progress line (without the host), as the indexops_wait action plugin prints it.
      type: str
      sample: "public.orders_customer_idx building 41.0% building index: scanning table, pid 4242, running 12s, ETA 17s"
    row:
      description:
        - The change's cells in the status table of playbooks/status.yml, without host, environment and
          database. C(change), C(index), C(state), C(progress), C(started) (UTC), C(duration), C(owner),
          C(last_error), C(job_id), C(job_lost), and C(states), every state the change is in, its own first
          (V(lost) when its job lost its session, V(invalid) when an invalid index is left that nobody builds).
      type: dict
lost_jobs:
  description: Jobs the ledger says are running whose session is gone (see the notes); empty without the ledger.
  returned: always
  type: list
  elements: dict
  contains:
    job_id:
      description: Ledger job id.
      type: int
    change_id:
      description: Id of the change.
      type: str
    kind:
      description: V(apply), V(rehearse) or V(rollback).
      type: str
    action:
      description: What the job did (V(created), V(dropped), ...); null while it runs.
      type: str
    environment:
      description: Environment the job ran in.
      type: str
    state:
      description: V(queued), V(running), V(succeeded), V(failed) or V(rolled_back).
      type: str
    lost:
      description: Whether the job is running in the ledger but its session is gone.
      type: bool
    started_at:
      description: Start, ISO 8601 in UTC.
      type: str
      sample: "2026-01-31T22:04:05.123456Z"
    finished_at:
      description: End, ISO 8601 in UTC; null while it runs.
      type: str
    duration_s:
      description: Duration in seconds; null while it runs.
      type: float
    attempts:
      description: Attempts made.
      type: int
    owner:
      description: Owner of the change.
      type: str
    operator:
      description: Who ran it.
      type: str
    last_error:
      description: Error of the last attempt.
      type: str
    backend_pid:
      description: pid of the session that ran the job.
      type: int
    application_name:
      description: application_name of that session.
      type: str
    index_schema:
      description: Schema of the index.
      type: str
    index_name:
      description: Index name.
      type: str
    table_name:
      description: Table name.
      type: str
    definition_before:
      description: Definition before the job.
      type: str
    definition_after:
      description: Definition after the job.
      type: str
ledger:
  description: The ledger history of O(change_id).
  returned: when O(change_id) is given
  type: dict
  contains:
    exists:
      description: Whether the ledger table indexops.jobs exists.
      type: bool
    readable:
      description: Whether this role may read it (false also when it does not exist or is not trusted).
      type: bool
    trusted:
      description:
        - False when schema C(indexops) belongs to another role than the login role and O(ledger_owner), or the
          table carries code indexops did not create (see O(ledger_owner)); such a ledger is never read.
      type: bool
    jobs:
      description: Every job of the change (in O(environment) when given), oldest first, as in RV(lost_jobs).
      type: list
      elements: dict
    definition_before:
      description:
        - The definition a rollback restores - from the newest apply or rehearse job that dropped or replaced
          the index (in O(environment) when given); null when none was recorded.
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

if HAS_PSYCOPG2:
    from ansible_collections.indexops.core.plugins.module_utils.status_read import Status, read_fleet

APPLICATION_NAME = "indexops/status"


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        leftovers={"type": "bool", "default": True},
        builds={"type": "bool", "default": True},
        ledger={"type": "bool", "default": True},
        indexes={"type": "list", "elements": "dict", "default": [],
                 "options": {"name": {"type": "str", "required": True}, "schema": {"type": "str"}}},
        changes={"type": "list", "elements": "dict", "default": [], "options": {
            "id": {"type": "str", "required": True},
            "index": {"type": "dict", "required": True, "options": {
                "name": {"type": "str", "required": True}, "schema": {"type": "str"}, "table": {"type": "str"}}},
            "action": {"type": "str", "default": "create", "choices": ["create", "drop", "replace", "rebuild"]},
            "environment": {"type": "str"},
            "database": {"type": "str"},
        }},
        change_id={"type": "str"},
        environment={"type": "str"},
    )
    spec.update(fleet.argument_spec())
    return spec


def run(params):
    fleet.check_options(params)
    if fleet.wanted(params):
        return read_fleet(params, lambda database: connect({**params, "db": database}, APPLICATION_NAME))
    status = Status(lambda: connect(params, APPLICATION_NAME), ledger_owner=params["ledger_owner"])
    return status.run(leftovers=params["leftovers"], indexes=params["indexes"], changes=params["changes"],
                      builds=params["builds"], ledger_jobs=params["ledger"], change_id=params["change_id"],
                      environment=params["environment"])


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_by={"environment": "change_id"})
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    try:
        result = run(module.params)
    except IndexOpsError as exc:
        module.fail_json(msg=exc.msg, retry_safe=exc.retry_safe, changed=False, **exc.details)
    except Exception as exc:  # an unexpected failure still gets one clear line and the traceback
        module.fail_json(msg=f"pg_index_status failed unexpectedly: {exc}. Nothing was changed.",
                         exception=traceback.format_exc(), changed=False)
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
