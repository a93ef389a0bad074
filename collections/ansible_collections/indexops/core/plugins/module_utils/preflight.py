"""pg_index_preflight: a read-only go/no-go for one change file on one target database.

Every check ends as ok true or false with a one-line detail that says what was found and what to
do; a check that cannot run because an earlier one failed stays ok null ("not checked: ...").
The change is a no-go when any check failed, and every failed check is listed.

Nothing here changes the target. The session is READ ONLY, except for the definition check, which
builds the spec on an empty temporary copy of the table inside a transaction that is always rolled
back (Session.canonical_definition, exactly as pg_index's check mode does).
"""

from __future__ import annotations

import psycopg2

from ansible_collections.indexops.core.plugins.module_utils import catalog, fleet, preflight_constraints, queries
from ansible_collections.indexops.core.plugins.module_utils.changefile import ACTIONS, digest, validate_change
from ansible_collections.indexops.core.plugins.module_utils.connection import READ_LOCK_TIMEOUT
from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError
from ansible_collections.indexops.core.plugins.module_utils.preflight_report import (
    Checks,
    describe,
    describe_transaction,
    judge_estimate,
    rehearsal_measurement,
    version_text,
)
from ansible_collections.indexops.core.plugins.module_utils.preflight_target import TargetChecks
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
TRANSACTIONS_SHOWN = 3
SESSION_STATEMENT_TIMEOUT = "60s"


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
    """One run: the change file, the server and the environment are checked here; the table and the
    index by TargetChecks (preflight_target.py); results and texts are preflight_report.py's."""

    def __init__(self, connect, change, *, threshold="5min", rehearsal=None, window_remaining_s=None,
                 build_wait_timeout=None, ledger_owner=None, rehearsal_environments=()):
        self.change = change if isinstance(change, dict) else {}
        self.threshold = threshold
        self.threshold_s = duration_seconds(threshold, "long_transaction_threshold")
        self.build_wait_timeout = build_wait_timeout
        self.build_wait_timeout_s = (None if build_wait_timeout is None
                                     else duration_seconds(build_wait_timeout, "build_wait_timeout"))
        self.measurement = rehearsal_measurement(rehearsal)
        self.rehearsal_environments = tuple(rehearsal_environments or ())
        self.window_remaining_s = window_remaining_s
        action = self.change.get("action")
        self.action = action if action in ACTIONS else "create"
        self.checks = Checks(CHECKS[self.action] + preflight_constraints.checks_for(self.change))
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
        self.target_checks = TargetChecks(self.db, self.checks, self.facts, self.action, ledger_owner)
        index = self.change.get("index")
        self.target_checks.drop_constraint = isinstance(index, dict) and index.get("drop_constraint") is True

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
                self.target_checks.check_build_target(self.spec)
            else:
                self.target_checks.check_existing_index(self.target)
            self.checks.skip(preflight_constraints.checks_for(self.change), "the index could not be checked")
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
        ok, estimate, detail = judge_estimate(self.measurement, self.facts["table"]["bytes"], self.window_remaining_s,
                                              self.rehearsal_environments)
        self.facts["estimate_s"] = None if estimate is None else round(estimate, 3)
        self.estimate_partitions(estimate)
        (self.checks.passed if ok else self.checks.failed)("estimated_duration", detail)

    def estimate_partitions(self, estimate):
        """On a partitioned table each partition's build gets its share of the estimate, by size (the
        builds run one after another, so the shares add up to the whole)."""
        total = self.facts["table"]["bytes"]
        for part in self.facts.get("partitions") or []:
            part["estimate_s"] = None if estimate is None or not total else round(estimate * part["bytes"] / total, 3)


# --------------------------------------------------------------------------- many databases of one server

PREFLIGHT_OPTIONS = {"long_transaction_threshold": "threshold", "rehearsal": "rehearsal",
                     "window_remaining_s": "window_remaining_s", "build_wait_timeout": "build_wait_timeout",
                     "ledger_owner": "ledger_owner", "rehearsal_environments": "rehearsal_environments"}


def preflight_options(params):
    return {keyword: params.get(option) for option, keyword in PREFLIGHT_OPTIONS.items()
            if params.get(option) is not None}


def fleet_databases(params, change, connect_to):
    """A change file that names its database is checked there only; otherwise every database selected."""
    named = change.get("database") if isinstance(change, dict) else None
    if isinstance(named, str) and named:
        return [named]
    return fleet.databases_of(params, connect_to)


def fleet_reasons(entries):
    """Every database's no-go reasons, each saying which database; a database not checked is one."""
    out = []
    for entry in entries:
        if entry["failed"]:
            out.append(f"database {entry['database']}: not checked: {entry['msg']}")
        else:
            out.extend(f"database {entry['database']}: {reason}" for reason in entry["reasons"])
    return out


def run_fleet(params, connect_to):
    """The preflight of one change in every database the fleet options select, at most max_connections at a
    time; go only when every database is a go. ``connect_to(database)`` opens a connection."""
    change = params["change"]
    fleet.check_options(params)
    options = preflight_options(params)
    Preflight(None, change, **options)  # bad options fail here, once, before anything connects
    databases = fleet_databases(params, change, connect_to)
    entries = fleet.each(databases, lambda database: Preflight(lambda: connect_to(database), change, **options).run(),
                         params.get("max_connections") or fleet.DEFAULT_MAX_CONNECTIONS)
    checked = [entry for entry in entries if not entry["failed"]]
    reasons = fleet_reasons(entries) or ([] if entries else [f"databases: {fleet.nothing_selected_warning(params)}"])
    first = checked[0] if checked else {}
    # The one-database keys stay (a contract); each database's facts are in its entry.
    return {"changed": False, "go": not reasons, "reasons": reasons, "checks": [],
            "change_id": change.get("id"), "action": change.get("action"), "digest": first.get("digest"),
            "database": params.get("db"), "role": first.get("role"), "server_version": first.get("server_version"),
            "table": None, "long_transactions": [], "equivalent_indexes": [], "estimate_s": None,
            "database_results": entries, **fleet.summary(entries)}
