"""What pg_index_preflight says about a change's constraint (constraint, drop_constraint), before any DDL.

A change with a constraint gets one more check, ``constraint``: the statements apply will add to
the build, the nullable primary key columns and the safe path it takes for them, and what can and
cannot be known about duplicates without scanning the table. A drop with drop_constraint says which
foreign keys would block it through the index_exists check, as pg_index would refuse it.
Pure: the facts are constraint_catalog.read's.
"""

from __future__ import annotations

from ansible_collections.indexops.core.plugins.module_utils import constraints

CHECK = "constraint"

PLAN_SAYS = {
    constraints.ADDED: "unique index {index} already exists without the constraint; applying adds the constraint "
                       "to it (no rebuild)",
}
REFUSAL_SAYS = {
    constraints.CONSTRAINT_MISMATCH: "index {index} backs another constraint than the change wants: {what}",
    constraints.FOREIGN_KEYS: "{what} (drop those foreign keys first)",
    constraints.PRIMARY_KEY_EXISTS: "{what}",
    constraints.PARTITIONED_TABLE: "{what}",
}


def checks_for(change):
    """The extra checks of a change: ``constraint`` when its index has one."""
    index = change.get("index") if isinstance(change, dict) else None
    return (CHECK,) if isinstance(index, dict) and index.get("constraint") else ()


def constraint_detail(spec, found, index_exists):
    """(ok, detail) of the ``constraint`` check for a spec with a constraint."""
    wanted = constraints.describe_wanted(spec.constraint, spec.name)
    if found.table_relkind == "p":
        return False, (f"{spec.qualified_table} is a partitioned table; PostgreSQL does not support ADD CONSTRAINT "
                       "... USING INDEX on it")
    if found.backing and constraints.same_constraint(found.backing, spec.constraint, spec.name):
        return True, f"index {spec.schema}.{spec.name} already backs {wanted}; applying changes nothing"
    parts = [f"applying adds {wanted} with ALTER TABLE ... ADD CONSTRAINT ... USING INDEX (ACCESS EXCLUSIVE, "
             "catalog only, under lock_timeout)"]
    nullable = [column for column in constraints.key_columns(spec) if not found.not_null.get(column, False)]
    if spec.constraint.kind == "primary_key" and nullable:
        parts.append(f"column(s) {', '.join(nullable)} allow NULL: each is proven NOT NULL first without a scan "
                     "under ACCESS EXCLUSIVE (CHECK ... NOT VALID, VALIDATE CONSTRAINT, which scans the table under "
                     "SHARE UPDATE EXCLUSIVE, then SET NOT NULL and the check dropped); a NULL fails the validation "
                     "and the check is dropped again")
    if index_exists:
        parts.append("the unique index exists, so there are no duplicates")
    else:
        parts.append("duplicates cannot be checked without scanning the table; the concurrent build finds any, "
                     "and then drops its invalid index, changing nothing")
    return True, "; ".join(parts)
