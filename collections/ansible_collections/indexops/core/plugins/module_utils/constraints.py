"""Constraint-backed indexes: a UNIQUE or PRIMARY KEY constraint on top of a concurrently built index.

Pure, like plan.py: facts in (ConstraintFacts, read by constraint_catalog.py), steps or a refusal
out. plan.py decides the index itself; the functions here take its outcome and add what the
constraint needs, so a constraint never changes how the index is built, retried or cleaned up.

What runs, in order, after the index is valid (each statement under lock_timeout with retries):

- PRIMARY KEY on a nullable column, per column, so that ``ADD PRIMARY KEY`` never scans the table
  under ACCESS EXCLUSIVE: ``ADD CONSTRAINT <col>_indexops_nn CHECK (col IS NOT NULL) NOT VALID``
  (ACCESS EXCLUSIVE, catalog only), ``VALIDATE CONSTRAINT`` (scans under SHARE UPDATE EXCLUSIVE:
  reads and writes go on), ``ALTER COLUMN SET NOT NULL`` (ACCESS EXCLUSIVE; PostgreSQL 12+ skips
  its scan because the valid check proves it), ``DROP CONSTRAINT`` of the check. Each step is read
  back from the catalog on a rerun, so a run stopped after any of them is finished by the next.
- ``ALTER TABLE ... ADD CONSTRAINT <name> UNIQUE | PRIMARY KEY USING INDEX <name>`` (ACCESS
  EXCLUSIVE, catalog only).

The constraint always has the index's name: PostgreSQL keeps a PRIMARY KEY or UNIQUE constraint
and its index under one name (USING INDEX renames the index to the constraint's name, and renaming
either renames the other), so a second name could only ever drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from psycopg2 import sql

from ansible_collections.indexops.core.plugins.module_utils import plan as planner
from ansible_collections.indexops.core.plugins.module_utils.constraint_spec import KINDS, check_name
from ansible_collections.indexops.core.plugins.module_utils.errors import FIX_INPUT, IndexOpsError, input_error
from ansible_collections.indexops.core.plugins.module_utils.sqlcompose import qualified

CONTYPE_NAMES = {"u": "UNIQUE", "p": "PRIMARY KEY", "x": "EXCLUDE"}
ADDED = "constraint_added"  # the action of a run that added a constraint to an index that was there

# Refusal codes, besides plan.py's.
CONSTRAINT_MISMATCH = "constraint_mismatch"  # the index backs a constraint other than the wanted one
FOREIGN_KEYS = "foreign_keys"  # foreign keys depend on the constraint a drop would remove
PRIMARY_KEY_EXISTS = "primary_key_exists"  # the table already has a primary key on another index
PARTITIONED_TABLE = "constraint_partitioned"  # ADD CONSTRAINT ... USING INDEX is not supported on a partitioned table


@dataclass
class CheckStep(planner.Step):
    """A step of the NOT NULL path: ``adds`` or drops (not ``adds``) the check ``check`` on a table."""

    check: tuple = ()  # (schema, table, check name)
    adds: bool = False


@dataclass
class ConstraintFacts:
    """What the constraint plan decides from, read by constraint_catalog.read."""

    table_relkind: str = "r"
    backing: dict | None = None  # the constraint the index backs: name, kind (contype), deferrable, ...
    foreign_keys: list = field(default_factory=list)  # rows: schema, table, name of FKs that depend on it
    primary_key: dict | None = None  # the table's primary key: name, index_oid
    not_null: dict = field(default_factory=dict)  # key column -> attnotnull
    checks: dict = field(default_factory=dict)  # our NOT NULL check name -> convalidated


def key_columns(spec):
    return [col.name for col in spec.columns]


# --------------------------------------------------------------------------- statements

def table_sql(schema, table):
    return sql.SQL("ALTER TABLE {} ").format(qualified(schema, table))


def add_constraint(schema, table, name, kind, deferrable=False, initially_deferred=False):
    timing = sql.SQL(" DEFERRABLE INITIALLY DEFERRED" if initially_deferred else
                     " DEFERRABLE" if deferrable else "")
    return sql.Composed([table_sql(schema, table), sql.SQL("ADD CONSTRAINT {} {} USING INDEX {}").format(
        sql.Identifier(name), sql.SQL(KINDS[kind]["sql"]), sql.Identifier(name)), timing])


def add_not_null_check(schema, table, column):
    return sql.Composed([table_sql(schema, table), sql.SQL("ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID").format(
        sql.Identifier(check_name(column)), sql.Identifier(column))])


def validate_check(schema, table, column):
    return sql.Composed([table_sql(schema, table),
                         sql.SQL("VALIDATE CONSTRAINT {}").format(sql.Identifier(check_name(column)))])


def set_not_null(schema, table, column):
    return sql.Composed([table_sql(schema, table),
                         sql.SQL("ALTER COLUMN {} SET NOT NULL").format(sql.Identifier(column))])


def drop_constraint(schema, table, name):
    return sql.Composed([table_sql(schema, table),
                         sql.SQL("DROP CONSTRAINT IF EXISTS {}").format(sql.Identifier(name))])


# --------------------------------------------------------------------------- describing

def describe(kind_sql, name, deferrable, initially_deferred):
    timing = " DEFERRABLE INITIALLY DEFERRED" if initially_deferred else " DEFERRABLE" if deferrable else ""
    return f"CONSTRAINT {name} {kind_sql}{timing}"


def describe_wanted(constraint, name):
    return describe(KINDS[constraint.kind]["sql"], name, constraint.deferrable, constraint.initially_deferred)


def describe_backing(backing):
    return describe(CONTYPE_NAMES.get(backing["kind"], backing["kind"]), backing["name"], backing["deferrable"],
                    backing["initially_deferred"])


def same_constraint(backing, constraint, name):
    return (backing["kind"] == KINDS[constraint.kind]["contype"] and backing["name"] == name
            and backing["deferrable"] == constraint.deferrable
            and backing["initially_deferred"] == constraint.initially_deferred)


def recorded_definition(index_definition, backing):
    """What the ledger keeps of an index that backs a constraint: pg_get_indexdef, then the ALTER TABLE
    that adds the constraint to it again (spec.params_from_definition reads both back)."""
    if not backing or not index_definition or not backing.get("statement"):
        return index_definition
    return f"{index_definition}; {backing['statement']}"


# --------------------------------------------------------------------------- refusals

def partitioned(spec):
    return planner.Refusal(PARTITIONED_TABLE, input_error(
        f"{spec.schema}.{spec.table} is a partitioned table; PostgreSQL does not support "
        "ADD CONSTRAINT ... USING INDEX on it",
        "a constraint on a plain table; on a partitioned table add it per partition, or add it with "
        "ALTER TABLE ... ADD CONSTRAINT (which builds its index under a lock that blocks writes)"))


def mismatch(spec, backing, before, after):
    return planner.Refusal(CONSTRAINT_MISMATCH, IndexOpsError(
        f"index {spec.schema}.{spec.name} backs {describe_backing(backing)}, not the wanted "
        f"{describe_wanted(spec.constraint, spec.name)}",
        expected="the constraint the index already backs in the spec, or a new index name for the wanted one",
        hint="Nothing was changed. PostgreSQL cannot change a constraint's kind or (for UNIQUE and PRIMARY KEY) its "
             "deferrability in place: drop it (state: absent, drop_constraint: true) and create it again.",
        before=before, after=after))


def primary_key_exists(spec, primary_key):
    return planner.Refusal(PRIMARY_KEY_EXISTS, IndexOpsError(
        f"table {spec.schema}.{spec.table} already has primary key {primary_key['name']}, so "
        f"{spec.schema}.{spec.name} cannot become one",
        expected="a table without a primary key, or constraint: unique",
        hint=FIX_INPUT))


def backs_constraint(row, backing):
    return planner.Refusal(planner.CONSTRAINT, IndexOpsError(
        f"index {row['schema']}.{row['name']} backs {describe_backing(backing)}, so pg_index will not drop it "
        "unless drop_constraint is true",
        expected="drop_constraint: true to drop the constraint and its index together (ALTER TABLE ... DROP "
                 "CONSTRAINT, under lock_timeout)",
        hint=FIX_INPUT, constraints=row["constraints"]))


def exclusion(row, backing):
    return planner.Refusal(planner.CONSTRAINT, IndexOpsError(
        f"index {row['schema']}.{row['name']} backs {describe_backing(backing)}; pg_index does not drop "
        "EXCLUDE constraints, because it could not recreate one without blocking writes for a whole build",
        expected="an index that backs a UNIQUE or PRIMARY KEY constraint, or no constraint",
        hint=FIX_INPUT, constraints=row["constraints"]))


def foreign_keys(row, backing, keys):
    named = ", ".join(f"{key['name']} on {key['schema']}.{key['table']}" for key in keys)
    return planner.Refusal(FOREIGN_KEYS, IndexOpsError(
        f"constraint {backing['name']} of index {row['schema']}.{row['name']} cannot be dropped: "
        f"foreign keys depend on it: {named}",
        expected="no foreign key that references the constraint (drop those first, in their own change)",
        hint=FIX_INPUT, foreign_keys=keys))


# --------------------------------------------------------------------------- state present

def plan_present(outcome, facts, found, safety):
    """plan.plan_present's outcome, with the steps the wanted constraint still needs."""
    spec = facts.spec
    if spec.constraint is None or isinstance(outcome, planner.Refusal):
        return outcome
    if found.table_relkind == "p":
        return partitioned(spec)
    wanted = describe_wanted(spec.constraint, spec.name)
    backing = found.backing if outcome.action == "none" else None  # a rebuilt or replaced index backs nothing
    before = outcome.before + (f"\n{describe_backing(backing)}" if backing else "")
    after = f"{outcome.after}\n{wanted}"
    if backing is not None:
        if not same_constraint(backing, spec.constraint, spec.name):
            return mismatch(spec, backing, before, after)
        return replace(outcome, before=before, after=after,
                       definition_before=recorded_definition(outcome.definition_before, backing))
    primary_key = found.primary_key
    if spec.constraint.kind == "primary_key" and primary_key and primary_key["name"] != spec.name:
        return primary_key_exists(spec, primary_key)
    # After the build (and its ANALYZE): a failed build never leaves a column changed to NOT NULL.
    return replace(outcome, action=outcome.action if outcome.steps else ADDED,
                   steps=[*outcome.steps, *constraint_steps(spec, found)], before=before, after=after)


def constraint_steps(spec, found):
    steps = []
    if spec.constraint.kind == "primary_key":
        for column in key_columns(spec):
            steps += not_null_steps(spec, column, found)
    constraint = spec.constraint
    steps.append(planner.Step(add_constraint(spec.schema, spec.table, spec.name, constraint.kind,
                                             constraint.deferrable, constraint.initially_deferred)))
    return steps


def not_null_steps(spec, column, found):
    """SET NOT NULL without a scan under ACCESS EXCLUSIVE; what an earlier run did is not done again."""
    schema, table, name = spec.schema, spec.table, check_name(column)
    steps = []
    if not found.not_null.get(column, False):
        if name not in found.checks:
            steps.append(CheckStep(add_not_null_check(schema, table, column), check=(schema, table, name), adds=True))
        if not found.checks.get(name):
            steps.append(planner.Step(validate_check(schema, table, column)))
        steps.append(planner.Step(set_not_null(schema, table, column)))
    if not found.not_null.get(column, False) or name in found.checks:
        steps.append(CheckStep(drop_constraint(schema, table, name), check=(schema, table, name)))
    return steps


def undo_steps(done):
    """After a failed run: drop the NOT NULL checks its finished steps added and did not drop again,
    so that a failure (NULLs in a key column, a spent retry budget) leaves no constraint that rejects
    the application's writes behind."""
    added = [step.check for step in done if isinstance(step, CheckStep) and step.adds]
    dropped = {step.check for step in done if isinstance(step, CheckStep) and not step.adds}
    return [CheckStep(drop_constraint(*check), check=check) for check in added if check not in dropped]


# --------------------------------------------------------------------------- state absent

def plan_absent(facts, found, safety, drop):
    """state: absent of an index that backs a constraint: drop the constraint (which drops the index)
    when ``drop`` (drop_constraint) is true; every other case is plan.plan_absent's."""
    existing = facts.existing
    backing = found.backing
    if existing is None or existing.builds or backing is None:
        return planner.plan_absent(facts, safety)
    row = existing.row
    if not drop:
        return backs_constraint(row, backing)
    if backing["kind"] not in ("p", "u"):
        return exclusion(row, backing)
    if found.foreign_keys:
        return foreign_keys(row, backing, found.foreign_keys)
    before = f"{row['definition']}\n{describe_backing(backing)}"
    step = planner.Step(drop_constraint(row["table_schema"], row["table"], backing["name"]), drops=facts.name)
    return planner.Plan("dropped", [step], before, "", recorded_definition(row["definition"], backing))


# --------------------------------------------------------------------------- after the run

def unmet(spec, backing):
    """Why the constraint is not as wanted after a run, or None."""
    if spec.constraint is None or (backing and same_constraint(backing, spec.constraint, spec.name)):
        return None
    found = describe_backing(backing) if backing else "no constraint"
    return f"index {spec.schema}.{spec.name} backs {found}, not {describe_wanted(spec.constraint, spec.name)}"


def result_of(backing):
    """The ``constraint`` return value."""
    if backing is None:
        return None
    return {"name": backing["name"], "type": CONTYPE_NAMES.get(backing["kind"], backing["kind"]),
            "deferrable": backing["deferrable"], "initially_deferred": backing["initially_deferred"],
            "definition": backing["definition"]}
