"""module_utils/preflight.py and preflight_report.py (pg_index_preflight): the duration estimate, the
rehearsal measurement, the bookkeeping of checks and the connection each change picks (cases in
cases/preflight.yml)."""

from __future__ import annotations

import pytest

from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError
from ansible_collections.indexops.core.plugins.module_utils.preflight import application_name, connection_params
from ansible_collections.indexops.core.plugins.module_utils.preflight_report import (
    Checks,
    judge_estimate,
    rehearsal_measurement,
)
from tests.unit.casefiles import cases

CASES = "preflight.yml"


@pytest.mark.parametrize("case", cases(CASES, "estimate"))
def test_judge_estimate(case):
    measurement = tuple(case["measurement"]) if case["measurement"] else None
    ok, estimate, detail = judge_estimate(measurement, case["table_bytes"], case["window"], case.get("counted", ()))
    assert ok is case["ok"]
    assert estimate == (pytest.approx(case["estimate"]) if case["estimate"] is not None else None)
    if "detail" in case:
        assert detail == case["detail"]
    assert "\n" not in detail


@pytest.mark.parametrize("case", cases(CASES, "rehearsal"))
def test_rehearsal_measurement(case):
    if "error" in case:
        with pytest.raises(IndexOpsError) as raised:
            rehearsal_measurement(case["rehearsal"])
        assert case["error"] in raised.value.msg
        assert "Nothing was changed" in raised.value.msg
        return
    expected = tuple(case["measurement"]) if case["measurement"] else None
    assert rehearsal_measurement(case["rehearsal"]) == expected


def test_checks_keep_their_order_and_list_only_failures_as_reasons():
    checks = Checks(("a", "b", "c", "d"))
    checks.failed("c", "c is broken")
    checks.passed("a", "a is fine")
    checks.skip(("b", "c"), "c failed")

    assert [item["name"] for item in checks.as_list()] == ["a", "b", "c", "d"]
    assert checks.as_list()[1] == {"name": "b", "ok": None, "detail": "not checked: c failed"}
    assert checks.as_list()[2]["detail"] == "c is broken"  # a failed check is never overwritten by skip
    assert checks.as_list()[3] == {"name": "d", "ok": None, "detail": "not checked"}
    assert checks.reasons() == ["c: c is broken"]
    assert checks.go is False


def test_checks_without_failures_are_go_even_with_skipped_ones():
    checks = Checks(("a", "b"))
    checks.passed("a", "fine")
    checks.skip(("b",), "nothing to check")
    assert checks.go is True
    assert checks.reasons() == []


@pytest.mark.parametrize(("change", "db", "name"), [
    ({"id": "x", "database": "shop"}, "shop", "indexops/x"),
    ({"id": "x"}, "inventory_db", "indexops/x"),
    ({"id": "x", "database": ""}, "inventory_db", "indexops/x"),
    ({"id": 7, "database": ["not", "a", "name"]}, "inventory_db", "indexops/preflight"),
    ("not a mapping", "inventory_db", "indexops/preflight"),
])
def test_the_change_picks_database_and_application_name(change, db, name):
    assert connection_params({"db": "inventory_db", "login_user": "u"}, change) == {"db": db, "login_user": "u"}
    assert application_name(change) == name
