#!/usr/bin/python
# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_index
short_description: Make one PostgreSQL index match its spec without blocking writes
description:
  - Creates, drops or rebuilds one index on a live PostgreSQL 14.4+ server.
  - Builds use C(CREATE INDEX CONCURRENTLY), drops C(DROP INDEX CONCURRENTLY) and rebuilds
    C(REINDEX INDEX CONCURRENTLY) by default, so application writes keep flowing.
  - Reports C(changed=false) only when an index of that name exists on that table, is valid and
    ready, and means the same as the spec. The comparison is done by the server itself; the spec is
    built on an empty temporary copy of the table's columns in a transaction that is rolled back,
    and its C(pg_get_indexdef) is compared with the existing one.
  - A build that fails for any reason (lock timeout, statement timeout, cancel, unique violation,
    deadlock, lost connection) drops the invalid index it left before the module reports.
  - An invalid index that another session is still building is never dropped.
  - Every wait for a lock on a table or an index is cut at O(lock_timeout), so that no read or write
    queues behind this module for longer. Lock timeouts and deadlocks are retried with exponential
    backoff and jitter up to O(lock_retries) attempts.
  - A concurrent statement's waits for other transactions to finish (writers, old snapshots, readers)
    block nobody and are not cut at O(lock_timeout); O(build_wait_timeout) bounds them when set.
  - Only one indexops job runs per table at a time (a session advisory lock keyed on the table).
version_added: "0.1.0"
author: indexops contributors
options:
  state:
    description:
      - V(present) builds the index if it is missing or invalid and checks its definition.
      - V(absent) drops it.
      - V(rebuilt) rebuilds it with C(REINDEX INDEX CONCURRENTLY), first removing C(_ccnew)/C(_ccold)
        leftovers of an earlier failed reindex that no session is building.
    type: str
    choices: [present, absent, rebuilt]
    default: present
  name:
    description:
      - Index name, at most 63 bytes. No quotes, semicolons, backslashes or comment markers.
      - Required unless O(definition) names the index.
    type: str
  table:
    description:
      - Table the index is on, optionally schema-qualified (V(sales.orders)).
      - Required for O(state=present). For V(absent) and V(rebuilt) it is checked when given.
    type: str
  schema:
    description: Schema of the table and the index, when O(table) is not qualified. Unset means V(public).
    type: str
  columns:
    description:
      - Key columns, in order. Each item is a column name, or a mapping with O(columns[].name) or
        O(columns[].expression) plus optional per-column settings.
    type: list
    elements: raw
    suboptions:
      name:
        description: A column of the table.
        type: str
      expression:
        description:
          - One SQL expression over the table's columns, e.g. V(lower(email)). Parsed with the
            PostgreSQL parser (pglast); sub-queries, several statements and qualified columns are
            refused, and the SQL that runs is printed from the parse tree.
          - Functions, operators and types resolve in C(pg_catalog) only (see the notes); a function of
            your own is written schema-qualified, e.g. C(app.normalize_email) rather than C(normalize_email).
        type: str
      opclass:
        description:
          - Operator class, e.g. V(text_pattern_ops). One outside C(pg_catalog) (an extension's) is
            schema-qualified, e.g. V(public.gin_trgm_ops).
        type: str
      collation:
        description: Collation, e.g. V(C).
        type: str
      order:
        description: Sort order (btree only).
        type: str
        choices: [asc, desc]
      nulls:
        description: Where NULLs sort (btree only).
        type: str
        choices: [first, last]
  include:
    description: Non-key columns stored in the index (C(INCLUDE)); btree, gist and spgist only.
    type: list
    elements: str
    default: []
  where:
    description: Predicate of a partial index, one SQL expression parsed like O(columns[].expression).
    type: str
  method:
    description: Access method.
    type: str
    choices: [btree, hash, gist, spgist, gin, brin]
    default: btree
  unique:
    description: Build a UNIQUE index (btree only).
    type: bool
    default: false
  nulls_not_distinct:
    description: Treat NULLs as equal in a unique index (PostgreSQL 15+; needs O(unique)).
    type: bool
    default: false
  storage:
    description: "Storage parameters (C(WITH)), e.g. C({fillfactor: 90})."
    type: dict
    default: {}
  tablespace:
    description: Tablespace for the index; when unset the database default is expected.
    type: str
  concurrently:
    description:
      - Use the CONCURRENTLY form of every statement. V(false) takes locks that block writes (or
        all access) for the whole statement; use it only where that is acceptable.
    type: bool
    default: true
  lock_timeout:
    description:
      - How long any statement may wait for a lock on the table or an index (the wait others can
        queue behind), as PostgreSQL duration text. A longer wait ends the attempt, which is retried.
      - For the CONCURRENTLY statements the server's C(lock_timeout) is off and a second session of
        this module cancels the statement when one of its relation-lock waits reaches this limit, so
        that the statement's waits for other transactions are not cut (see O(build_wait_timeout)).
    type: str
    default: 1s
  build_wait_timeout:
    description:
      - How long a run's concurrent statements may wait, in total, for other transactions to finish,
        as PostgreSQL duration text. A concurrent build waits for the transactions that write the
        table when it starts and for every snapshot older than itself before it validates; a
        concurrent drop waits for the transactions that use the table. The statement already holds
        SHARE UPDATE EXCLUSIVE then, so no read or write waits behind it.
      - Unset means no limit (a long transaction delays the build, and RV(txn_wait_s) says by how much).
        When the limit is reached, the statement is cancelled, its invalid leftover dropped, and the
        error names the oldest transactions it waited for.
    type: str
  lock_retries:
    description: Attempts per statement when it fails on a lock timeout (55P03) or deadlock (40P01).
    type: int
    default: 5
  lock_retry_delay:
    description: First backoff delay in seconds; it doubles per attempt, with jitter.
    type: float
    default: 0.5
  lock_retry_max_delay:
    description: Largest backoff delay in seconds.
    type: float
    default: 30
  statement_timeout:
    description: C(statement_timeout) for the statements; unset means no limit (a build may take hours).
    type: str
  on_invalid:
    description:
      - What to do when an invalid index of that name exists and no session is building it.
      - V(rebuild) drops it concurrently and builds it again (RV(action=repaired_invalid)).
      - V(fail) stops and says how to repair it.
    type: str
    choices: [rebuild, fail]
    default: rebuild
  on_mismatch:
    description:
      - What to do when a valid index of that name has a different definition.
      - V(fail) stops and shows both definitions.
      - V(replace) builds the new definition concurrently under a temporary name, drops the old
        index concurrently and renames the new one, each step under O(lock_timeout).
    type: str
    choices: [fail, replace]
    default: fail
  wait:
    description: When another session is building this index, wait for it (up to O(wait_timeout)) instead of failing.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait for another session's build when O(wait=true).
    type: float
    default: 600
  job_lock_timeout:
    description: Seconds to wait for another indexops job on the same table before failing with its pid.
    type: float
    default: 30
  maintenance_work_mem:
    description: C(maintenance_work_mem) for the build session, e.g. V(1GB).
    type: str
  max_parallel_maintenance_workers:
    description: C(max_parallel_maintenance_workers) for the build session.
    type: int
  analyze:
    description: Run C(ANALYZE) on the table after building (useful for expression indexes).
    type: bool
    default: false
  constraint:
    description:
      - Make the index back a V(unique) or V(primary_key) constraint. The index is built as a UNIQUE
        index exactly as without it (concurrently, with the same retries, cleanup and waits), then
        C(ALTER TABLE ... ADD CONSTRAINT <name> UNIQUE | PRIMARY KEY USING INDEX <name>) runs under
        O(lock_timeout) with retries. A valid unique index that exists without the constraint gets
        the constraint added (RV(action=constraint_added)), never rebuilt.
      - The constraint has the index's name (O(name)). PostgreSQL keeps a UNIQUE or PRIMARY KEY
        constraint and its index under one name (C(USING INDEX) renames the index to the constraint,
        and renaming either renames the other), so there is no separate constraint name.
      - Implies O(unique). The index must be a btree on plain columns in default order, without
        O(where), because C(ADD CONSTRAINT ... USING INDEX) takes no other.
      - V(primary_key) on columns that allow NULL never scans the table under ACCESS EXCLUSIVE. Per
        column it adds C(CHECK (col IS NOT NULL) NOT VALID) named C(<col>_indexops_nn), validates it
        (a scan under SHARE UPDATE EXCLUSIVE, so reads and writes go on), runs C(SET NOT NULL) (which
        skips its scan because the valid check proves it) and drops the check. A run stopped after
        any step is finished by the next one; NULLs in a column fail the validation and change
        nothing else. Rollback leaves the columns NOT NULL.
      - Refused on a partitioned table (PostgreSQL does not support C(ADD CONSTRAINT ... USING INDEX)
        there), and when the index already backs another kind of constraint (RV(msg) shows both).
    type: str
    choices: [unique, primary_key]
  deferrable:
    description: The constraint is C(DEFERRABLE). Compared like the kind; it cannot be changed in place.
    type: bool
    default: false
  initially_deferred:
    description: The constraint is C(DEFERRABLE INITIALLY DEFERRED); needs O(deferrable).
    type: bool
    default: false
  drop_constraint:
    description:
      - With O(state=absent), an index that backs a UNIQUE or PRIMARY KEY constraint is dropped by
        C(ALTER TABLE ... DROP CONSTRAINT IF EXISTS) (which drops its index) under O(lock_timeout)
        with retries. It takes ACCESS EXCLUSIVE on the table briefly; no data is scanned.
      - Refused while foreign keys reference the constraint; the error names each (constraint and
        table). EXCLUDE constraints are never dropped.
      - Without it, such an index is refused as before, and the refusal says to set it.
      - The ledger keeps the index's definition followed by the C(ALTER TABLE ... ADD CONSTRAINT ...
        USING INDEX) statement, so that a rollback recreates both.
    type: bool
    default: false
  definition:
    description:
      - A whole C(CREATE INDEX) statement as C(pg_get_indexdef) prints it, instead of O(columns),
        O(include), O(where), O(method), O(unique), O(nulls_not_distinct), O(storage) and
        O(tablespace). Used to recreate a dropped index exactly from the ledger.
      - It may be followed by C(; ALTER TABLE <its table> ADD CONSTRAINT <its name> UNIQUE | PRIMARY KEY
        USING INDEX <its name> [DEFERRABLE [INITIALLY DEFERRED]]), as the ledger records an index that
        backs a constraint; that sets O(constraint), O(deferrable) and O(initially_deferred). No other
        second statement is accepted.
      - It is parsed with pglast and turned into those options, so it passes the same validation;
        the statement that runs is composed anew (and CONCURRENTLY).
    type: str
  expected:
    description:
      - Promises of a change file, checked after the operation; the run fails when one is not met
        (the index is left as it is). Keys are V(valid) (bool), V(max_duration) (e.g. V(10min)),
        V(max_size) (e.g. V(500MB)) and V(plan_uses_index) (a SELECT whose C(EXPLAIN), never
        executed, must use the index).
    type: dict
  ledger:
    description:
      - Record the job in the target's ledger (table C(indexops.jobs), created on first use) as
        running before any DDL and as succeeded or failed afterwards.
      - Keys are V(change_id), V(spec_digest), V(kind) (apply, rehearse or rollback),
        V(environment), V(owner), V(rollback_note), V(operator), V(override_reason).
    type: dict
  databases:
    description:
      - Make the same change in each of these databases of the server, in one run (O(db) is then not used). Each
        database gets its own connection, its own ledger job and its own entry in RV(database_results); one that
        fails (it does not answer, a lock timeout, a unique violation, a refusal) is its own entry, with its error
        and the cleanup of its own leftover, and does not stop the others.
      - Bad options are refused once, before any database is connected to.
      - Unset means the one database O(db), as before.
    type: list
    elements: str
  max_connections:
    description:
      - With O(databases), how many databases are worked on at the same time. Each takes a session, plus one more
        while it waits for other transactions; a concurrent build also uses the server's maintenance workers, so
        keep it small on a busy server. At least 1.
    type: int
    default: 4
extends_documentation_fragment:
  - indexops.core.connection
attributes:
  check_mode:
    support: full
    details: Connects and inspects, runs no DDL on the target, and returns in RV(sql) the exact statements it would run.
  diff_mode:
    support: full
    details: Returns the index definition before and after.
notes:
  - Locks taken. C(CREATE INDEX CONCURRENTLY), C(DROP INDEX CONCURRENTLY) and C(REINDEX CONCURRENTLY)
    take SHARE UPDATE EXCLUSIVE on the table, which does not block reads or writes. Their
    non-concurrent forms take SHARE (blocks writes for the whole build) or ACCESS EXCLUSIVE
    (blocks everything). C(ALTER INDEX RENAME) takes SHARE UPDATE EXCLUSIVE.
  - Locks taken for a constraint (O(constraint), O(drop_constraint)), each statement under
    O(lock_timeout) with retries. C(ADD CONSTRAINT ... USING INDEX), C(ADD CONSTRAINT ... CHECK ...
    NOT VALID), C(ALTER COLUMN ... SET NOT NULL) (after a valid check, without a scan) and C(DROP CONSTRAINT)
    take ACCESS EXCLUSIVE on the table for a catalog change only. C(VALIDATE CONSTRAINT) scans the
    table under SHARE UPDATE EXCLUSIVE, which blocks no reads or writes.
  - Two waits, bounded apart. A wait for a relation lock (the table's or an index's), which other
    sessions queue behind, is cut at O(lock_timeout) and retried. A concurrent statement's wait for
    other transactions to finish (a C(virtualxid) or C(transactionid) lock in C(pg_locks)) is reported
    live by M(pg_index_status) with the pids it waits on and bounded only by O(build_wait_timeout);
    a transaction merely older than O(lock_timeout) never fails the build.
  - The CONCURRENTLY statements run with the session's C(lock_timeout) set to 0 while a second
    session (C(application_name=indexops-watch/<name>)) reads the statement's ungranted lock from
    C(pg_locks) every 0.2 s and sends a cancel request, with the statement's own cancel key, when a
    limit is reached. A run therefore uses two connections. The second one stays open, idle, for the
    whole job and the ledger names it as the job's client, so that a pg_index process that dies is
    seen at once (M(pg_index_status) calls its job lost) even while its build goes on in the server.
  - The definition check creates an empty temporary table (C(LIKE) the target) and an index on it
    inside a transaction that is always rolled back. It needs the TEMPORARY privilege on the
    database (granted to PUBLIC by default) and takes ACCESS SHARE on the table.
  - Sessions are tagged C(application_name=indexops/<name>).
  - Name resolution. Every session pins C(search_path) to C(pg_catalog, pg_temp), so nothing in a schema
    another role can write to (C(public), the table's schema, C(indexops)) can shadow what the module
    runs or reads. Your index spec is resolved the same way, as PostgreSQL 17+ does for maintenance
    commands and as C(pg_get_indexdef) prints definitions - C(lower) in an expression is always
    C(pg_catalog.lower), and functions, operators (written with C(OPERATOR) and a schema), operator
    classes, collations and types outside C(pg_catalog) must be schema-qualified; an unqualified one
    is reported as not existing and nothing is changed. The C(plan_uses_index) query of O(expected), the
    application's query pasted as is, has its unqualified table names qualified with the index's schema
    (not the names of its own C(WITH) queries) and is planned under the same pinned C(search_path), so its
    functions and operators resolve in C(pg_catalog) unless the query names their schema.
  - The ledger is used only when it is ours (see O(ledger_owner)); it is created without
    C(IF NOT EXISTS), which would adopt a schema or table another role created first.
  - PostgreSQL 14.0-14.3 are refused for concurrent operations (indexes built concurrently could be
    corrupted; fixed in 14.4). Servers older than 14 are refused.
  - Partitioned tables. PostgreSQL cannot build an index CONCURRENTLY on a partitioned table, so with
    O(concurrently=true) (the default) the module runs C(CREATE INDEX <name> ON ONLY <table>) (an invalid
    index, catalog only; it takes SHARE on the parent table for milliseconds), then for each leaf partition
    C(CREATE INDEX CONCURRENTLY) of the same definition with the same lock_timeout, retries, waits and
    cleanup as a plain table, then C(ALTER INDEX <name> ATTACH PARTITION <partition index>) under
    lock_timeout with retries (it locks the two indexes and, for the last one, validates the parent).
    A sub-partitioned partition gets its own C(ON ONLY) index and is attached level by level. When the last
    partition is attached PostgreSQL marks the index valid, and only then is the run successful.
  - A partition's index is named C(<name>_<partition table>); when that is longer than 63 bytes, it is cut
    and ends in C(_) and 8 hex digits of the md5 of the full name, so two long names never become one. A
    partition that already has a valid index of the same definition, attached to nothing, is attached
    instead of built (it then keeps its own name). An INVALID index another session left on a partition is
    left alone and listed in RV(partitions). After a failure the partitioned index stays INVALID with the
    partitions finished so far attached (it has no storage of its own); a rerun attaches what is built,
    builds only what is missing and never builds a partition twice.
  - A UNIQUE index on a partitioned table must include the partition key of every level (PostgreSQL checks
    uniqueness only within one partition); the module refuses it before any DDL otherwise. Every partition
    must be owned by the login role or a role it is a member of, and none may be a foreign table.
  - O(state=absent) on a partitioned index runs a plain C(DROP INDEX) (PostgreSQL has no concurrent form
    for it) under lock_timeout with retries. It takes ACCESS EXCLUSIVE on the table and every partition
    but scans nothing, so it holds them for milliseconds once it has them. It drops every partition's
    index attached to it, a reused one too. O(state=rebuilt) runs C(REINDEX INDEX CONCURRENTLY) on each
    partition's index, one at a time. O(on_mismatch=replace) is refused for a partitioned index; create
    the wanted index under another name, then drop the old one.
  - A partition created or attached later gets its index from PostgreSQL itself (C(CREATE TABLE ...
    PARTITION OF) builds it, non-concurrently, on the new and usually empty table).
  - With O(concurrently=false) a partitioned table is indexed by one plain C(CREATE INDEX) on the parent,
    which blocks writes to every partition for the whole build.
  - O(constraint) is refused on a partitioned table (PostgreSQL has no C(ADD CONSTRAINT ... USING INDEX) there).
requirements:
  - psycopg2 (or psycopg2-binary)
  - pglast
seealso:
  - name: CREATE INDEX
    description: Building indexes concurrently, and what an invalid index is.
    link: https://www.postgresql.org/docs/current/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY
  - name: REINDEX
    description: Rebuilding concurrently and its C(_ccnew)/C(_ccold) leftovers.
    link: https://www.postgresql.org/docs/current/sql-reindex.html#SQL-REINDEX-CONCURRENTLY
  - name: Explicit locking
    description: Which lock each statement takes and what it conflicts with.
    link: https://www.postgresql.org/docs/current/explicit-locking.html
  - name: Progress reporting
    description: pg_stat_progress_create_index, which this module reads to see other builds.
    link: https://www.postgresql.org/docs/current/progress-reporting.html#CREATE-INDEX-PROGRESS-REPORTING
"""

EXAMPLES = r"""
- name: Build an index on orders.customer_id without blocking writes
  pg_index:
    db: shop
    name: orders_customer_id_idx
    table: public.orders
    columns: [customer_id]

- name: Build a partial expression index with INCLUDE, giving up quickly on locks
  pg_index:
    db: shop
    name: orders_open_email_idx
    table: orders
    columns:
      - expression: lower(email)
        opclass: text_pattern_ops
    include: [total_cents]
    where: status = 'open'
    lock_timeout: 500ms
    lock_retries: 10

- name: Replace an index whose definition changed, concurrently
  pg_index:
    db: shop
    name: orders_created_idx
    table: orders
    columns:
      - name: created_at
        order: desc
    on_mismatch: replace

- name: Rebuild a bloated index
  pg_index:
    db: shop
    name: orders_customer_id_idx
    state: rebuilt

- name: Make orders.order_ref a UNIQUE constraint, its index built concurrently first
  pg_index:
    db: shop
    name: orders_order_ref_key
    table: orders
    columns: [order_ref]
    constraint: unique

- name: Add a primary key on a column that allows NULL, without a scan under ACCESS EXCLUSIVE
  pg_index:
    db: shop
    name: events_pkey
    table: events
    columns: [id]
    constraint: primary_key

- name: Drop a UNIQUE constraint and its index (refused while foreign keys reference it)
  pg_index:
    db: shop
    name: orders_order_ref_key
    state: absent
    drop_constraint: true

- name: Drop an index without queueing behind long queries
  pg_index:
    db: shop
    name: orders_customer_id_idx
    state: absent
"""

RETURN = r"""
changed:
  description: Whether any DDL ran (or would run, in check mode).
  returned: always
  type: bool
action:
  description: What was done.
  returned: always
  type: str
  sample: created
  choices: [created, dropped, rebuilt, repaired_invalid, replaced, constraint_added, none]
sql:
  description:
    - The DDL statements in order; in check mode, the statements that would run.
    - When the run fails after it started its DDL, the statements it started (a retried one once),
      with the cleanup of its own leftover; RV(attempts), RV(lock_wait_s), RV(txn_wait_s) and
      RV(duration_s) are returned then too.
  returned: always
  type: list
  elements: str
  sample: ['CREATE INDEX CONCURRENTLY "orders_customer_id_idx" ON "public"."orders" USING "btree" ("customer_id")']
definition:
  description: C(pg_get_indexdef) of the index afterwards (in check mode, as it is now); empty if there is none.
  returned: always
  type: str
  sample: CREATE INDEX orders_customer_id_idx ON public.orders USING btree (customer_id)
valid:
  description: Whether the index exists and is valid afterwards.
  returned: always
  type: bool
size_bytes:
  description: Size of the index afterwards.
  returned: always
  type: int
duration_s:
  description: Wall time of the whole run in seconds.
  returned: always
  type: float
attempts:
  description: Statement attempts made, counting retries after lock timeouts and deadlocks.
  returned: always
  type: int
lock_wait_s:
  description: Seconds lost to relation-lock waits, failed attempts plus the backoff between them.
  returned: always
  type: float
txn_wait_s:
  description:
    - Seconds the concurrent statements waited for other transactions to finish (writers, old
      snapshots, readers), summed over the run. It blocks nobody, but adds to RV(duration_s).
  returned: always
  type: float
definition_before:
  description:
    - C(pg_get_indexdef) before the run; empty when there was no index.
    - For an index that backs a UNIQUE or PRIMARY KEY constraint, followed by C(; ALTER TABLE ... ADD
      CONSTRAINT ... USING INDEX ...), which O(definition) takes back.
  returned: always
  type: str
constraint:
  description: The constraint the index backs afterwards (in check mode, now); null when none.
  returned: always
  type: dict
  contains:
    name:
      description: The constraint's name (the index's).
      type: str
    type:
      description: C(PRIMARY KEY), C(UNIQUE) or C(EXCLUDE).
      type: str
    deferrable:
      description: Whether it is deferrable.
      type: bool
    initially_deferred:
      description: Whether it is initially deferred.
      type: bool
    definition:
      description: C(pg_get_constraintdef) of the constraint.
      type: str
      sample: PRIMARY KEY (id)
rolled_back_jobs:
  description:
    - For a successful run with O(ledger.kind=rollback), the ledger job ids of the change's earlier
      successful apply and rehearse runs in the same environment, now marked C(rolled_back).
  returned: always
  type: list
  elements: int
  sample: [41, 42]
expectations:
  description: Each of O(expected) with what was observed and whether it was met.
  returned: always
  type: list
  elements: dict
table_bytes:
  description: Size of the table's main fork, for scaling durations between environments.
  returned: when the table is known
  type: int
table_rows_estimate:
  description: The planner's row estimate for the table (C(pg_class.reltuples)).
  returned: when the table is known
  type: int
diff:
  description: Index definition before and after.
  returned: when diff mode is on
  type: dict
  contains:
    before:
      description: Definition before, empty when there was no index.
      type: str
    after:
      description: Definition after, empty when the index is dropped.
      type: str
partitions:
  description:
    - On a partitioned table, what the run did (or, in check mode, would do) on each partition below it,
      level by level; empty for a plain table and when nothing changed.
  returned: always
  type: list
  elements: dict
  contains:
    partition:
      description: The partition, as C(schema.table).
      type: str
    index:
      description: The partition's index.
      type: str
    action:
      description:
        - C(built concurrently and attached), C(reused (attached)), C(attached (built by an earlier run)),
          C(already attached), C(created ON ONLY, its partitions attached, then attached) (a sub-partitioned
          partition), C(rebuilt concurrently), or one starting with C(left alone) for another session's INVALID index.
      type: str
    leaf:
      description: Whether the partition holds data (a leaf) rather than partitions of its own.
      type: bool
  sample: [{"partition": "public.orders_2026_01", "index": "orders_created_idx_orders_2026_01",
            "action": "built concurrently and attached", "leaf": true}]
schema:
  description: Schema of the index.
  returned: always
  type: str
name:
  description: Name of the index.
  returned: always
  type: str
table:
  description: Table of the index, when it is known.
  returned: always
  type: str
database_results:
  description:
    - With O(databases) only, one entry per database, in the order of O(databases). Each has C(database),
      C(failed) and every key the one-database result has (RV(action), RV(sql), RV(duration_s), ...). A database
      whose change failed has C(failed=true), C(msg) and C(retry_safe), and, after a failed expectation, the
      whole result under C(result).
    - The run fails when any database failed; its C(msg) counts them and gives the first one's error.
  returned: with O(databases)
  type: list
  elements: dict
  sample:
    - {database: tenant_001, failed: false, changed: true, action: created, valid: true}
    - {database: tenant_002, failed: true, retry_safe: true, msg: "lock timeout ... Nothing was changed ..."}
databases_failed:
  description: With O(databases), the databases whose change failed, in order.
  returned: with O(databases)
  type: list
  elements: str
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
    from ansible_collections.indexops.core.plugins.module_utils.index_job import IndexJob
    from ansible_collections.indexops.core.plugins.module_utils.safety import Safety
    from ansible_collections.indexops.core.plugins.module_utils.spec import (
        build_spec,
        build_target,
        duration_seconds,
        params_from_definition,
    )

# Options a whole `definition` replaces.
DEFINITION_OPTIONS = ("columns", "include", "where", "method", "unique", "nulls_not_distinct", "storage", "tablespace",
                      "constraint")


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        state={"type": "str", "choices": ["present", "absent", "rebuilt"], "default": "present"},
        name={"type": "str"},
        table={"type": "str"},
        schema={"type": "str"},
        columns={"type": "list", "elements": "raw"},
        include={"type": "list", "elements": "str", "default": []},
        where={"type": "str"},
        method={"type": "str", "choices": ["btree", "hash", "gist", "spgist", "gin", "brin"], "default": "btree"},
        unique={"type": "bool", "default": False},
        nulls_not_distinct={"type": "bool", "default": False},
        storage={"type": "dict", "default": {}},
        tablespace={"type": "str"},
        concurrently={"type": "bool", "default": True},
        lock_timeout={"type": "str", "default": "1s"},
        lock_retries={"type": "int", "default": 5},
        lock_retry_delay={"type": "float", "default": 0.5},
        lock_retry_max_delay={"type": "float", "default": 30.0},
        statement_timeout={"type": "str"},
        build_wait_timeout={"type": "str"},
        on_invalid={"type": "str", "choices": ["rebuild", "fail"], "default": "rebuild"},
        on_mismatch={"type": "str", "choices": ["fail", "replace"], "default": "fail"},
        wait={"type": "bool", "default": False},
        wait_timeout={"type": "float", "default": 600.0},
        job_lock_timeout={"type": "float", "default": 30.0},
        maintenance_work_mem={"type": "str"},
        max_parallel_maintenance_workers={"type": "int"},
        analyze={"type": "bool", "default": False},
        constraint={"type": "str", "choices": ["unique", "primary_key"]},
        deferrable={"type": "bool", "default": False},
        initially_deferred={"type": "bool", "default": False},
        drop_constraint={"type": "bool", "default": False},
        definition={"type": "str"},
        expected={"type": "dict"},
        ledger={"type": "dict"},
        databases={"type": "list", "elements": "str"},
        max_connections={"type": "int", "default": fleet.DEFAULT_MAX_CONNECTIONS},
    )
    return spec


def safety_from(params):
    """Safety options, with durations checked here so bad text never reaches the server."""
    duration_seconds(params["lock_timeout"], "lock_timeout")
    for option in ("statement_timeout", "build_wait_timeout"):
        if params[option] is not None:
            duration_seconds(params[option], option)
    if params["lock_retries"] < 1:
        raise IndexOpsError(f"lock_retries is {params['lock_retries']}", expected="at least 1 attempt")
    return Safety(
        concurrently=params["concurrently"], lock_timeout=params["lock_timeout"],
        lock_retries=params["lock_retries"], retry_delay_s=params["lock_retry_delay"],
        retry_max_delay_s=params["lock_retry_max_delay"], statement_timeout=params["statement_timeout"],
        build_wait_timeout=params["build_wait_timeout"],
        on_invalid=params["on_invalid"], on_mismatch=params["on_mismatch"],
        maintenance_work_mem=params["maintenance_work_mem"],
        max_parallel_maintenance_workers=params["max_parallel_maintenance_workers"],
        analyze=params["analyze"], wait=params["wait"], wait_timeout_s=params["wait_timeout"],
        job_lock_timeout_s=params["job_lock_timeout"],
    )


def spec_params(params):
    """The spec options, taken from `definition` when one is given."""
    if not params["definition"]:
        return params
    parsed = params_from_definition(params["definition"])
    for key in ("name", "table"):
        given = params[key]
        if given and given != parsed[key] and given != parsed[key].split(".")[-1]:
            raise IndexOpsError(f"{key} is {given!r} but definition says {parsed[key]!r}",
                                expected=f"{key} omitted or equal to the definition's")
    return {**params, **parsed, "schema": None}


def run(module):
    params = spec_params(module.params)
    safety = safety_from(params)
    state_call(params)  # a bad spec is refused here, before any database is connected to
    if params["databases"] is None:
        return run_one(params, safety, module.check_mode, module._diff)
    fleet.check_options(params)
    entries = fleet.each(params["databases"],
                         lambda database: one_database({**params, "db": database}, safety, module.check_mode,
                                                       module._diff),
                         params["max_connections"])
    return {"changed": any(entry.get("changed") for entry in entries), "database_results": entries,
            "databases_failed": [entry["database"] for entry in entries if entry["failed"]]}


def state_call(params):
    """The IndexJob method for params' state, with its arguments bound: (method name, positional args, kwargs)."""
    if params["state"] == "present":
        spec = build_spec(params)
        return spec.schema, spec.name, "state_present", (spec,), {}
    name, schema, table = build_target(params)
    if params["state"] == "absent":
        return schema, name, "state_absent", (name, schema, table), {"drop_constraint": params["drop_constraint"]}
    return schema, name, "state_rebuilt", (name, schema, table), {}


def run_one(params, safety, check_mode, diff):
    """The change in the one database params["db"]."""
    job = IndexJob(lambda: connect(params, f"indexops/{params['name']}"), safety, check_mode=check_mode,
                   ledger=params["ledger"], expected=params["expected"], ledger_owner=params["ledger_owner"],
                   watch_connect=lambda: connect(params, f"indexops-watch/{params['name']}"))
    schema, name, method, args, kwargs = state_call(params)  # each database its own spec object
    try:
        result = guarded(job, schema, name, lambda: getattr(job, method)(*args, **kwargs))
    finally:
        job.close()
    if not diff:
        result.pop("diff")
    return result


def one_database(params, safety, check_mode, diff):
    """run_one in one database of O(databases): its failure is its entry (with the details a one-database
    failure carries), never the run's."""
    try:
        return run_one(params, safety, check_mode, diff)
    except IndexOpsError as exc:
        return {"failed": True, "changed": False, "msg": exc.msg, "retry_safe": exc.retry_safe, **exc.details}
    except Exception as exc:  # noqa: BLE001 - as main() words it, for this database only
        return {"failed": True, "changed": False, "retry_safe": False, "msg": f"pg_index failed unexpectedly: {exc}",
                "exception": traceback.format_exc()}


def fleet_failure(result):
    """The run's one line when databases failed: how many, and the first one's error."""
    failed = [entry for entry in result["database_results"] if entry["failed"]]
    return (f"{len(failed)} of {len(result['database_results'])} database(s) failed; the others are in "
            f"database_results. {failed[0]['database']}: {failed[0]['msg']}")


def guarded(job, schema, name, call):
    """Run one state; a refusal is still written to the ledger before it is reported."""
    try:
        return call()
    except IndexOpsError as exc:
        job.record_refusal(exc, schema, name)
        raise


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=[("state", "present", ("columns", "definition"), True)],
        mutually_exclusive=[("definition", option) for option in DEFINITION_OPTIONS],
        required_one_of=[("name", "definition")],
        supports_check_mode=True,
    )
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    if not HAS_PGLAST:
        module.fail_json(msg=missing_required_lib("pglast"))
    try:
        result = run(module)
    except IndexOpsError as exc:
        module.fail_json(msg=exc.msg, retry_safe=exc.retry_safe, **exc.details)
    except Exception as exc:  # an unexpected failure still gets one clear line and the traceback
        module.fail_json(msg=f"pg_index failed unexpectedly: {exc}", exception=traceback.format_exc())
    if result.get("databases_failed"):
        module.fail_json(msg=fleet_failure(result),
                         retry_safe=all(entry.get("retry_safe") for entry in result["database_results"]
                                        if entry["failed"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
