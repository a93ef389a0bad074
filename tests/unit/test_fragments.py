"""fragments.parse_fragment: one scalar expression in, the parser's own printing of it out."""

from __future__ import annotations

import pytest
from pglast import parse_sql

from ansible_collections.indexops.core.plugins.module_utils.errors import FIX_INPUT, IndexOpsError
from ansible_collections.indexops.core.plugins.module_utils.fragments import Fragment, parse_fragment, select_statement
from tests.unit.casefiles import cases

CASES = "fragments.yml"


def expression_tree(text):
    """The parse tree PostgreSQL's grammar gives the expression (node equality ignores locations)."""
    (statement,) = parse_sql("SELECT " + text)
    (target,) = statement.stmt.targetList
    return target.val


@pytest.mark.parametrize("case", cases(CASES, "accepted"))
def test_accepted(case):
    fragment = parse_fragment(case["text"], "where")
    assert isinstance(fragment, Fragment)
    assert fragment.columns == tuple(case["reads"])
    if "sql" in case:
        assert fragment.sql == case["sql"]
    for text in case.get("excludes", ()):
        assert text not in fragment.sql, f"{text!r} survived into the SQL that runs: {fragment.sql!r}"


@pytest.mark.parametrize("case", cases(CASES, "accepted"))
def test_printed_sql_means_the_same(case):
    """What runs is what was validated: the printed SQL parses back to the very same tree."""
    fragment = parse_fragment(case["text"], "where")
    assert expression_tree(fragment.sql) == expression_tree(case["text"])


@pytest.mark.parametrize("case", cases(CASES, "accepted"))
def test_printed_sql_is_stable(case):
    """Parsing the printed SQL again changes nothing (a fixed point), so reruns compare equal."""
    fragment = parse_fragment(case["text"], "where")
    again = parse_fragment(fragment.sql, "where")
    assert again == fragment


@pytest.mark.parametrize("case", cases(CASES, "accepted"))
def test_printed_sql_is_one_expression_inside_parentheses(case):
    """sqlcompose wraps a fragment as WHERE (...) / ((...)); the result must stay one expression."""
    fragment = parse_fragment(case["text"], "where")
    statements = parse_sql(f"SELECT ({fragment.sql})")
    assert len(statements) == 1
    assert len(statements[0].stmt.targetList) == 1


@pytest.mark.parametrize("case", cases(CASES, "rejected"))
def test_rejected(case):
    with pytest.raises(IndexOpsError) as info:
        parse_fragment(case["text"], "where")
    exc = info.value
    assert exc.what.startswith("where"), "the message names the option that holds the fragment"
    assert exc.expected and "exactly one SQL expression" in exc.expected
    assert exc.retry_safe is False
    assert "Expected: " in exc.msg and FIX_INPUT in exc.msg
    if isinstance(case["text"], str) and case["text"].strip():
        assert repr(case["text"]) in exc.what, "the message quotes what the operator wrote"
    missing = [part for part in case["error"] if part.lower() not in exc.msg.lower()]
    assert not missing, f"message {exc.msg!r} does not mention {missing}"


def test_option_name_is_used_in_message():
    with pytest.raises(IndexOpsError) as info:
        parse_fragment("(SELECT 1)", "columns[2].expression")
    assert info.value.what.startswith("columns[2].expression ")


# --------------------------------------------------------------------------- select_statement


@pytest.mark.parametrize("case", cases(CASES, "select_accepted"))
def test_select_accepted(case):
    printed = select_statement(case["text"])
    if "sql" in case:
        assert printed == case["sql"]
    for text in case.get("excludes", ()):
        assert text not in printed
    (original,) = parse_sql(case["text"])
    (again,) = parse_sql(printed)
    assert again.stmt == original.stmt, "the printed query is the validated query"


@pytest.mark.parametrize("case", cases(CASES, "select_rejected"))
def test_select_rejected(case):
    with pytest.raises(IndexOpsError) as info:
        select_statement(case["text"])
    exc = info.value
    assert exc.what.startswith("query")
    assert exc.expected and "exactly one SELECT" in exc.expected
    assert "Expected: " in exc.msg and FIX_INPUT in exc.msg
    missing = [part for part in case["error"] if part.lower() not in exc.msg.lower()]
    assert not missing, f"message {exc.msg!r} does not mention {missing}"
