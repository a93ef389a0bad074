"""The index spec: options validated and normalised before any connection is used for DDL."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ansible_collections.indexops.core.plugins.module_utils.constraint_spec import (
    constraint_spec,
    definition_constraint,
)
from ansible_collections.indexops.core.plugins.module_utils.errors import input_error
from ansible_collections.indexops.core.plugins.module_utils.fragments import parse_fragment
from ansible_collections.indexops.core.plugins.module_utils.names import check_identifier, check_qualified_name

# What each access method supports (from pg_am's amcanunique, amcaninclude, amcanorder,
# amcanmulticol). Kept as data so a new method is one row, not a new branch.
METHODS = {
    "btree": {"unique": True, "include": True, "ordering": True, "multicolumn": True},
    "hash": {"unique": False, "include": False, "ordering": False, "multicolumn": False},
    "gist": {"unique": False, "include": True, "ordering": False, "multicolumn": True},
    "spgist": {"unique": False, "include": True, "ordering": False, "multicolumn": False},
    "gin": {"unique": False, "include": False, "ordering": False, "multicolumn": True},
    "brin": {"unique": False, "include": False, "ordering": False, "multicolumn": True},
}

# Characters that have no business in an index, table or column name handled by a runbook and
# that every injection attempt needs: quotes, statement separators, comment starters, controls.
STORAGE_PARAM_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
STORAGE_PARAM_VALUE = re.compile(r"^[A-Za-z0-9_.+-]+$")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*$")
DURATION_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, None: 1e-3}


@dataclass(frozen=True)
class Column:
    """One key column: a plain column or an expression, with its per-column options."""

    name: str | None = None
    expression: str | None = None  # printed from the parse tree, never the user's text
    opclass: tuple = ()
    collation: tuple = ()
    order: str | None = None
    nulls: str | None = None
    reads: tuple = ()  # table columns this key reads


@dataclass(frozen=True)
class IndexSpec:
    name: str
    schema: str
    table: str
    columns: tuple
    method: str = "btree"
    unique: bool = False
    nulls_not_distinct: bool = False
    include: tuple = ()
    where: str | None = None
    where_reads: tuple = ()
    storage: tuple = ()  # sorted (name, value-as-text) pairs
    tablespace: str | None = None
    referenced_columns: tuple = field(default=())
    constraint: object = None  # constraints.Constraint: a UNIQUE or PRIMARY KEY on top of the index

    @property
    def qualified_table(self):
        return f"{self.schema}.{self.table}"


def split_table(table, schema):
    """Resolve ``table`` ('orders' or 'sales.orders') and ``schema`` into (schema, table)."""
    if not table:
        raise input_error("table is missing", "table: the table the index is on, e.g. orders or sales.orders")
    parts = check_qualified_name(table, "table")
    if len(parts) == 2:
        if schema and schema != parts[0]:
            raise input_error(f"table {table!r} names schema {parts[0]!r} but schema is {schema!r}",
                              "the schema given once, either in table or in schema")
        return parts
    return check_identifier(schema or "public", "schema"), parts[0]


def duration_seconds(value, what):
    """PostgreSQL duration text ('1s', '500ms', '2min', or a bare number of milliseconds)."""
    match = DURATION.match(str(value)) if value is not None else None
    if not match:
        raise input_error(f"{what} {value!r} is not a duration", f"{what} like '500ms', '1s', '2min' or '1h'")
    return float(match.group(1)) * DURATION_UNITS_S[match.group(2)]


SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|TB)?\s*$", re.IGNORECASE)
SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


def size_bytes(text, what):
    """'500MB' -> bytes, with PostgreSQL's 1024-based units."""
    match = SIZE.match(str(text))
    if not match:
        raise input_error(f"{what} {text!r} is not a size", "a size like 500MB or 2GB")
    return int(float(match.group(1)) * SIZE_UNITS[(match.group(2) or "b").lower()])


def normalise_column(item, position):
    what = f"columns[{position}]"
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict):
        raise input_error(f"{what} is a {type(item).__name__}", "a column name or a mapping with name or expression")
    unknown = set(item) - {"name", "expression", "opclass", "collation", "order", "nulls"}
    if unknown:
        raise input_error(f"{what} has unknown keys {sorted(unknown)}",
                          "only name, expression, opclass, collation, order and nulls")
    has_name, has_expr = item.get("name") is not None, item.get("expression") is not None
    if has_name == has_expr:
        raise input_error(f"{what} must have exactly one of name and expression", "name: <column> or expression: <sql>")
    order = _choice(item.get("order"), ("asc", "desc"), f"{what}.order")
    nulls = _choice(item.get("nulls"), ("first", "last"), f"{what}.nulls")
    opclass = check_qualified_name(item["opclass"], f"{what}.opclass") if item.get("opclass") else ()
    collation = check_qualified_name(item["collation"], f"{what}.collation") if item.get("collation") else ()
    if has_name:
        name = check_identifier(item["name"], f"{what}.name")
        return Column(name=name, opclass=opclass, collation=collation, order=order, nulls=nulls, reads=(name,))
    fragment = parse_fragment(item["expression"], f"{what}.expression")
    return Column(expression=fragment.sql, opclass=opclass, collation=collation, order=order, nulls=nulls,
                  reads=fragment.columns)


def _choice(value, allowed, what):
    if value is None:
        return None
    lowered = str(value).lower()
    if lowered not in allowed:
        raise input_error(f"{what} is {value!r}", f"one of {', '.join(allowed)}")
    return lowered


def normalise_storage(storage):
    pairs = []
    for key, value in sorted((storage or {}).items()):
        if not STORAGE_PARAM_NAME.match(str(key)):
            raise input_error(f"storage parameter name {key!r} is not valid", "a lower-case name such as fillfactor")
        if value is None or value == "":
            raise input_error(f"storage parameter {key} has no value", "a number, on/off or a word")
        text = ("on" if value else "off") if isinstance(value, bool) else str(value)
        if not STORAGE_PARAM_VALUE.match(text):
            raise input_error(f"storage parameter {key}={value!r} is not a plain value", "a number, on/off or a word")
        pairs.append((key, text))
    return tuple(pairs)


def check_method_rules(method, unique, include, columns, nulls_not_distinct):
    """Reject combinations the access method cannot build, before the server has to."""
    caps = METHODS.get(method)
    if caps is None:
        raise input_error(f"method {method!r} is not supported", f"one of {', '.join(METHODS)}")
    if unique and not caps["unique"]:
        raise input_error(f"unique is true with method {method}", "unique only with method btree")
    if nulls_not_distinct and not unique:
        raise input_error("nulls_not_distinct is true without unique", "nulls_not_distinct only with unique: true")
    if include and not caps["include"]:
        raise input_error(f"include is set with method {method}", "include only with btree, gist or spgist")
    if len(columns) > 1 and not caps["multicolumn"]:
        raise input_error(f"method {method} was given {len(columns)} columns", f"exactly one column for {method}")
    if not caps["ordering"] and any(col.order or col.nulls for col in columns):
        raise input_error(f"order/nulls given with method {method}", "order and nulls only with btree")


def build_spec(params):
    """Validate the module's spec options and return an IndexSpec; raises IndexOpsError."""
    name = check_identifier(params.get("name"), "name")
    schema, table = split_table(params.get("table"), params.get("schema"))
    columns = tuple(normalise_column(item, pos) for pos, item in enumerate(params.get("columns") or ()))
    if not columns:
        raise input_error("columns is empty", "at least one column or expression")
    include = tuple(check_identifier(col, "include") for col in params.get("include") or ())
    method = (params.get("method") or "btree").lower()
    where = parse_fragment(params["where"], "where") if params.get("where") else None
    constraint = constraint_spec(params, columns, method, where)
    unique = bool(params.get("unique")) or constraint is not None  # a constraint's index is a unique one
    nulls_not_distinct = bool(params.get("nulls_not_distinct"))
    check_method_rules(method, unique, include, columns, nulls_not_distinct)
    tablespace = check_identifier(params["tablespace"], "tablespace") if params.get("tablespace") else None
    referenced = {c for col in columns for c in col.reads} | set(include) | set(where.columns if where else ())
    return IndexSpec(
        name=name, schema=schema, table=table, columns=columns, method=method, unique=unique,
        nulls_not_distinct=nulls_not_distinct, include=include, where=where.sql if where else None,
        where_reads=where.columns if where else (), storage=normalise_storage(params.get("storage")),
        tablespace=tablespace, referenced_columns=tuple(sorted(referenced)), constraint=constraint,
    )


def build_target(params):
    """For state absent/rebuilt only the name and where it lives matter."""
    name = check_identifier(params.get("name"), "name")
    schema, table = split_table(params["table"], params.get("schema")) if params.get("table") else (
        check_identifier(params.get("schema") or "public", "schema"), None)
    return name, schema, table


def params_from_definition(text):
    """Spec options from a CREATE INDEX statement such as pg_get_indexdef prints.

    Used to recreate a dropped index exactly from the definition the ledger recorded. The text is
    parsed by pglast and turned back into ordinary options, so it passes the same validation as a
    hand-written spec; nothing of the original text is executed. A definition the ledger kept of an
    index that backs a constraint has the ALTER TABLE ... ADD CONSTRAINT ... USING INDEX after it
    (constraints.recorded_definition), read back into the constraint options.
    """
    from ansible_collections.indexops.core.plugins.module_utils.fragments import index_statement, print_node

    stmt = index_statement(text)
    relation = stmt.relation
    table = f"{relation.schemaname}.{relation.relname}" if relation.schemaname else relation.relname
    return {
        "name": stmt.idxname,
        "table": table,
        "columns": [_column_params(elem, print_node) for elem in stmt.indexParams],
        "include": [elem.name for elem in stmt.indexIncludingParams or ()],
        "where": print_node(stmt.whereClause) if stmt.whereClause else None,
        "method": stmt.accessMethod or "btree",
        "unique": bool(stmt.unique),
        "nulls_not_distinct": bool(stmt.nulls_not_distinct),
        "storage": {opt.defname: print_node(opt.arg).strip("'") for opt in stmt.options or ()},
        "tablespace": stmt.tableSpace,
        **definition_constraint(text, stmt),
    }


SORT_ORDER = {0: None, 1: "asc", 2: "desc"}
NULLS_ORDER = {0: None, 1: "first", 2: "last"}


def _column_params(elem, print_node):
    column = {"name": elem.name} if elem.name else {"expression": print_node(elem.expr)}
    if elem.opclass:
        column["opclass"] = ".".join(part.sval for part in elem.opclass)
    if elem.collation:
        column["collation"] = ".".join(part.sval for part in elem.collation)
    order, nulls = SORT_ORDER[int(elem.ordering)], NULLS_ORDER[int(elem.nulls_ordering)]
    if order:
        column["order"] = order
    if nulls:
        column["nulls"] = nulls
    return column
