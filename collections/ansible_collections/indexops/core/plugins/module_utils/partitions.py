"""The plan for an index on a partitioned table, decided from facts already read (pure, like plan.py).

PostgreSQL cannot build an index CONCURRENTLY on a partitioned table, so indexops builds it the way
that blocks no writes anywhere:

1. ``CREATE INDEX <name> ON ONLY <table>``: an invalid partitioned index, catalog only;
2. for each leaf partition, ``CREATE INDEX CONCURRENTLY`` of the same definition under
   names.partition_index_name(<name>, <partition>), with the retries, waits and cleanup of a plain build;
3. ``ALTER INDEX <name> ATTACH PARTITION <partition index>`` for each; a sub-partitioned partition gets
   its own ``ON ONLY`` index, its partitions are attached to that, and it is attached level by level.

When the last partition is attached PostgreSQL marks the index valid. Each step is planned from what
the catalog shows, so a rerun after an interruption at any step attaches what is already built,
builds only what is missing and never builds a partition twice. A partition that already has a valid
index with the same definition, attached to nothing, is attached instead of built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.indexops.core.plugins.module_utils import compare, sqlcompose
from ansible_collections.indexops.core.plugins.module_utils.errors import FIX_INPUT, IndexOpsError, input_error
from ansible_collections.indexops.core.plugins.module_utils.names import partition_index_name
from ansible_collections.indexops.core.plugins.module_utils.refusal_codes import (  # partitions.<CODE> too
    BEING_BUILT,
    INVALID,
    PARTITION_ATTACHED_INVALID,
    PARTITION_FOREIGN,
    PARTITION_KEY,
    PARTITION_NAME,
    PARTITION_OWNER,
)


@dataclass
class Partition:
    """One partition below the table: catalog.partitions' row, its indexes (plan.Index), its key."""

    row: dict
    indexes: list = field(default_factory=list)
    key: list = field(default_factory=list)  # partition key columns when it is partitioned itself

    @property
    def label(self):
        return f"{self.row['schema']}.{self.row['table']}"


@dataclass
class PartitionedFacts:
    """The partition tree of a partitioned table, every level, in catalog order."""

    key: list  # the table's own partition key columns (None for an expression)
    partitions: list = field(default_factory=list)

    def children(self, parent_oid):
        return [part for part in self.partitions if part.row["parent_oid"] == parent_oid]

    @property
    def leaves(self):
        return [part for part in self.partitions if part.row["leaf"]]


# --------------------------------------------------------------------------- refusals before any DDL

def refusal_before_ddl(facts, table_label):
    """(code, error) for a partition the run must not or cannot index, or a UNIQUE index without the
    partition key; None when nothing is in the way."""
    tree = facts.partitioned
    for part in tree.partitions:
        if part.row["relkind"] == "f":
            return (PARTITION_FOREIGN, input_error(
                f"partition {part.label} of {table_label} is a foreign table, which PostgreSQL cannot index",
                "a partitioned table whose partitions are all local tables"))
        if not part.row["owned"]:
            return (PARTITION_OWNER, input_error(
                f"partition {part.label} of {table_label} is owned by role {part.row['owner']}, which the login "
                "role is not a member of: indexing it needs its owner's rights",
                "every partition owned by the login role or a role it is a member of"))
    if facts.spec.unique:
        columns = {column.name for column in facts.spec.columns if column.name}
        keyed = [(table_label, tree.key)] + [(part.label, part.key) for part in tree.partitions if not part.row["leaf"]]
        for label, key in keyed:
            missing = [name or "(an expression)" for name in key if name not in columns]
            if missing:
                return (PARTITION_KEY, input_error(
                    f"a UNIQUE index on partitioned table {label} must include its partition key, but columns "
                    f"leave out {', '.join(missing)}",
                    f"columns that include the partition key of {label} ({', '.join(map(str, key))}); PostgreSQL "
                    "can only check uniqueness inside one partition"))
    return None


# --------------------------------------------------------------------------- the plan

class TreePlanner:
    """Walks the partition tree once, level by level, collecting steps and what each partition gets."""

    def __init__(self, facts, safety, step_type):
        self.facts = facts
        self.safety = safety
        self.step = step_type
        self.steps = []
        self.parts = []  # per partition: what the run does there (the module returns this list)
        self.leaves = len(facts.partitioned.leaves)
        self.leaf_number = 0
        self.refusal = None

    def refuse(self, code, what, expected, hint=FIX_INPUT, **details):
        self.refusal = (code, IndexOpsError(what, expected=expected, hint=hint, **details))

    def same_meaning(self, row, part):
        spec = self.facts.spec
        wanted_space = spec.tablespace or self.facts.default_tablespace
        actual_space = row["tablespace"] or self.facts.default_tablespace
        return wanted_space == actual_space and compare.same_definition(
            row["definition"], self.facts.wanted, name=row["name"], schema=part.row["schema"], table=part.row["table"])

    def walk(self, parent_oid, level_index):
        """Plan every partition below ``parent_oid`` into ``level_index`` (schema, name, oid or None)."""
        for part in self.facts.partitioned.children(parent_oid):
            if self.refusal is not None:
                return
            self.plan_partition(part, level_index)

    def note(self, part, index_name, action, **extra):
        self.parts.append({"partition": part.label, "index": index_name, "action": action,
                           "leaf": part.row["leaf"], **extra})

    def partition_step(self, part, statement, **fields):
        number = (self.leaf_number, self.leaves, part.label) if part.row["leaf"] else None
        return self.step(statement, schema=part.row["schema"], table_oid=part.row["oid"], partition=number,
                         **fields)

    def attach(self, part, level_index, index_name):
        schema, name, _ = level_index
        self.steps.append(self.step(sqlcompose.attach_partition_index(schema, name, part.row["schema"], index_name),
                                    schema=part.row["schema"], table_oid=part.row["oid"]))

    def plan_partition(self, part, level_index):
        if part.row["leaf"]:
            self.leaf_number += 1
        ours = partition_index_name(self.facts.spec.name, part.row["table"])
        attached = next((index for index in part.indexes
                         if level_index[2] is not None and index.row["attached_to"] == level_index[2]), None)
        if attached is not None:
            return self.already_attached(part, attached)
        kind = "i" if part.row["leaf"] else "I"
        reusable = [index for index in part.indexes if index.row["relkind"] == kind and index.row["attached_to"] is None
                    and index.row["valid"] and index.row["ready"] and self.same_meaning(index.row, part)]
        reusable.sort(key=lambda index: index.row["name"] != ours)  # our own earlier build first
        self.note_foreign_leftovers(part, ours)
        if reusable:
            chosen = reusable[0].row["name"]
            self.note(part, chosen, "attached (built by an earlier run)" if chosen == ours else "reused (attached)")
            return self.attach(part, level_index, chosen)
        mine = next((index for index in part.indexes if index.row["name"] == ours), None)
        if mine is not None and not self.clear_the_name(part, mine, kind):
            return None
        if part.row["leaf"]:
            return self.build_leaf(part, level_index, ours)
        return self.build_level(part, level_index, ours, mine if mine is not None and kind == "I" else None)

    def already_attached(self, part, attached):
        if part.row["leaf"]:
            if not attached.row["valid"]:
                return self.refuse(
                    PARTITION_ATTACHED_INVALID,
                    f"index {attached.row['name']} of partition {part.label} is attached but INVALID",
                    "valid partition indexes under the partitioned index",
                    hint=f"Nothing was changed. Rebuild it (REINDEX INDEX CONCURRENTLY {part.row['schema']}."
                         f"{attached.row['name']}), then run again.")
            return self.note(part, attached.row["name"], "already attached")
        if attached.row["valid"]:
            return self.note(part, attached.row["name"], "already attached")
        # An unfinished level of an earlier run: finish its partitions; PostgreSQL validates it (and the
        # levels above) when the last one is attached.
        self.note(part, attached.row["name"], "already attached, its partitions finished below")
        return self.walk(part.row["oid"], (part.row["schema"], attached.row["name"], attached.row["oid"]))

    def note_foreign_leftovers(self, part, ours):
        for index in part.indexes:
            if index.row["name"] != ours and not index.row["valid"] and index.row["attached_to"] is None:
                self.parts.append({"partition": part.label, "index": index.row["name"], "leaf": part.row["leaf"],
                                   "action": "left alone: an INVALID index indexops did not make (the cleanup "
                                             "playbook lists it)"})

    def clear_the_name(self, part, mine, kind):
        """Our name on this partition is taken by an index we cannot attach: drop it when it is a
        failed build of ours (on_invalid: rebuild), else refuse; True when the plan goes on."""
        row = mine.row
        where = f"index {row['name']} on partition {part.label}"
        if mine.builds:
            build = mine.builds[0]
            self.refuse(BEING_BUILT, f"{where} is being built by another session: pid {build['pid']} "
                        f"({build.get('application_name') or 'unknown client'})",
                        "no other session building this index",
                        hint="Nothing was changed. Rerun after that build ends.", retry_safe=True)
            return False
        if row["relkind"] != kind or row["attached_to"] is not None or not self.same_meaning(row, part):
            self.refuse(PARTITION_NAME, f"{where} exists with another definition or is attached to another index, "
                        "so the partition's part of this index cannot get its name. Existing: "
                        f"{row['definition']}",
                        f"no index named {row['name']} on {part.label} other than this index's own part",
                        hint="Nothing was changed. Rename or drop that index, then run again.")
            return False
        if kind == "I":
            return True  # an unfinished level of ours: its partitions are finished below
        if self.safety.on_invalid == "fail":
            self.refuse(INVALID, f"{where} exists but is INVALID (a failed or cancelled build) and on_invalid is "
                        "fail", "a valid index, or on_invalid: rebuild to drop and build it again",
                        hint="Nothing was changed. Rerun with on_invalid: rebuild.")
            return False
        self.steps.append(self.partition_step(part, sqlcompose.drop_index(part.row["schema"], row["name"]),
                                              watched=True, drops=row["name"]))
        return True

    def build_leaf(self, part, level_index, name):
        relation = (part.row["schema"], part.row["table"])
        self.steps.append(self.partition_step(
            part, sqlcompose.create_index(self.facts.spec, name=name, relation=relation, concurrently=True),
            cleanup=name, watched=True))
        self.note(part, name, "built concurrently and attached")
        self.attach(part, level_index, name)

    def build_level(self, part, level_index, name, unfinished):
        """A sub-partitioned partition: its own ON ONLY index, its partitions attached to it, then it."""
        if unfinished is None:
            relation = (part.row["schema"], part.row["table"])
            self.steps.append(self.partition_step(
                part, sqlcompose.create_index(self.facts.spec, name=name, relation=relation, concurrently=False,
                                              only=True)))
        self.note(part, name, "created ON ONLY, its partitions attached, then attached")
        self.walk(part.row["oid"], (part.row["schema"], name, unfinished.row["oid"] if unfinished else None))
        self.attach(part, level_index, name)


def tree_steps(facts, safety, step_type):
    """(steps, per-partition notes, None) that build or finish the partitioned index, or
    (None, None, (code, error)) when a partition is in the way."""
    spec = facts.spec
    refused = refusal_before_ddl(facts, f"{spec.schema}.{spec.table}")
    if refused is not None:
        return None, None, refused
    planner = TreePlanner(facts, safety, step_type)
    existing = facts.existing
    if existing is None:
        planner.steps.append(step_type(sqlcompose.create_index(spec, concurrently=False, only=True)))
    planner.walk(facts.table_oid, (spec.schema, spec.name, existing.row["oid"] if existing else None))
    if planner.refusal is not None:
        return None, None, planner.refusal
    return planner.steps, planner.parts, None


def attached_leaves(tree, index_oid):
    """(partition, plan.Index) of every leaf index under partitioned index ``index_oid``, level by level."""
    found = []
    by_parent = {}
    for part in tree.partitions:
        for index in part.indexes:
            if index.row["attached_to"] is not None:
                by_parent.setdefault(index.row["attached_to"], []).append((part, index))
    pending = [index_oid]
    while pending:
        for part, index in by_parent.get(pending.pop(0), []):
            if part.row["leaf"]:
                found.append((part, index))
            else:
                pending.append(index.row["oid"])
    return found
