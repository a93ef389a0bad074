"""sqlcompose: exact statement text, and PostgreSQL's grammar reading it back as intended.

Statements are rendered without a database by tests/unit/sqlrender.py. Each rendered statement is
also parsed with pglast (PostgreSQL's own parser): it must be exactly one statement whose names are
the ones passed in, so a name holding a quote can never end its identifier early.
"""

from __future__ import annotations

import copy

import pytest
from pglast import ast, parse_sql
from pglast.enums import ObjectType, OnCommitAction, SortByDir, SortByNulls
from psycopg2 import sql

from ansible_collections.indexops.core.plugins.module_utils import sqlcompose
from ansible_collections.indexops.core.plugins.module_utils.fragments import select_statement
from ansible_collections.indexops.core.plugins.module_utils.spec import Column, IndexSpec, build_spec
from tests.unit.casefiles import cases
from tests.unit.sqlrender import quote_ident, quote_literal, render

CASES = "sqlcompose.yml"

ORDERING = {None: SortByDir.SORTBY_DEFAULT, "asc": SortByDir.SORTBY_ASC, "desc": SortByDir.SORTBY_DESC}
NULLS = {None: SortByNulls.SORTBY_NULLS_DEFAULT, "first": SortByNulls.SORTBY_NULLS_FIRST,
         "last": SortByNulls.SORTBY_NULLS_LAST}


def one_statement(text):
    statements = parse_sql(text)
    assert len(statements) == 1, f"{text!r} is {len(statements)} statements"
    return statements[0].stmt


def names(nodes):
    return tuple(node.sval for node in nodes or ())


def hostile_spec(data):
    data = copy.deepcopy(data)
    columns = tuple(
        Column(**{**col, "collation": tuple(col.get("collation", ())), "opclass": tuple(col.get("opclass", ()))})
        for col in data.pop("columns"))
    storage = tuple(tuple(pair) for pair in data.pop("storage", ()))
    return IndexSpec(columns=columns, storage=storage, include=tuple(data.pop("include", ())), **data)


def assert_parsed_create(text, spec, *, name, relation, concurrently, tablespace):
    """The statement PostgreSQL would read is the index the spec describes, nothing more."""
    stmt = one_statement(text)
    assert isinstance(stmt, ast.IndexStmt)
    assert stmt.idxname == name
    assert (stmt.relation.schemaname, stmt.relation.relname) == tuple(relation)
    assert bool(stmt.concurrent) is concurrently
    assert bool(stmt.unique) is spec.unique
    assert bool(stmt.nulls_not_distinct) is spec.nulls_not_distinct
    assert stmt.accessMethod == spec.method
    assert len(stmt.indexParams) == len(spec.columns)
    for elem, column in zip(stmt.indexParams, spec.columns, strict=True):
        if column.name:
            assert elem.name == column.name and elem.expr is None
        else:
            assert elem.name is None and elem.expr is not None
        assert names(elem.collation) == column.collation
        assert names(elem.opclass) == column.opclass
        assert elem.ordering == ORDERING[column.order]
        assert elem.nulls_ordering == NULLS[column.nulls]
    assert tuple(elem.name for elem in stmt.indexIncludingParams or ()) == spec.include
    assert tuple((opt.defname, opt.arg.sval) for opt in stmt.options or ()) == spec.storage
    assert stmt.tableSpace == (spec.tablespace if tablespace else None)
    assert (stmt.whereClause is not None) is (spec.where is not None)


# --------------------------------------------------------------------------- the test renderer


@pytest.mark.parametrize("name", ["plain", "Mixed Case", 'a"b', '"', '""', "x\"; DROP TABLE t; --", "é"])
def test_renderer_identifier_is_read_back_unchanged(name):
    """Sanity check of the test renderer against PostgreSQL's lexer."""
    stmt = one_statement(f"SELECT {quote_ident(name)}")
    assert names(stmt.targetList[0].val.fields) == (name,)


@pytest.mark.parametrize("value", ["on", "9'0", "'", "x'); DROP TABLE t; --"])
def test_renderer_literal_is_read_back_unchanged(value):
    stmt = one_statement(f"SELECT {quote_literal(value)}")
    assert stmt.targetList[0].val.val.sval == value


def test_renderer_refuses_unknown_nodes():
    with pytest.raises(TypeError):
        render(sql.Placeholder("x"))


# --------------------------------------------------------------------------- create_index


@pytest.mark.parametrize("case", cases(CASES, "create"))
def test_create_index_text(case):
    spec = build_spec(copy.deepcopy(case["params"]))
    statement = sqlcompose.create_index(spec, **case.get("kwargs", {}))
    assert isinstance(statement, sql.Composable)
    assert render(statement) == case["sql"]


@pytest.mark.parametrize("case", cases(CASES, "create"))
def test_create_index_parses_as_the_spec(case):
    spec = build_spec(copy.deepcopy(case["params"]))
    kwargs = case.get("kwargs", {})
    text = render(sqlcompose.create_index(spec, **kwargs))
    assert_parsed_create(
        text, spec,
        name=kwargs.get("name", spec.name),
        relation=kwargs.get("relation", (spec.schema, spec.table)),
        concurrently=kwargs.get("concurrently", True),
        tablespace=kwargs.get("tablespace", True),
    )


@pytest.mark.parametrize("case", cases(CASES, "hostile"))
def test_create_index_escapes_every_identifier(case):
    spec = hostile_spec(case["spec"])
    text = render(sqlcompose.create_index(spec))
    assert text == case["sql"]
    assert_parsed_create(text, spec, name=spec.name, relation=(spec.schema, spec.table), concurrently=True,
                         tablespace=True)


def test_create_index_where_is_the_parsed_predicate():
    spec = build_spec({"name": "ix", "table": "orders", "columns": ["email"], "where": "status IN ('open', 'held')"})
    stmt = one_statement(render(sqlcompose.create_index(spec)))
    where = stmt.whereClause
    assert isinstance(where, ast.A_Expr)
    assert names(where.lexpr.fields) == ("status",)
    assert [item.val.sval for item in where.rexpr] == ["open", "held"]


# --------------------------------------------------------------------------- other statements


def check_drop(stmt, args, kwargs):
    assert isinstance(stmt, ast.DropStmt)
    assert stmt.removeType == ObjectType.OBJECT_INDEX
    assert [names(obj) for obj in stmt.objects] == [tuple(args)]
    assert stmt.missing_ok is True  # a rerun after a drop is a no-op, not an error
    assert bool(stmt.concurrent) is kwargs.get("concurrently", True)


def check_reindex(stmt, args, kwargs):
    assert isinstance(stmt, ast.ReindexStmt)
    assert (stmt.relation.schemaname, stmt.relation.relname) == tuple(args)
    options = {param.defname for param in stmt.params or ()}
    assert ("concurrently" in options) is kwargs.get("concurrently", True)


def check_rename(stmt, args, kwargs):
    assert isinstance(stmt, ast.RenameStmt)
    assert stmt.renameType == ObjectType.OBJECT_INDEX
    assert (stmt.relation.schemaname, stmt.relation.relname) == tuple(args[:2])
    assert stmt.newname == args[2]


def check_analyze(stmt, args, kwargs):
    assert isinstance(stmt, ast.VacuumStmt)
    assert stmt.is_vacuumcmd is False  # ANALYZE only, never VACUUM
    assert [(rel.relation.schemaname, rel.relation.relname) for rel in stmt.rels] == [tuple(args)]


def check_shadow(stmt, args, kwargs):
    assert isinstance(stmt, ast.CreateStmt)
    assert stmt.relation.relpersistence == "t", "the shadow must be a temporary table"
    assert (stmt.relation.schemaname, stmt.relation.relname) == ("pg_temp", args[2])
    assert stmt.oncommit == OnCommitAction.ONCOMMIT_DROP
    (like,) = stmt.tableElts
    assert isinstance(like, ast.TableLikeClause)
    assert (like.relation.schemaname, like.relation.relname) == tuple(args[:2])


CHECKS = {
    "drop_index": check_drop,
    "reindex_index": check_reindex,
    "rename_index": check_rename,
    "analyze_table": check_analyze,
    "shadow_table": check_shadow,
}


@pytest.mark.parametrize("case", cases(CASES, "statements"))
def test_statement_text(case):
    statement = getattr(sqlcompose, case["func"])(*case["args"], **case.get("kwargs", {}))
    assert render(statement) == case["sql"]


@pytest.mark.parametrize("case", cases(CASES, "statements"))
def test_statement_parses_with_the_given_names(case):
    kwargs = case.get("kwargs", {})
    text = render(getattr(sqlcompose, case["func"])(*case["args"], **kwargs))
    CHECKS[case["func"]](one_statement(text), case["args"], kwargs)


def test_set_config_takes_values_as_parameters_for_the_session():
    """Settings are query parameters, and session-wide: on an autocommit connection a
    transaction-local set_config would be gone before the DDL runs."""
    assert isinstance(sqlcompose.SET_CONFIG, sql.SQL)
    text = sqlcompose.SET_CONFIG.string
    assert text.count("%s") == 2
    stmt = one_statement(text.replace("%s", "'x'"))
    (target,) = stmt.targetList
    assert names(target.val.funcname) == ("set_config",)
    is_local = target.val.args[2]
    assert isinstance(is_local, ast.A_Const) and is_local.val.boolval is False


@pytest.mark.parametrize("case", cases(CASES, "explain"))
def test_explain_json(case):
    text = render(sqlcompose.explain_json(select_statement(case["query"])))
    assert text == case["sql"]
    stmt = one_statement(text)
    assert isinstance(stmt, ast.ExplainStmt)
    options = {opt.defname: opt.arg.sval if opt.arg else None for opt in stmt.options}
    assert options == {"format": "json"}, "plan only: no ANALYZE, so the query is never executed"
    assert isinstance(stmt.query, ast.SelectStmt)
