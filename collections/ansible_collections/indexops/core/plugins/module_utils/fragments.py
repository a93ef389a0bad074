"""SQL fragments (index expressions and predicates) checked by PostgreSQL's own parser.

A fragment is accepted only when pglast parses it as exactly one scalar expression with no
sub-query, no parameter and no qualified or starred column. The SQL that runs is printed back
from the parse tree, so anything the parser did not see as part of that one expression (a second
statement, a comment hiding text) cannot reach the server.
"""

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.indexops.core.plugins.module_utils.errors import input_error

try:
    from pglast import ast, parse_sql, visitors
    from pglast.enums import SetOperation
    from pglast.parser import ParseError
    from pglast.stream import RawStream

    HAS_PGLAST = True
except ImportError:  # reported by the module through missing_required_lib
    HAS_PGLAST = False

# Node types that would let a fragment read other tables, take parameters or run a query.
FORBIDDEN_NODES = {
    "SubLink": "a sub-query",
    "SelectStmt": "a sub-query",
    "ParamRef": "a parameter placeholder",
    "A_Star": "a '*' column reference",
    "RangeVar": "a table reference",
}

# Clauses of the wrapping SELECT that must stay empty: only the target expression may be present.
SELECT_CLAUSES = (
    "distinctClause", "intoClause", "fromClause", "whereClause", "groupClause", "havingClause",
    "windowClause", "valuesLists", "sortClause", "limitOffset", "limitCount", "lockingClause",
    "withClause", "larg", "rarg",
)


@dataclass(frozen=True)
class Fragment:
    """A parsed expression: the SQL printed from its parse tree and the columns it reads."""

    sql: str
    columns: tuple


def parse_fragment(text, what):
    """Parse one scalar expression; ``what`` names the option in error messages."""
    expected = "exactly one SQL expression over the table's own columns, e.g. lower(email) or status = 'open'"
    if not isinstance(text, str) or not text.strip():
        raise input_error(f"{what} is empty", expected)
    try:
        statements = parse_sql("SELECT " + text)
    except ParseError as exc:
        raise input_error(f"{what} {text!r} is not valid SQL ({exc})", expected) from None
    target = _single_target(statements, text, what, expected)
    columns = _check_nodes(target, text, what, expected)
    return Fragment(sql=RawStream()(target), columns=tuple(sorted(columns)))


def _single_target(statements, text, what, expected):
    if len(statements) != 1:
        raise input_error(f"{what} {text!r} holds {len(statements)} statements", expected)
    select = statements[0].stmt
    if not isinstance(select, ast.SelectStmt):
        raise input_error(f"{what} {text!r} is not an expression", expected)
    extra = [clause for clause in SELECT_CLAUSES if getattr(select, clause, None)]
    if extra or select.op != SetOperation.SETOP_NONE:
        raise input_error(f"{what} {text!r} is more than one expression", expected)
    targets = select.targetList or ()
    if len(targets) != 1 or targets[0].name:
        raise input_error(f"{what} {text!r} must be a single expression without an alias", expected)
    return targets[0].val


def _check_nodes(node, text, what, expected):
    found = set()
    problems = []

    class Walker(visitors.Visitor):
        def visit(self, ancestors, node):
            kind = type(node).__name__
            if kind in FORBIDDEN_NODES:
                problems.append(FORBIDDEN_NODES[kind])
            if kind == "ColumnRef":
                fields = node.fields or ()
                if any(isinstance(item, ast.A_Star) for item in fields):
                    problems.append(FORBIDDEN_NODES["A_Star"])
                elif len(fields) != 1 or not isinstance(fields[0], ast.String):
                    problems.append("a qualified column name (write the bare column)")
                else:
                    found.add(fields[0].sval)

    Walker()(node)
    if problems:
        raise input_error(f"{what} {text!r} contains {problems[0]}", expected)
    return found


def print_node(node):
    """SQL text printed from a parse-tree node."""
    return RawStream()(node)


def index_statement(text):
    """Parse exactly one CREATE INDEX statement; anything else is refused."""
    expected = "one CREATE INDEX statement, as pg_get_indexdef prints it"
    try:
        statements = parse_sql(text)
    except ParseError as exc:
        raise input_error(f"definition is not valid SQL ({exc})", expected) from None
    # A second statement may only be the ALTER TABLE ... ADD CONSTRAINT ... USING INDEX the ledger records
    # after an index that backs a constraint (constraint_spec.definition_constraint checks what it says).
    constraint = len(statements) == 2 and isinstance(statements[1].stmt, ast.AlterTableStmt)
    if len(statements) != 1 + constraint or not isinstance(statements[0].stmt, ast.IndexStmt):
        raise input_error(f"definition {text!r} is not a single CREATE INDEX statement", expected)
    stmt = statements[0].stmt
    if any(getattr(elem, "opclassopts", None) for elem in stmt.indexParams):
        raise input_error("definition uses operator class parameters, which pg_index does not support",
                          "operator classes without parameters")
    return stmt


def constraint_statement(text):
    """The ALTER TABLE after the CREATE INDEX of a definition that index_statement accepted, or None."""
    statements = parse_sql(text)
    return statements[1].stmt if len(statements) == 2 else None


def select_statement(text, schema=None):
    """A read-only query for EXPLAIN: exactly one plain SELECT, printed back from its parse tree.

    With ``schema``, every unqualified table name (not a WITH query's name) is qualified with it, so
    the query runs under the pinned search_path (pg_catalog, pg_temp) and nothing in a schema other
    roles can write to is looked up for it: a function or operator planted there with a better match
    than pg_catalog's is never picked.
    """
    expected = "exactly one SELECT statement (no data-modifying WITH, no INTO, no locking clause)"
    if not isinstance(text, str) or not text.strip():
        raise input_error("query is empty", expected)
    try:
        statements = parse_sql(text)
    except ParseError as exc:
        raise input_error(f"query is not valid SQL ({exc})", expected) from None
    if len(statements) != 1 or not isinstance(statements[0].stmt, ast.SelectStmt):
        raise input_error(f"query {text!r} is not a single SELECT", expected)
    select = statements[0].stmt
    problems = []
    tables = []
    with_names = set()

    class Walker(visitors.Visitor):
        def visit(self, ancestors, node):
            kind = type(node).__name__
            if kind in ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "IntoClause", "LockingClause",
                        "ParamRef"):
                problems.append(kind)
            elif kind == "RangeVar" and not node.schemaname:
                tables.append(node)
            elif kind == "CommonTableExpr":
                with_names.add(node.ctename)

    Walker()(select)
    if problems:
        raise input_error(f"query {text!r} contains {problems[0]}", expected)
    if schema is not None:
        # A WITH query's name is never qualified; a table that shares it stays unqualified too and
        # then does not resolve (pg_catalog has no such table): an error, never a foreign object.
        for table in tables:
            if table.relname not in with_names:
                table.schemaname = schema
    return RawStream()(select)
