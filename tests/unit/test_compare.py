"""compare: two pg_get_indexdef texts define the same index, wherever each one lives."""

from __future__ import annotations

import pytest
from pglast import ast, parse_sql

from ansible_collections.indexops.core.plugins.module_utils.compare import display, render, same_definition
from tests.unit.casefiles import cases, section

CASES = "compare.yml"
WHERE = section(CASES, "where")


@pytest.mark.parametrize("case", cases(CASES, "pairs"))
def test_same_definition(case):
    assert same_definition(case["existing"], case["wanted"], **WHERE) is case["same"]


@pytest.mark.parametrize("case", cases(CASES, "pairs"))
def test_same_definition_is_symmetric(case):
    assert same_definition(case["wanted"], case["existing"], **WHERE) is case["same"]


@pytest.mark.parametrize("case", cases(CASES, "render_valid_sql"))
def test_render_is_valid_sql_placed_where_asked(case):
    rendered = render(case["text"], **WHERE)
    (statement,) = parse_sql(rendered)
    stmt = statement.stmt
    assert isinstance(stmt, ast.IndexStmt)
    assert stmt.idxname == WHERE["name"]
    assert (stmt.relation.schemaname, stmt.relation.relname) == (WHERE["schema"], WHERE["table"])
    assert stmt.relation.inh is True, "ON ONLY is where the index lives, not what it is"
    assert stmt.tableSpace is None
    assert not stmt.concurrent
    assert render(rendered, **WHERE) == rendered, "rendering a rendered definition changes nothing"


def test_render_keeps_the_definition():
    text = ("CREATE UNIQUE INDEX orders_ref_uidx ON ONLY sales.orders USING btree (external_ref DESC) "
            "INCLUDE (status) WITH (fillfactor='90') TABLESPACE fast_ssd WHERE (deleted_at IS NULL)")
    (statement,) = parse_sql(render(text, name="x", schema="s", table="t"))
    stmt = statement.stmt
    assert stmt.unique is True
    assert stmt.accessMethod == "btree"
    assert [elem.name for elem in stmt.indexParams] == ["external_ref"]
    assert [elem.name for elem in stmt.indexIncludingParams] == ["status"]
    assert [(opt.defname, opt.arg.sval) for opt in stmt.options] == [("fillfactor", "90")]
    assert stmt.whereClause is not None


def test_same_definition_uses_the_given_place_for_both():
    a = "CREATE INDEX a ON s1.t1 USING btree (email)"
    b = "CREATE INDEX b ON s2.t2 USING btree (email)"
    assert same_definition(a, b, name="zz", schema="other", table="elsewhere")


@pytest.mark.parametrize("case", cases(CASES, "not_index_definitions"))
def test_render_refuses_other_statements(case):
    with pytest.raises(ValueError, match="not an index definition"):
        render(case["text"], **WHERE)


@pytest.mark.parametrize("case", cases(CASES, "display"))
def test_display_is_the_servers_text_with_the_real_names(case):
    where = case.get("where", WHERE)
    assert display(case["text"], **where, tablespace=case.get("tablespace")) == case["shown"]
