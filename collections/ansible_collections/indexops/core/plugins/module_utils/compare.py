"""Compare index definitions by meaning.

Both sides are texts printed by the server's pg_get_indexdef: the existing index, and the spec
built on an empty temporary copy of the table (see Session.canonical_definition in session.py). The server has
already resolved letter case, implicit casts, default opclasses and redundant parentheses; what is
left is where the index lives, which is blanked here so only the definition itself is compared.
Tablespace is compared from the catalog, because pg_get_indexdef omits the default one.
"""

from __future__ import annotations

try:
    from pglast import ast, parse_sql
    from pglast.stream import RawStream
except ImportError:  # reported by the module through missing_required_lib
    pass


def parse_indexdef(text):
    statements = parse_sql(text)
    if len(statements) != 1 or not isinstance(statements[0].stmt, ast.IndexStmt):
        raise ValueError(f"not an index definition: {text!r}")
    return statements[0].stmt


def render(text, *, name, schema, table, tablespace=None):
    """The definition as if it were index ``name`` on ``schema.table`` in ``tablespace``."""
    stmt = parse_indexdef(text)
    stmt.idxname = name
    stmt.relation = ast.RangeVar(schemaname=schema, relname=table, inh=True, relpersistence="p")
    stmt.tableSpace = tablespace
    # The server keeps WITH parameters in the order given; their order means nothing.
    if stmt.options:
        stmt.options = tuple(sorted(stmt.options, key=lambda option: option.defname))
    stmt.concurrent = False
    if not stmt.accessMethod:
        stmt.accessMethod = "btree"
    return RawStream()(stmt)


def same_definition(existing, wanted, *, name, schema, table):
    """True when the two pg_get_indexdef texts define the same index."""
    where = {"name": name, "schema": schema, "table": table}
    return render(existing, **where) == render(wanted, **where)
