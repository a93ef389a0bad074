"""pg_index_preflight's checks on the change's table and index, read through the Session pg_index
uses in check mode: for create/replace that the table and its columns exist, the privileges, what
applying would do with the index name (plan.py decides, as for pg_index) and whether an equivalent
index exists under another name; for drop/rebuild that the index exists and may be changed.
"""

from __future__ import annotations

from dataclasses import replace

from ansible_collections.indexops.core.plugins.module_utils import (
    catalog,
    compare,
    constraint_catalog,
    constraints,
    humanize,
    preflight_constraints,
    queries,
)
from ansible_collections.indexops.core.plugins.module_utils import ledger as ledger_utils
from ansible_collections.indexops.core.plugins.module_utils import plan as planner
from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError
from ansible_collections.indexops.core.plugins.module_utils.names import replacement_name
from ansible_collections.indexops.core.plugins.module_utils.plan import describe_build
from ansible_collections.indexops.core.plugins.module_utils.preflight_report import describe

MAINTAIN_SINCE = 170000  # PostgreSQL 17: the MAINTAIN privilege allows REINDEX

# What applying would do, as plan.py decides it for pg_index, said by the check of the index name.
PLAN_SAYS = {
    "created": "no index {index} yet; applying builds it",
    "repaired_invalid": "index {index} exists but is INVALID (a failed build); applying drops it and builds it again",
    "none": "index {index} already exists with this definition; applying changes nothing",
    "replaced": "index {index} exists with a different definition; applying replaces it concurrently",
    **preflight_constraints.PLAN_SAYS,
}
# Why applying would be refused (plan.py's refusal codes), with what to do.
REFUSAL_SAYS = {
    planner.BEING_BUILT: "index {index} is being built by another session: {build}; wait for that build to end",
    planner.MISMATCH: "index {index} already exists with a different definition: {before}; the change wants "
                      "{after} (use action: replace, or another name)",
    planner.CONSTRAINT: "index {index} backs constraint {constraints}, so it cannot be {verb} (change the "
                        "constraint instead; a drop with drop_constraint: true drops the constraint with it)",
    planner.REPLACE_PARTITIONED: "index {index} is a partitioned index with a different definition: {before}; "
                                 "pg_index does not replace a partitioned index in place (create the wanted one "
                                 "under another name, then drop this one)",
    planner.MISSING: "index {index} does not exist, so it cannot be rebuilt",
    **preflight_constraints.REFUSAL_SAYS,
}
VERBS = {"replace": "replaced", "drop": "dropped"}


def partitions_text(partitions):
    """'; partitioned: 5 partitions, each indexed concurrently on its own (largest public.pt_a, 2.0 MiB)',
    or '' for a table that is not partitioned (``partitions`` None)."""
    if partitions is None:
        return ""
    if not partitions:
        return "; partitioned, with no partitions yet"
    largest = max(partitions, key=lambda item: item["bytes"])
    return (f"; partitioned: {len(partitions)} partitions, each indexed concurrently on its own (largest "
            f"{largest['partition']}, {humanize.size(largest['bytes'])})")


class TargetChecks:
    """The checks of one run on the table and the index; they fill in the run's ``checks`` and the
    ``facts`` it returns (table, equivalent_indexes) and read the server_version found before."""

    def __init__(self, db, checks, facts, action, ledger_owner=None):
        self.db = db  # the Session, connected, in check mode
        self.checks = checks
        self.facts = facts
        self.action = action
        self.ledger_owner = ledger_owner
        self.spec = None
        self.drop_constraint = False  # the drop change's index.drop_constraint

    @property
    def conn(self):
        return self.db.conn

    # ------------------------------------------------------------------ create / replace
    def check_build_target(self, spec):
        self.spec = spec
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
            self.note_table(row)
            size = humanize.size(row["table_bytes"])
            self.checks.passed("table_exists", f"table {spec.qualified_table} exists ({size}, "
                                               f"about {max(row['estimated_rows'], 0)} rows)"
                                               f"{partitions_text(self.facts.get('partitions'))}")
            return row
        self.note_table(row)
        return row

    def note_table(self, row):
        self.db.table_row = row
        self.facts["table"] = {"schema": row["schema"], "name": row["table"], "bytes": row["table_bytes"],
                               "rows_estimate": max(row["estimated_rows"], 0)}
        if row["relkind"] == "p":  # each leaf gets a build of its own: preflight lists them with their sizes
            self.facts["partitions"] = [{"partition": f"{item['schema']}.{item['table']}", "bytes": item["table_bytes"]}
                                        for item in catalog.partitions(self.conn, row["oid"]) if item["leaf"]]

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
        outcome = planner.plan_present(facts, self.plan_safety())
        if spec.constraint is not None:
            outcome = self.check_constraint(facts, outcome)
        self.say_plan("index_name", outcome, f"{spec.schema}.{spec.name}")

    def check_constraint(self, facts, outcome):
        """The constraint check (preflight_constraints), and the plan with the constraint's steps."""
        spec = self.spec
        existing = facts.existing.row if facts.existing else None
        found = constraint_catalog.read(self.conn, self.db.table_row, existing, constraints.key_columns(spec))
        ok, detail = preflight_constraints.constraint_detail(spec, found, existing is not None)
        (self.checks.passed if ok else self.checks.failed)(preflight_constraints.CHECK, detail)
        return constraints.plan_present(outcome, facts, found, self.plan_safety())

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
        if outcome.code not in REFUSAL_SAYS:  # partitions.py's refusals say it in their own words
            self.checks.failed(check, outcome.error.what)
            return
        self.checks.failed(check, REFUSAL_SAYS[outcome.code].format(
            index=index, build=describe_build(build) if build else "", before=details.get("before"),
            after=details.get("after"), constraints=details.get("constraints"),
            verb=VERBS.get(self.action, self.action), what=outcome.error.what))

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
    def check_existing_index(self, target):
        name, schema, table = target
        index = f"{schema}.{name}"
        try:
            facts = self.db.existing_facts(schema, name, table)
        except IndexOpsError as exc:
            self.checks.failed("index_exists", describe(exc))
            self.checks.skip(("privileges", "estimated_duration"), "the index cannot be used")
            return
        outcome = (self.absent_plan(facts, target) if self.action == "drop"
                   else planner.plan_rebuilt(facts, self.plan_safety()))
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
                                               f"{humanize.size(existing['size_bytes'])})")
        else:
            self.say_plan("index_exists", outcome, index)
        maintain = (self.action == "rebuild" and self.facts["server_version"] >= MAINTAIN_SINCE
                    and queries.can_maintain(self.conn, row["oid"]))
        self.check_privileges(row, needs_temporary=False, tablespace=None, maintain=maintain)

    # ------------------------------------------------------------------ privileges
    def absent_plan(self, facts, target):
        """What a drop does, as pg_index decides it: constraints.py for an index that backs a constraint."""
        if facts.existing is None:
            return planner.plan_absent(facts, self.plan_safety())
        existing = facts.existing.row
        table = catalog.table(self.conn, existing["table_schema"], existing["table"])
        found = constraint_catalog.read(self.conn, table, existing)
        return constraints.plan_absent(facts, found, self.plan_safety(), bool(self.drop_constraint))

    def check_privileges(self, row, *, needs_temporary, tablespace, maintain=False):
        privileges = queries.table_privileges(self.conn, row["oid"])
        role, owner, table = privileges["role"], privileges["owner"], f"{row['schema']}.{row['table']}"
        problems = (table_problems(privileges, row, needs_temporary=needs_temporary, maintain=maintain)
                    + tablespace_problems(self.conn, role, tablespace)
                    + ledger_problems(self.conn, role, privileges["database"], self.ledger_owner))
        if problems:
            self.checks.failed("privileges", "; ".join(problems))
        else:
            how = "owns" if owner == role else "has the owner's privileges on"
            how = "holds MAINTAIN on" if maintain and not privileges["owns"] else how
            self.checks.passed("privileges", f"role {role} {how} table {table} (owner {owner}) and can write the "
                                             "ledger")
        return privileges


def table_problems(privileges, row, *, needs_temporary, maintain):
    """What the role lacks on the table, its schema and the database (queries.table_privileges)."""
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
    return problems


def tablespace_problems(conn, role, tablespace):
    if not tablespace:
        return []
    can_create = queries.tablespace_privilege(conn, tablespace)
    if can_create is None:
        return [f"tablespace {tablespace} does not exist"]
    return [] if can_create else [f"role {role} has no CREATE privilege on tablespace {tablespace}"]


def ledger_problems(conn, role, database, ledger_owner):
    _, distrusted = ledger_utils.distrust(conn, ledger_owner)
    if distrusted:  # pg_index would refuse it: a no-go, phrased as pg_index phrases it
        return [describe(distrusted)]
    ledger = queries.ledger_privileges(conn)
    if ledger["table_exists"]:
        if ledger["schema_usage"] and ledger["can_write"]:
            return []
        return [f"role {role} cannot write the ledger indexops.jobs (needs USAGE on schema indexops and SELECT, "
                "INSERT, UPDATE on the table)"]
    if ledger["can_create"]:
        return []
    return [f"role {role} cannot create the ledger in database {database} (needs CREATE on the database, or a "
            f"DBA to run: CREATE SCHEMA indexops AUTHORIZATION {role})"]
