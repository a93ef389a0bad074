"""The Markdown filters of the reports: text from change files and the database renders as text."""

from __future__ import annotations

import pytest

from filter_plugins.indexops_markdown import indexops_md_code, indexops_md_fence, indexops_md_text


@pytest.mark.parametrize(("value", "expected"), [
    ("team-db", "team-db"),
    ("orders_customer_created_idx", "orders_customer_created_idx"),
    ("a | b", "a \\| b"),
    ("two\nlines\r\n| Owner | forged |", "two lines \\| Owner \\| forged \\|"),
    ("`code` and *bold* and _em_", "\\`code\\` and \\*bold\\* and \\_em\\_"),
    ("[click](https://evil.example) <script>", "\\[click\\](https://evil.example) \\<script\\>"),
    ("# heading", "\\# heading"),
    ("- item", "\\- item"),
    ("1. item", "1\\. item"),
    ("AT&amp;T", "AT\\&amp;T"),
    ("back\\slash", "back\\\\slash"),
    (None, ""),
])
def test_text_escapes_everything_markdown_would_read_as_structure(value, expected):
    assert indexops_md_text(value) == expected


def test_text_stands_none_for_a_missing_value():
    assert indexops_md_text(None, "-") == "\\-"


@pytest.mark.parametrize(("value", "table", "expected"), [
    ("CREATE INDEX ix ON t (a)", False, "`CREATE INDEX ix ON t (a)`"),
    ("WHERE note <> '`x`'", False, "``WHERE note <> '`x`'``"),
    ("a ``` b", False, "````a ``` b````"),
    ("`starts", False, "`` `starts ``"),
    ("a|b\nc", True, "`a\\|b c`"),
    ("a|b", False, "`a|b`"),
])
def test_code_spans_cannot_be_closed_by_their_content(value, table, expected):
    assert indexops_md_code(value, table=table) == expected


def test_a_code_fence_is_longer_than_any_backtick_run_inside():
    assert indexops_md_fence(["CREATE INDEX ix ON t (a)"]) == "```"
    assert indexops_md_fence(["SELECT '````'"]) == "`````"
    assert indexops_md_fence([]) == "```"
