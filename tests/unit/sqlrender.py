"""Render psycopg2.sql compositions to text without a database connection (tests only).

psycopg2 needs a connection to call ``as_string``; these tests must not. The rules below are the
ones libpq applies with standard_conforming_strings on (the default since PostgreSQL 9.1):

- ``Identifier``: every part double-quoted, inner double quotes doubled, parts joined by '.'
  (PQescapeIdentifier);
- ``Literal`` (text): single-quoted, inner single quotes doubled;
- ``SQL``: the text as is; ``Composed``: its parts concatenated.
"""

from __future__ import annotations

from psycopg2 import sql


def quote_ident(part):
    return '"' + part.replace('"', '""') + '"'


def quote_literal(value):
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"test renderer only handles text and numbers, not {value!r}")
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def render(node):
    if isinstance(node, sql.Composed):
        return "".join(render(part) for part in node.seq)
    if isinstance(node, sql.Identifier):
        return ".".join(quote_ident(part) for part in node.strings)
    if isinstance(node, sql.Literal):
        return quote_literal(node.wrapped)
    if isinstance(node, sql.SQL):
        return node.string
    raise TypeError(f"unexpected psycopg2.sql node {node!r}")
