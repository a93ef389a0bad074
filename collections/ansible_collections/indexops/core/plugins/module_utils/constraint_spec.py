"""The constraint options of an index spec (constraint, deferrable, initially_deferred), validated.

Plain Python without psycopg2, like spec.py, so that change files are checked where only the
parser is installed. What runs for a constraint is constraints.py's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.indexops.core.plugins.module_utils.errors import input_error
from ansible_collections.indexops.core.plugins.module_utils.names import NAMEDATALEN

# The constraint kinds pg_index builds, as the option spells them, pg_constraint.contype and SQL.
KINDS = {"unique": {"contype": "u", "sql": "UNIQUE"}, "primary_key": {"contype": "p", "sql": "PRIMARY KEY"}}
CHECK_SUFFIX = "_indexops_nn"
# pglast's ConstrType names of the kinds above.
CONTYPES = {"CONSTR_PRIMARY": "primary_key", "CONSTR_UNIQUE": "unique"}


@dataclass(frozen=True)
class Constraint:
    """The wanted constraint: ``kind`` is a key of KINDS; its name is always the index's."""

    kind: str
    deferrable: bool = False
    initially_deferred: bool = False


# --------------------------------------------------------------------------- the spec

def constraint_spec(params, columns, method, where):
    """The ``constraint`` options validated against the index they need; None without a constraint."""
    kind = params.get("constraint")
    deferrable, initially_deferred = bool(params.get("deferrable")), bool(params.get("initially_deferred"))
    if kind is None:
        if deferrable or initially_deferred:
            raise input_error("deferrable or initially_deferred is set without constraint",
                              "constraint: unique or primary_key with them")
        return None
    if kind not in KINDS:
        raise input_error(f"constraint is {kind!r}", f"one of {', '.join(KINDS)}")
    if initially_deferred and not deferrable:
        raise input_error("initially_deferred is true but deferrable is not", "deferrable: true with it")
    # ADD CONSTRAINT ... USING INDEX takes only a plain, whole-table btree index in default order.
    unfit = [why for why, bad in (
        (f"method {method}", method != "btree"),
        ("a where predicate", where is not None),
        ("expression columns", any(col.expression for col in columns)),
        ("order or nulls on a column", any(col.order or col.nulls for col in columns)),
    ) if bad]
    if unfit:
        raise input_error(f"constraint {kind} was given an index with {', '.join(unfit)}",
                          "a btree index on plain columns in default order, without where, for a constraint "
                          "(PostgreSQL's ADD CONSTRAINT ... USING INDEX takes no other)")
    checks = [check_name(col.name) for col in columns]
    if len(set(checks)) < len(checks):  # two long names that share their first 51 bytes
        raise input_error("two key columns share the first bytes that name their temporary NOT NULL checks "
                          f"({CHECK_SUFFIX})", "key column names that differ within their first "
                          f"{NAMEDATALEN - len(CHECK_SUFFIX)} bytes, for a constraint")
    return Constraint(kind, deferrable, initially_deferred)


def check_name(column):
    """The name of the temporary NOT NULL check on ``column``, cut to fit in 63 bytes."""
    room = NAMEDATALEN - len(CHECK_SUFFIX)
    return column.encode("utf-8")[:room].decode("utf-8", "ignore") + CHECK_SUFFIX


def definition_constraint(text, index):
    """The constraint options of a recorded definition: {} for a lone CREATE INDEX, else those of its
    ``ALTER TABLE <its table> ADD CONSTRAINT <its name> UNIQUE | PRIMARY KEY USING INDEX <its name>``.

    ``index`` is the CREATE INDEX statement's parse tree; fragments.index_statement already refused
    any other second statement.
    """
    from ansible_collections.indexops.core.plugins.module_utils.fragments import constraint_statement

    alter = constraint_statement(text)
    if alter is None:
        return {}
    expected = ("after the CREATE INDEX, ALTER TABLE <its table> ADD CONSTRAINT <its name> UNIQUE or PRIMARY KEY "
                "USING INDEX <its name>, as the ledger records it")
    commands = alter.cmds or ()
    constraint = getattr(commands[0], "def_", None) if len(commands) == 1 else None
    kind = CONTYPES.get(getattr(getattr(constraint, "contype", None), "name", None))
    same_table = (alter.relation.relname, alter.relation.schemaname) == (index.relation.relname,
                                                                         index.relation.schemaname)
    if kind is None or not same_table or not (constraint.conname == constraint.indexname == index.idxname):
        raise input_error("definition has a second statement that is not the index's own constraint", expected)
    return {"constraint": kind, "deferrable": bool(constraint.deferrable),
            "initially_deferred": bool(constraint.initdeferred)}
