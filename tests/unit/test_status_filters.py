"""filter_plugins/indexops_status.py: the rows, states and report names of playbooks/status.yml.

Table-driven: the cases live in tests/unit/cases/status_filters.yml.
"""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.indexops.core.plugins.module_utils import states
from filter_plugins import indexops_status as status
from tests.unit.casefiles import CASES_DIR, cases

CASES = "status_filters.yml"


def assert_mentions(text, fragments):
    missing = [fragment for fragment in fragments if fragment not in text]
    assert not missing, f"{text!r} does not mention {missing}"


@pytest.mark.parametrize("case", cases(CASES, "fail_on"))
def test_fail_on(case):
    if "problem" in case:
        problem = status.indexops_status_fail_on_problem(case["value"])
        assert "\n" not in problem
        assert_mentions(problem, case["problem"])
        with pytest.raises(AnsibleFilterError):
            status.indexops_status_fail_on_list(case["value"])
    else:
        assert status.indexops_status_fail_on_problem(case["value"]) == ""
        assert status.indexops_status_fail_on_list(case["value"]) == case["list"]


def check_rows(rows, case):
    assert [[row["change"], row["state"]] for row in rows] == case["rows"], rows
    for row, fragments in zip(rows, case.get("errors") or [], strict=False):
        assert_mentions(row["last_error"], fragments)
    for row, label in zip(rows, case.get("labels") or [], strict=False):
        assert status.indexops_status_state_label(row) == label
        assert label in status.indexops_status_table([row])[2]


def as_returned(reads):
    """The reads as pg_index_status returns them: each changes[] entry carries its table row."""
    for item in reads.get("results") or reads.get("database_results") or []:
        for entry in item.get("changes") or []:
            entry["row"] = states.change_row(entry, 0.0)
    return reads


@pytest.mark.parametrize("case", cases(CASES, "read_rows"))
def test_read_rows(case):
    rows = status.indexops_status_rows(as_returned(case["reads"]), "db1", case["environment"],
                                       case.get("requests") or [])
    check_rows(rows, case)


@pytest.mark.parametrize("case", cases(CASES, "labels"))
def test_state_label(case):
    assert status.indexops_status_state_label(case["row"]) == case["label"]


@pytest.mark.parametrize("case", cases(CASES, "collect"))
def test_collect(case):
    loaded = {"results": [{**item, "item": item["item"].replace("{cases}", str(CASES_DIR))}
                          for item in case["loaded"]["results"]]}
    hostvars = {"db1": {"indexops_status_loaded": loaded, "indexops_status_rows": []}}
    check_rows(status.indexops_status_collect(hostvars, ["db1"]), case)


@pytest.mark.parametrize("case", cases(CASES, "suffix"))
def test_report_suffix(case):
    assert status.indexops_status_report_suffix(case["taken_at"], case["token"]) == case["suffix"]


def test_a_host_in_two_environment_groups_is_refused():
    hostvars = {"db1": {"indexops_environment": "staging", "group_names": ["postgres", "production", "staging"]},
                "db2": {"indexops_environment": "production", "group_names": ["postgres", "production"]}}
    [problem] = status.indexops_status_host_conflicts(hostvars, ["db1", "db2"], [])
    assert_mentions(problem, ["host db1", "production, staging", "rename it"])


def test_a_database_that_refused_the_connection_says_why_in_its_progress_cell():
    reads = {"database_results": [{"database": "t2", "failed": True, "msg": (
        'could not connect to PostgreSQL: connection to server at "h", port 5432 failed: FATAL:  permission denied '
        'for database "t2"\nDETAIL:  User does not have CONNECT privilege. Expected: a reachable server.')}]}

    [row] = status.indexops_status_rows(reads, "db1", "staging", [])

    assert row["database"] == "t2"
    assert row["progress"] == 'database t2 not read: permission denied for database "t2"'
    header, _, line = status.indexops_status_table([row])
    assert header.split()[:6] == ["CHANGE", "INDEX", "ENV", "HOST", "DATABASE", "STATE"]
    assert line.split()[:6] == ["*", "-", "staging", "db1", "t2", "unreachable"]


@pytest.mark.parametrize(("databases", "discover", "expected"), [
    (None, None, ["app"]),
    ([], None, ["app"]),
    (["t1", "t2"], None, ["t1", "t2"]),
    (None, {"include": ["t*"]}, []),
    (["t9"], {"include": ["t*"]}, ["t9"]),
])
def test_the_databases_option_of_a_host(databases, discover, expected):
    assert status.indexops_fleet_databases("app", databases, discover) == expected
