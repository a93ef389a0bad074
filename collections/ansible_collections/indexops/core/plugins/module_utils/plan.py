"""What one pg_index run does, decided from facts already read: a Plan of steps, or a Refusal.

Pure: no database, no clock. session.py reads the facts (the table, the existing index, the
sessions building it, leftovers), index_job.py carries the plan out (steps.py runs each step), and
preflight.py describes the same plan in its checks. Each state (present, absent, rebuilt) has one
function here, unit-tested from the table of cases in tests/unit/test_plan.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.indexops.core.plugins.module_utils import compare, partitions, sqlcompose
from ansible_collections.indexops.core.plugins.module_utils.errors import FIX_INPUT, IndexOpsError, input_error
from ansible_collections.indexops.core.plugins.module_utils.names import replacement_name
from ansible_collections.indexops.core.plugins.module_utils.progress import percent_done
from ansible_collections.indexops.core.plugins.module_utils.refusal_codes import (  # plan.<CODE> for callers
    BEING_BUILT,
    CONSTRAINT,
    INVALID,
    MISMATCH,
    MISSING,
    REPLACE_PARTITIONED,
)


@dataclass
class Step:
    """One DDL statement of a plan; ``cleanup`` names the invalid index a failure would leave.

    ``watched`` steps (the CONCURRENTLY forms) run with the server's lock_timeout off and their
    waits judged by plugins/module_utils/waits.py; ``drops`` names the index a drop step removes.
    A step on one partition of a partitioned table names where it works (``schema``, ``table_oid``:
    the partition's, for cleanup and for naming blockers) and, on a leaf, ``partition``: (k, of, name).
    """

    statement: object
    cleanup: str | None = None
    cleanup_cc_of: str | None = None
    watched: bool = False
    drops: str | None = None
    schema: str | None = None
    table_oid: int | None = None
    partition: tuple | None = None
    text: str = ""  # the statement as it runs, rendered while the session was alive


@dataclass
class Plan:
    action: str
    steps: list = field(default_factory=list)
    before: str = ""  # rendered for the diff
    after: str = ""
    definition_before: str = ""  # pg_get_indexdef before the change, kept in the ledger
    partitions: list = field(default_factory=list)  # on a partitioned table: what each partition gets


@dataclass(frozen=True)
class Refusal:
    """No plan: ``code`` says why (the constants above), ``error`` says it to the operator."""

    code: str
    error: IndexOpsError


@dataclass
class Index:
    """An existing index as inspection read it: catalog.relation's row and who is building it."""

    row: dict
    builds: list = field(default_factory=list)  # catalog.builds_of: sessions building it now


@dataclass
class PresentFacts:
    """What state: present decides from. ``wanted`` is the spec as the server renders it."""

    spec: object
    wanted: str
    table_oid: int
    default_tablespace: str | None = None
    existing: Index | None = None
    replacement: Index | None = None  # a leftover <name>_indexops_new of an earlier replace
    partitioned: partitions.PartitionedFacts | None = None  # the partition tree, on a partitioned table


@dataclass
class ExistingFacts:
    """What state: absent and state: rebuilt decide from."""

    schema: str
    name: str
    existing: Index | None = None
    leftovers: list = field(default_factory=list)  # Index of REINDEX CONCURRENTLY leftovers (rebuilt)
    partitioned: partitions.PartitionedFacts | None = None  # the partition tree of a partitioned index's table
    partition_leftovers: dict = field(default_factory=dict)  # leaf index name: its REINDEX leftovers (rebuilt)


def describe_build(row):
    return (f"pid {row['pid']} ({row.get('application_name') or 'unknown client'}) is running {row['command']}, "
            f"phase '{row['phase']}', {percent_done(row)}% done")


# --------------------------------------------------------------------------- steps

def create_step(spec, safety, name=None):
    name = name or spec.name
    return Step(sqlcompose.create_index(spec, name=name, concurrently=safety.concurrently), cleanup=name,
                watched=safety.concurrently)


def drop_step(schema, name, safety):
    return Step(sqlcompose.drop_index(schema, name, concurrently=safety.concurrently),
                watched=safety.concurrently, drops=name)


def analyze_steps(spec, safety):
    return [Step(sqlcompose.analyze_table(spec.schema, spec.table))] if safety.analyze else []


# --------------------------------------------------------------------------- refusals

def being_built(index, safety):
    row, build = index.row, index.builds[0]
    after = " after waiting wait_timeout" if safety.wait else ""
    return Refusal(BEING_BUILT, IndexOpsError(
        f"index {row['schema']}.{row['name']} is being built by another session{after}: {describe_build(build)}",
        expected="no other session building this index",
        hint="Nothing was changed. Rerun with wait: true, or after that build ends.",
        retry_safe=True, build=build))


def constraint_backed(row, verb):
    return Refusal(CONSTRAINT, IndexOpsError(
        f"index {row['schema']}.{row['name']} backs constraint {row['constraints']}, so pg_index will not {verb} it",
        expected="an index that no PRIMARY KEY, UNIQUE or EXCLUDE constraint uses (change the constraint instead)",
        hint=FIX_INPUT, constraints=row["constraints"]))


def partitioned_refusal(refused):
    code, error = refused
    return Refusal(code, error)


# --------------------------------------------------------------------------- the three states

def matches(facts, row):
    """The existing index is the wanted one: same table, tablespace and definition."""
    spec = facts.spec
    wanted_space = spec.tablespace or facts.default_tablespace
    actual_space = row["tablespace"] or facts.default_tablespace
    return (row["table_oid"] == facts.table_oid and wanted_space == actual_space
            and compare.same_definition(row["definition"], facts.wanted, name=spec.name, schema=spec.schema,
                                        table=spec.table))


def plan_present(facts, safety):
    if facts.partitioned is not None:
        return plan_present_partitioned(facts, safety)
    spec = facts.spec
    where = {"name": spec.name, "schema": spec.schema, "table": spec.table}
    after = compare.display(facts.wanted, **where, tablespace=spec.tablespace)
    create = create_step(spec, safety)
    if facts.existing is None:
        return Plan("created", [create, *analyze_steps(spec, safety)], "", after)
    row = facts.existing.row
    before = compare.display(row["definition"], **where, tablespace=row["tablespace"])
    if not (row["valid"] and row["ready"]):
        if facts.existing.builds:
            return being_built(facts.existing, safety)
        if safety.on_invalid == "fail":
            return Refusal(INVALID, IndexOpsError(
                f"index {spec.schema}.{spec.name} exists but is INVALID (a failed or cancelled build) "
                "and on_invalid is fail",
                expected="a valid index, or on_invalid: rebuild to drop and build it again",
                hint="Nothing was changed. Rerun with on_invalid: rebuild, or drop it with state: absent."))
        steps = [drop_step(spec.schema, spec.name, safety), create, *analyze_steps(spec, safety)]
        return Plan("repaired_invalid", steps, before, after, row["definition"])
    if matches(facts, row):
        return Plan("none", [], before, after, row["definition"])
    if safety.on_mismatch == "fail":
        return Refusal(MISMATCH, IndexOpsError(
            f"index {spec.schema}.{spec.name} exists with a different definition. Existing: {before}. Wanted: {after}",
            expected="the same definition, or on_mismatch: replace to rebuild it concurrently",
            hint="Nothing was changed. Fix the spec, or rerun with on_mismatch: replace.", before=before, after=after))
    if row.get("constraints"):
        return constraint_backed(row, "replace")
    return replace_plan(facts, safety, before, after, row["definition"])


def plan_present_partitioned(facts, safety):
    """A partitioned table: ON ONLY, a concurrent build per partition, ATTACH (partitions.py)."""
    spec = facts.spec
    where = {"name": spec.name, "schema": spec.schema, "table": spec.table}
    after = compare.display(facts.wanted, **where, tablespace=spec.tablespace)
    row = facts.existing.row if facts.existing else None
    before = compare.display(row["definition"], **where, tablespace=row["tablespace"]) if row else ""
    if row is not None and not matches(facts, row):
        if safety.on_mismatch == "fail":
            return Refusal(MISMATCH, IndexOpsError(
                f"index {spec.schema}.{spec.name} exists with a different definition. Existing: {before}. "
                f"Wanted: {after}",
                expected="the same definition, or on_mismatch: replace",
                hint="Nothing was changed. Fix the spec.", before=before, after=after))
        return Refusal(REPLACE_PARTITIONED, IndexOpsError(
            f"index {spec.schema}.{spec.name} is a partitioned index with a different definition, and pg_index "
            "does not replace a partitioned index in place",
            expected="a new index under another name (then drop this one), or state: absent first",
            hint="Nothing was changed. Create the wanted index under a new name, then drop the old one.",
            before=before, after=after))
    if row is not None and row["valid"]:
        return Plan("none", [], before, after, row["definition"])
    steps, parts, refused = partitions.tree_steps(facts, safety, Step)
    if refused is not None:
        return partitioned_refusal(refused)
    return Plan("created", [*steps, *analyze_steps(spec, safety)], before, after, row["definition"] if row else "",
                partitions=parts)


def replace_plan(facts, safety, before, after, definition):
    """Build the replacement under a temporary name, drop the old index, rename the new one."""
    spec = facts.spec
    temp = replacement_name(spec.name)
    steps = []
    if facts.replacement is not None:
        if facts.replacement.builds:
            return being_built(facts.replacement, safety)
        steps.append(drop_step(spec.schema, temp, safety))
    steps += [create_step(spec, safety, temp), drop_step(spec.schema, spec.name, safety),
              Step(sqlcompose.rename_index(spec.schema, temp, spec.name)), *analyze_steps(spec, safety)]
    return Plan("replaced", steps, before, after, definition)


def plan_absent(facts, safety):
    if facts.existing is None:
        return Plan("none")
    row = facts.existing.row
    if facts.existing.builds:
        return being_built(facts.existing, safety)
    if row.get("constraints"):
        return constraint_backed(row, "drop")
    before = compare.display(row["definition"], name=facts.name, schema=facts.schema, table=row["table"])
    if row["relkind"] == "I":
        # PostgreSQL cannot drop a partitioned index CONCURRENTLY: a plain DROP under lock_timeout, with
        # retries. It takes ACCESS EXCLUSIVE on the table and its partitions, but scans nothing.
        step = Step(sqlcompose.drop_index(facts.schema, facts.name, concurrently=False), drops=facts.name)
        return Plan("dropped", [step], before, "", row["definition"])
    return Plan("dropped", [drop_step(facts.schema, facts.name, safety)], before, "", row["definition"])


def plan_rebuilt(facts, safety):
    if facts.existing is None:
        return Refusal(MISSING, input_error(
            f"index {facts.schema}.{facts.name} does not exist, so it cannot be rebuilt",
            "an existing index; use state: present to create it"))
    row = facts.existing.row
    if facts.existing.builds:
        return being_built(facts.existing, safety)
    definition = compare.display(row["definition"], name=facts.name, schema=facts.schema, table=row["table"])
    if row["relkind"] == "I":
        steps, parts = partition_reindex_steps(facts, safety)
        return Plan("rebuilt", steps, definition, definition, row["definition"], partitions=parts)
    steps = reindex_steps(facts.schema, facts.name, facts.leftovers, safety)
    return Plan("rebuilt", steps, definition, definition, row["definition"])


def reindex_steps(index_schema, name, leftovers, safety, **where):
    """Drop the REINDEX leftovers nobody is using, then REINDEX CONCURRENTLY. A leftover another
    REINDEX is using is never dropped: never drop what someone is building."""
    steps = [Step(sqlcompose.drop_index(index_schema, leftover.row["name"], concurrently=safety.concurrently),
                  watched=safety.concurrently, drops=leftover.row["name"], **where)
             for leftover in leftovers if not leftover.builds]
    steps.append(Step(sqlcompose.reindex_index(index_schema, name, concurrently=safety.concurrently),
                      cleanup_cc_of=name, watched=safety.concurrently, **where))
    return steps


def partition_reindex_steps(facts, safety):
    """REINDEX INDEX CONCURRENTLY of each leaf's index under the partitioned index, one at a time."""
    leaves = partitions.attached_leaves(facts.partitioned, facts.existing.row["oid"])
    steps, parts = [], []
    for number, (part, index) in enumerate(leaves, start=1):
        where = {"schema": part.row["schema"], "table_oid": part.row["oid"], "partition": (number, len(leaves),
                                                                                            part.label)}
        steps += reindex_steps(part.row["schema"], index.row["name"],
                               facts.partition_leftovers.get(index.row["name"], []), safety, **where)
        parts.append({"partition": part.label, "index": index.row["name"], "action": "rebuilt concurrently",
                      "leaf": True})
    return steps, parts
