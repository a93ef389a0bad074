"""Compare index definitions by meaning, and show them as the server writes them.

Both sides are texts printed by the server's pg_get_indexdef: the existing index, and the spec
built on an empty temporary copy of the table (see Session.canonical_definition in session.py). The server has
already resolved letter case, implicit casts, default opclasses and redundant parentheses; what is
left is where the index lives, which is blanked here so only the definition itself is compared.
Tablespace is compared from the catalog, because pg_get_indexdef omits the default one.

What people read (--diff, the mismatch message) is ``display``: pg_get_indexdef's own text, with the
real index and table names put in, the form the report, psql's \\d and pg_get_indexdef show. pglast's
reprint (``render``) is only for comparing: it spells casts and ANY differently.
"""

from __future__ import annotations

import re

try:
    from pglast import ast, keywords, parse_sql
    from pglast.parser import scan
    from pglast.stream import RawStream
except ImportError:  # reported by the module through missing_required_lib
    pass

PLAIN_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


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


def quote_identifier(name):
    """An identifier as PostgreSQL's quote_identifier writes it: bare when it may be, else in quotes."""
    quoted = keywords.RESERVED_KEYWORDS | keywords.COL_NAME_KEYWORDS | keywords.TYPE_FUNC_NAME_KEYWORDS
    if PLAIN_IDENTIFIER.fullmatch(name) and name not in quoted:
        return name
    return '"' + name.replace('"', '""') + '"'


def display(text, *, name, schema, table, tablespace=None):
    """pg_get_indexdef's ``text`` as index ``name`` on ``schema.table`` (in ``tablespace``, which
    pg_get_indexdef leaves out): the server's own spelling for people to read and copy. Display only,
    never executed; the tokens come from PostgreSQL's own scanner, so a name or literal that looks like
    a keyword is not mistaken for one."""
    tokens = list(scan(text))
    words = [token.name for token in tokens]
    at_index, at_on = words.index("INDEX"), words.index("ON")
    at_using = words.index("USING", at_on)
    relation_start = tokens[at_on + 1 + (words[at_on + 1] == "ONLY")].start
    shown = (text[:tokens[at_index + 1].start] + quote_identifier(name) + text[tokens[at_on - 1].end + 1:relation_start]
             + f"{quote_identifier(schema)}.{quote_identifier(table)}" + text[tokens[at_using - 1].end + 1:])
    if not tablespace:
        return shown
    clause = f" TABLESPACE {quote_identifier(tablespace)}"
    where = next((token for token in scan(shown) if token.name == "WHERE"), None)
    if where is None:
        return shown + clause
    return shown[:where.start - 1] + clause + shown[where.start - 1:]
