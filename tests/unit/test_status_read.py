"""module_utils/status_read.py (pg_index_status): leftover kinds, which build works on an index, and
what a build looks like to a role that cannot see its details (cases in cases/status_read.yml)."""

from __future__ import annotations

import pytest

from ansible_collections.indexops.core.plugins.module_utils.status_read import build_of, build_summary, leftover_type
from tests.unit.casefiles import cases

CASES = "status_read.yml"


@pytest.mark.parametrize("case", cases(CASES, "leftover_type"))
def test_leftover_type(case):
    assert leftover_type(case["name"]) == case["type"]


@pytest.mark.parametrize("case", cases(CASES, "build_of"))
def test_build_of(case):
    row = build_of(case["index"], case["builds"])
    assert (row["pid"] if row else None) == case["pid"]


def test_build_summary_hides_what_the_role_cannot_see():
    hidden = build_summary({"pid": 5, "command": None, "phase": None, "relid": None, "index_relid": None})
    assert hidden["pid"] == 5
    assert (hidden["phase"], hidden["percent"], hidden["details_visible"]) == (None, None, False)
    visible = build_summary({"pid": 6, "command": "CREATE INDEX CONCURRENTLY", "relid": 1, "index_relid": 2,
                             "phase": "building index: scanning table", "blocks_done": 50, "blocks_total": 100,
                             "current_locker_pid": 0})
    assert visible["details_visible"] is True
    assert 3 < visible["percent"] < 50
    assert visible["waiting_for_pid"] is None
    assert build_summary(None) is None
