"""Every statement indexops runs, composed with psycopg2.sql.

Identifiers go through sql.Identifier, values through sql.Literal, and expression fragments are
the text printed from pglast's parse tree (see fragments.py); nothing here formats SQL text.
"""

from __future__ import annotations

from psycopg2 import sql

ORDER_SQL = {"asc": sql.SQL(" ASC"), "desc": sql.SQL(" DESC"), None: sql.SQL("")}
NULLS_SQL = {"first": sql.SQL(" NULLS FIRST"), "last": sql.SQL(" NULLS LAST"), None: sql.SQL("")}


def qualified(*parts):
    return sql.SQL(".").join(sql.Identifier(part) for part in parts)


def column_sql(column):
    key = sql.Identifier(column.name) if column.name else sql.SQL("({})").format(sql.SQL(column.expression))
    pieces = [key]
    if column.collation:
        pieces.append(sql.SQL(" COLLATE {}").format(qualified(*column.collation)))
    if column.opclass:
        pieces.append(sql.SQL(" {}").format(qualified(*column.opclass)))
    pieces.append(ORDER_SQL[column.order])
    pieces.append(NULLS_SQL[column.nulls])
    return sql.Composed(pieces)


def create_index(spec, *, name=None, relation=None, concurrently=True, tablespace=True, only=False):
    """CREATE INDEX for ``spec``; ``name``/``relation`` override where it is built (temp names, shadows,
    partitions); ``only`` builds it ON ONLY a partitioned table (catalog only, invalid until its
    partitions' indexes are attached)."""
    relation = relation or (spec.schema, spec.table)
    parts = [
        sql.SQL("CREATE UNIQUE INDEX" if spec.unique else "CREATE INDEX"),
        sql.SQL(" CONCURRENTLY") if concurrently else sql.SQL(""),
        sql.SQL(" {} ON {}{} USING {} ").format(
            sql.Identifier(name or spec.name), sql.SQL("ONLY ") if only else sql.SQL(""), qualified(*relation),
            sql.Identifier(spec.method)),
        sql.SQL("({})").format(sql.SQL(", ").join(column_sql(col) for col in spec.columns)),
    ]
    if spec.include:
        parts.append(sql.SQL(" INCLUDE ({})").format(sql.SQL(", ").join(map(sql.Identifier, spec.include))))
    if spec.nulls_not_distinct:
        parts.append(sql.SQL(" NULLS NOT DISTINCT"))
    if spec.storage:
        parts.append(sql.SQL(" WITH ({})").format(sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(key), sql.Literal(value)) for key, value in spec.storage)))
    if tablespace and spec.tablespace:
        parts.append(sql.SQL(" TABLESPACE {}").format(sql.Identifier(spec.tablespace)))
    if spec.where:
        parts.append(sql.SQL(" WHERE ({})").format(sql.SQL(spec.where)))
    return sql.Composed(parts)


def drop_index(schema, name, *, concurrently=True):
    keyword = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}") if concurrently else sql.SQL("DROP INDEX IF EXISTS {}")
    return keyword.format(qualified(schema, name))


def reindex_index(schema, name, *, concurrently=True):
    keyword = sql.SQL("REINDEX INDEX CONCURRENTLY {}") if concurrently else sql.SQL("REINDEX INDEX {}")
    return keyword.format(qualified(schema, name))


def rename_index(schema, name, new_name):
    return sql.SQL("ALTER INDEX {} RENAME TO {}").format(qualified(schema, name), sql.Identifier(new_name))


def attach_partition_index(schema, name, partition_schema, partition_index):
    return sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(qualified(schema, name),
                                                               qualified(partition_schema, partition_index))


def analyze_table(schema, table):
    return sql.SQL("ANALYZE {}").format(qualified(schema, table))


def shadow_table(schema, table, shadow):
    """An empty temporary copy of the table's columns, dropped with the transaction."""
    return sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP").format(
        qualified("pg_temp", shadow), qualified(schema, table))


def explain_json(select_text):
    """EXPLAIN of a query that fragments.select_statement printed from its parse tree."""
    return sql.SQL("EXPLAIN (FORMAT JSON) {}").format(sql.SQL(select_text))


SET_CONFIG = sql.SQL("SELECT set_config(%s, %s, false)")
