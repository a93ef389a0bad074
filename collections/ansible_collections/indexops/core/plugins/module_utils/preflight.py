"""pg_index_preflight: a read-only go/no-go for one change file on one target database.

Every check ends as ok true or false with a one-line detail that says what was found and what to
do; a check that cannot run because an earlier one failed stays ok null ("not checked: ...").
The change is a no-go when any check failed, and every failed check is listed.

Nothing here changes the target. The session is READ ONLY, except for the definition check, which
builds the spec on an empty temporary copy of the table inside a transaction that is always rolled
back (Session.canonical_definition, exactly as pg_index's check mode does).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import psycopg2

from ansible_collections.indexops.core.plugins.module_utils import catalog, compare, queries
from ansible_collections.indexops.core.plugins.module_utils import ledger as ledger_utils
from ansible_collections.indexops.core.plugins.module_utils import plan as planner
from ansible_collections.indexops.core.plugins.module_utils.changefile import ACTIONS, digest, validate_change
from ansible_collections.indexops.core.plugins.module_utils.connection import READ_LOCK_TIMEOUT
from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError, input_error
from ansible_collections.indexops.core.plugins.module_utils.names import replacement_name
from ansible_collections.indexops.core.plugins.module_utils.plan import describe_build
from ansible_collections.indexops.core.plugins.module_utils.safety import Safety, guard_server
from ansible_collections.indexops.core.plugins.module_utils.session import Session
from ansible_collections.indexops.core.plugins.module_utils.spec import build_spec, build_target, duration_seconds

BUILD_ACTIONS = ("create", "replace")
BUILD_CHECKS = ("change_valid", "server_version", "table_exists", "columns_exist", "privileges", "index_name",
                "equivalent_index", "long_transactions", "estimated_duration")
INDEX_CHECKS = ("change_valid", "server_version", "index_exists", "privileges", "long_transactions",
                "estimated_duration")
CHECKS = {"create": BUILD_CHECKS, "replace": BUILD_CHECKS, "drop": INDEX_CHECKS, "rebuild": INDEX_CHECKS}
# Checks that need nothing from the change beyond a valid document.
CHANGE_FREE_CHECKS = ("change_valid", "server_version", "long_transactions")
MAINTAIN_SINCE = 170000  # PostgreSQL 17: the MAINTAIN privilege allows REINDEX
TRANSACTIONS_SHOWN = 3
SESSION_STATEMENT_TIMEOUT = "60s"

# What applying would do, as plan.py decides it for pg_index, said by the check of the index name.
PLAN_SAYS = {
    "created": "no index {index} yet; applying builds it",
    "repaired_invalid": "index {index} exists but is INVALID (a failed build); applying drops it and builds it again",
    "none": "index {index} already exists with this definition; applying changes nothing",
    "replaced": "index {index} exists with a different definition; applying replaces it concurrently",
}
# Why applying would be refused (plan.py's refusal codes), with what to do.
REFUSAL_SAYS = {
    planner.BEING_BUILT: "index {index} is being built by another session: {build}; wait for that build to end",
    planner.MISMATCH: "index {index} already exists with a different definition: {before}; the change wants "
                      "{after} (use action: replace, or another name)",
    planner.CONSTRAINT: "index {index} backs constraint {constraints}, so it cannot be {verb} (change the "
                        "constraint instead)",
    planner.PARTITIONED: "index {index} is a partitioned index; PostgreSQL cannot drop it CONCURRENTLY",
    planner.MISSING: "index {index} does not exist, so it cannot be rebuilt",
}
VERBS = {"replace": "replaced", "drop": "dropped"}


@dataclass
class Check:
    name: str
    ok: bool | None = None
    detail: str = "not checked"


class Checks:
    """The checks of one run, in a fixed order per action."""

    def __init__(self, names):
        self.items = [Check(name) for name in names]
        self.by_name = {check.name: check for check in self.items}

    def passed(self, name, detail):
        self.by_name[name].ok, self.by_name[name].detail = True, detail

    def failed(self, name, detail):
        self.by_name[name].ok, self.by_name[name].detail = False, detail

    def skip(self, names, because):
        for name in names:
            check = self.by_name.get(name)
            if check is not None and check.ok is None:
                check.detail = f"not checked: {because}"

    @property
    def go(self):
        return not any(check.ok is False for check in self.items)

    def reasons(self):
        return [f"{check.name}: {check.detail}" for check in self.items if check.ok is False]

    def as_list(self):
        return [asdict(check) for check in self.items]


# --------------------------------------------------------------------------- pure helpers

def describe(exc):
    """One line from an IndexOpsError: what was wrong and what was expected."""
    text = exc.what.rstrip(".")
    if exc.expected:
        text += f" (expected: {exc.expected.rstrip('.')})"
    return " ".join(text.split())


def version_text(version):
    return f"PostgreSQL {version // 10000}.{version % 10000} ({version})"


def seconds_text(seconds):
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"


def bytes_text(size):
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"


def rehearsal_measurement(rehearsal):
    """(duration_s, table_bytes or None) from the gate's rehearsal, or None when there is none."""
    if not rehearsal or rehearsal.get("duration_s") is None:
        return None
    expected = "rehearsal: {duration_s: <seconds>, table_bytes: <bytes>} from a rehearsal report, or null"
    try:
        duration = float(rehearsal["duration_s"])
        measured = rehearsal.get("table_bytes")
        measured = None if measured is None else int(measured)
    except (TypeError, ValueError):
        raise input_error(f"rehearsal {rehearsal!r} has a duration_s or table_bytes that is not a number",
                          expected) from None
    if duration < 0 or (measured is not None and measured < 0):
        raise input_error(f"rehearsal {rehearsal!r} has a negative duration_s or table_bytes", expected)
    return duration, measured


def estimate_seconds(measurement, table_bytes):
    """The rehearsal's duration scaled by table size; unscaled when the rehearsal has no size."""
    if measurement is None or table_bytes is None:
        return None
    duration, measured = measurement
    if not measured:
        return duration
    return duration * table_bytes / measured


def judge_estimate(measurement, table_bytes, window_remaining_s):
    """(ok, estimate_s, detail) of the estimated_duration check."""
    estimate = estimate_seconds(measurement, table_bytes)
    if estimate is None:
        return True, None, "no rehearsal measurement to estimate the duration from"
    duration, measured = measurement
    basis = (f"rehearsal took {seconds_text(duration)} on {bytes_text(measured)}, this table is "
             f"{bytes_text(table_bytes)}" if measured else
             f"rehearsal took {seconds_text(duration)}; it recorded no table size, so not scaled")
    text = f"estimated {seconds_text(estimate)} ({basis})"
    if window_remaining_s is None:
        return True, estimate, text
    if estimate > window_remaining_s:
        return False, estimate, (f"{text} is longer than the {seconds_text(max(window_remaining_s, 0))} left in "
                                 "the maintenance window; run it at the start of a window")
    return True, estimate, f"{text}, within the {seconds_text(window_remaining_s)} left in the maintenance window"


def describe_transaction(row):
    who = f"{row.get('usename') or '?'}/{row.get('application_name') or '-'}"
    return f"pid {row['pid']} ({row.get('state') or 'unknown state'}, open {row['age_s']:.0f}s, {who}): {row['query']}"


def connection_params(params, change):
    """The module's connection options; a change that names its database is run against that one."""
    database = change.get("database") if isinstance(change, dict) else None
    if isinstance(database, str) and database:
        return {**params, "db": database}
    return params


def application_name(change):
    change_id = change.get("id") if isinstance(change, dict) else None
    return f"indexops/{change_id}" if isinstance(change_id, str) and change_id else "indexops/preflight"


# --------------------------------------------------------------------------- the checks

class Preflight:
    def __init__(self, connect, change, *, threshold="5min", rehearsal=None, window_remaining_s=None,
                 build_wait_timeout=None, ledger_owner=None):
        self.ledger_owner = ledger_owner
        self.change = change if isinstance(change, dict) else {}
        self.threshold = threshold
        self.threshold_s = duration_seconds(threshold, "long_transaction_threshold")
        self.build_wait_timeout = build_wait_timeout
        self.build_wait_timeout_s = (None if build_wait_timeout is None
                                     else duration_seconds(build_wait_timeout, "build_wait_timeout"))
        self.measurement = rehearsal_measurement(rehearsal)
        self.window_remaining_s = window_remaining_s
        action = self.change.get("action")
        self.action = action if action in ACTIONS else "create"
        self.checks = Checks(CHECKS[self.action])
        # The session pg_index would read through, in check mode (no job lock, nothing recorded).
        self.db = Session(connect, Safety(lock_timeout=READ_LOCK_TIMEOUT,
                                          statement_timeout=SESSION_STATEMENT_TIMEOUT), check_mode=True)
        self.original = change
        self.digest = None
        self.spec = None  # IndexSpec for create/replace
        self.target = None  # (name, schema, table) for drop/rebuild
        self.session = {}
        self.facts = {"server_version": None, "table": None, "long_transactions": [], "equivalent_indexes": [],
                      "estimate_s": None}

    @property
    def conn(self):
        return self.db.conn

    def run(self):
        valid = self.check_change()
        try:
            self.open()
            self.check_server()
            if not valid:
                self.checks.skip([name for name in self.checks.by_name if name not in CHANGE_FREE_CHECKS],
                                 "the change file is invalid")
            elif self.action in BUILD_ACTIONS:
                self.check_build_target()
            else:
                self.check_existing_index()
            self.check_long_transactions()
            if valid:
                self.check_estimate()
        except psycopg2.Error as exc:
            raise IndexOpsError(f"a read-only check failed: {str(exc).strip()}",
                                expected="the catalog and activity views to be readable",
                                hint="Nothing was changed; running again is safe.", retry_safe=True) from None
        finally:
            self.db.close()
        return self.result()

    def open(self):
        self.db.conn = self.db.connect()
        queries.read_only_session(self.conn, True)
        self.db.apply_settings()
        self.session = queries.session(self.conn)

    def result(self):
        return {
            "changed": False,
            "go": self.checks.go,
            "reasons": self.checks.reasons(),
            "checks": self.checks.as_list(),
            "change_id": self.change.get("id"),
            "action": self.change.get("action"),
            "digest": self.digest,
            "database": self.session.get("database"),
            "role": self.session.get("role"),
            **self.facts,
        }

    # ------------------------------------------------------------------ change and server
    def check_change(self):
        change_id = self.change.get("id")
        path = f"changes/{change_id}.yml" if isinstance(change_id, str) else "<change>"
        try:
            self.digest = digest(validate_change(self.original, path))
            if self.action in BUILD_ACTIONS:
                self.spec = build_spec(self.change["index"])
            else:
                self.target = build_target(self.change["index"])
        except IndexOpsError as exc:
            self.checks.failed("change_valid", describe(exc))
            return False
        self.checks.passed("change_valid", f"{path} matches the change file schema")
        return True

    def check_server(self):
        version = self.facts["server_version"] = catalog.server_version_num(self.conn)
        self.db.server_version = version
        try:
            guard_server(version, concurrent=True, nulls_not_distinct=bool(self.spec and self.spec.nulls_not_distinct),
                         standby=catalog.in_recovery(self.conn))
        except IndexOpsError as exc:
            self.checks.failed("server_version", describe(exc))
            return
        self.checks.passed("server_version", f"{version_text(version)} builds indexes concurrently safely")

    # ------------------------------------------------------------------ create / replace
    def check_build_target(self):
        row = self.check_table()
        if row is None:
            return
        columns_ok = self.check_columns(row)
        privileges = self.check_privileges(row, needs_temporary=True, tablespace=self.spec.tablespace)
        if not columns_ok:
            return
        wanted = self.definition(privileges)
        if wanted is None:
            return
        self.check_index_name(wanted)
        self.check_equivalent(row, wanted)

    def check_table(self):
        spec = self.spec
        try:
            row = self.db.require_table(spec.schema, spec.table)
        except IndexOpsError as exc:
            self.checks.failed("table_exists", describe(exc))
            row = catalog.table(self.conn, spec.schema, spec.table)
            if row is None or row["relkind"] not in ("r", "p", "m"):
                self.checks.skip(self.checks.by_name, "the table does not exist")
                return None
        else:
            size = bytes_text(row["table_bytes"])
            self.checks.passed("table_exists", f"table {spec.qualified_table} exists ({size}, "
                                               f"about {max(row['estimated_rows'], 0)} rows)")
        self.note_table(row)
        return row

    def note_table(self, row):
        self.db.table_row = row
        self.facts["table"] = {"schema": row["schema"], "name": row["table"], "bytes": row["table_bytes"],
                               "rows_estimate": max(row["estimated_rows"], 0)}

    def check_columns(self, row):
        present = catalog.column_names(self.conn, row["oid"])
        used = self.spec.referenced_columns
        missing = [name for name in used if name not in present]
        table = f"{row['schema']}.{row['table']}"
        if missing:
            self.checks.failed("columns_exist", f"table {table} has no column {', '.join(missing)} "
                                                f"(its columns: {', '.join(sorted(present))})")
            self.checks.skip(("index_name", "equivalent_index"), "a column the index uses is missing")
            return False
        self.checks.passed("columns_exist", f"table {table} has every column the index uses: {', '.join(used)}")
        return True

    def definition(self, privileges):
        """The spec as the server renders it, or None (and the dependent checks skipped)."""
        if not (privileges["owns"] and privileges["temporary"]):
            self.checks.skip(("index_name", "equivalent_index"),
                             "the role lacks the privileges to check the definition")
            return None
        queries.read_only_session(self.conn, False)
        try:
            wanted = self.db.canonical_definition(self.spec)
        except IndexOpsError as exc:
            self.checks.failed("change_valid", describe(exc))
            self.checks.skip(("index_name", "equivalent_index"), "PostgreSQL rejected the index definition")
            return None
        finally:
            queries.read_only_session(self.conn, True)
        check = self.checks.by_name["change_valid"]
        check.detail += " and PostgreSQL accepts the index definition"
        return wanted

    def check_index_name(self, wanted):
        spec = self.spec
        try:
            facts = self.db.present_facts(spec, wanted)
        except IndexOpsError as exc:
            self.checks.failed("index_name", describe(exc))
            return
        self.say_plan("index_name", planner.plan_present(facts, self.plan_safety()), f"{spec.schema}.{spec.name}")

    def plan_safety(self):
        """The options apply runs this action with: replace replaces a mismatch, create refuses it."""
        return replace(self.db.safety, on_mismatch="replace" if self.action == "replace" else "fail")

    def say_plan(self, check, outcome, index):
        """Pass ``check`` with what the plan would do, or fail it with why apply would be refused."""
        if isinstance(outcome, planner.Plan):
            self.checks.passed(check, PLAN_SAYS[outcome.action].format(index=index))
            return
        details = outcome.error.details
        build = details.get("build")
        self.checks.failed(check, REFUSAL_SAYS[outcome.code].format(
            index=index, build=describe_build(build) if build else "", before=details.get("before"),
            after=details.get("after"), constraints=details.get("constraints"),
            verb=VERBS.get(self.action, self.action)))

    def check_equivalent(self, row, wanted):
        spec = self.spec
        ours = {spec.name, replacement_name(spec.name)}
        where = {"name": spec.name, "schema": spec.schema, "table": spec.table}
        same = [index["name"] for index in queries.table_indexes(self.conn, row["oid"])
                if index["valid"] and index["ready"] and index["name"] not in ours
                and compare.same_definition(index["definition"], wanted, **where)]
        self.facts["equivalent_indexes"] = same
        table = f"{row['schema']}.{row['table']}"
        if same:
            self.checks.failed("equivalent_index", f"table {table} already has an equivalent valid index: "
                                                   f"{', '.join(same)} (a second copy only slows writes; drop the "
                                                   "change or the old index)")
        else:
            self.checks.passed("equivalent_index", f"no other index on {table} has this definition")

    # ------------------------------------------------------------------ drop / rebuild
    def check_existing_index(self):
        name, schema, table = self.target
        index = f"{schema}.{name}"
        try:
            facts = self.db.existing_facts(schema, name, table)
        except IndexOpsError as exc:
            self.checks.failed("index_exists", describe(exc))
            self.checks.skip(("privileges", "estimated_duration"), "the index cannot be used")
            return
        decide = planner.plan_absent if self.action == "drop" else planner.plan_rebuilt
        outcome = decide(facts, self.plan_safety())
        if facts.existing is None:
            if isinstance(outcome, planner.Plan):
                self.checks.passed("index_exists", f"index {index} does not exist (already dropped?); applying "
                                                   "changes nothing")
            else:
                self.say_plan("index_exists", outcome, index)
            self.checks.skip(("privileges", "estimated_duration"), "the index does not exist")
            return
        existing = facts.existing.row
        row = catalog.table(self.conn, existing["table_schema"], existing["table"])
        self.note_table(row)
        if isinstance(outcome, planner.Plan):
            state = "valid" if existing["valid"] else "INVALID"
            self.checks.passed("index_exists", f"index {index} exists on {row['schema']}.{row['table']} ({state}, "
                                               f"{bytes_text(existing['size_bytes'])})")
        else:
            self.say_plan("index_exists", outcome, index)
        maintain = (self.action == "rebuild" and self.facts["server_version"] >= MAINTAIN_SINCE
                    and queries.can_maintain(self.conn, row["oid"]))
        self.check_privileges(row, needs_temporary=False, tablespace=None, maintain=maintain)

    # ------------------------------------------------------------------ privileges
    def check_privileges(self, row, *, needs_temporary, tablespace, maintain=False):
        privileges = queries.table_privileges(self.conn, row["oid"])
        role, owner, table = privileges["role"], privileges["owner"], f"{row['schema']}.{row['table']}"
        problems = []
        if not (privileges["owns"] or maintain):
            problems.append(f"role {role} does not own table {table} (owner {owner}) and is neither a member of "
                            f"{owner} nor a superuser")
        if not privileges["schema_usage"]:
            problems.append(f"role {role} has no USAGE on schema {row['schema']}")
        if needs_temporary and not privileges["schema_create"]:  # a build: CREATE INDEX checks it
            problems.append(f"role {role} has no CREATE privilege on schema {row['schema']} (CREATE INDEX needs it)")
        if needs_temporary and not privileges["temporary"]:
            problems.append(f"role {role} has no TEMPORARY privilege on database {privileges['database']} (the "
                            "definition check builds the index on an empty temporary table)")
        problems += self.tablespace_problems(role, tablespace)
        problems += self.ledger_problems(role, privileges["database"])
        if problems:
            self.checks.failed("privileges", "; ".join(problems))
        else:
            how = "owns" if owner == role else "has the owner's privileges on"
            how = "holds MAINTAIN on" if maintain and not privileges["owns"] else how
            self.checks.passed("privileges", f"role {role} {how} table {table} (owner {owner}) and can write the "
                                             "ledger")
        return privileges

    def tablespace_problems(self, role, tablespace):
        if not tablespace:
            return []
        can_create = queries.tablespace_privilege(self.conn, tablespace)
        if can_create is None:
            return [f"tablespace {tablespace} does not exist"]
        return [] if can_create else [f"role {role} has no CREATE privilege on tablespace {tablespace}"]

    def ledger_problems(self, role, database):
        _, distrusted = ledger_utils.distrust(self.conn, self.ledger_owner)
        if distrusted:  # pg_index would refuse it: a no-go, phrased as pg_index phrases it
            return [describe(distrusted)]
        ledger = queries.ledger_privileges(self.conn)
        if ledger["table_exists"]:
            if ledger["schema_usage"] and ledger["can_write"]:
                return []
            return [f"role {role} cannot write the ledger indexops.jobs (needs USAGE on schema indexops and SELECT, "
                    "INSERT, UPDATE on the table)"]
        if ledger["can_create"]:
            return []
        return [f"role {role} cannot create the ledger in database {database} (needs CREATE on the database, or a "
                f"DBA to run: CREATE SCHEMA indexops AUTHORIZATION {role})"]

    # ------------------------------------------------------------------ activity and timing
    def check_long_transactions(self):
        rows = self.facts["long_transactions"] = queries.long_transactions(self.conn, self.threshold_s)
        database, role = self.session["database"], self.session["role"]
        caveat = "" if queries.stats_visible(self.conn) else (
            f" (role {role} sees only its own sessions; grant it pg_monitor to see all)")
        if not rows:
            self.checks.passed("long_transactions",
                               f"no transaction in database {database} is older than {self.threshold}{caveat}")
            return
        shown = "; ".join(describe_transaction(row) for row in rows[:TRANSACTIONS_SHOWN])
        more = f"; and {len(rows) - TRANSACTIONS_SHOWN} more" if len(rows) > TRANSACTIONS_SHOWN else ""
        waits = (f"{len(rows)} transaction(s) in database {database} older than {self.threshold}: {shown}{more}. "
                 "A concurrent build or drop waits for them to end (that wait blocks no reads or writes)")
        limit = self.build_wait_timeout_s
        if limit is not None and rows[0]["age_s"] >= limit:
            # Already open longer than the whole budget: a build started now would most likely stop at it.
            self.checks.failed("long_transactions",
                               f"{waits}, and the oldest is already older than build_wait_timeout "
                               f"{self.build_wait_timeout}, so the build would likely be stopped at that limit "
                               f"(let them finish or end them, or raise build_wait_timeout, then run again){caveat}")
            return
        bound = (f"for at most build_wait_timeout {self.build_wait_timeout} in total" if limit is not None
                 else "with no limit (build_wait_timeout is not set)")
        self.checks.passed("long_transactions", f"{waits}, {bound}{caveat}")

    def check_estimate(self):
        if self.facts["table"] is None:
            return
        ok, estimate, detail = judge_estimate(self.measurement, self.facts["table"]["bytes"], self.window_remaining_s)
        self.facts["estimate_s"] = None if estimate is None else round(estimate, 3)
        (self.checks.passed if ok else self.checks.failed)("estimated_duration", detail)
