"""module_utils/fleet.py: which databases a fleet read selects, and that one failure stays its own entry."""

from __future__ import annotations

import pytest

from ansible_collections.indexops.core.plugins.module_utils import fleet
from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError

NAMES = ["shop", "tenant_001", "tenant_002", "tenant_test_1", "Tenant_003"]


@pytest.mark.parametrize(("include", "exclude", "expected"), [
    (["*"], [], NAMES),
    (["tenant_*"], [], ["tenant_001", "tenant_002", "tenant_test_1"]),
    (["tenant_*"], ["tenant_test_*"], ["tenant_001", "tenant_002"]),
    (["tenant_00?", "shop"], [], ["shop", "tenant_001", "tenant_002"]),
    ([], [], []),
    (["*"], ["*"], []),
])
def test_select(include, exclude, expected):
    assert fleet.select(NAMES, include, exclude) == expected


def test_merge_keeps_the_first_appearance_of_each_name():
    assert fleet.merge(["b", "a"], ["a", "c"], None, ["b", "d"]) == ["b", "a", "c", "d"]


def test_each_keeps_the_order_and_a_failure_is_its_own_entry():
    def read(name):
        if name == "b":
            raise IndexOpsError("b is down", retry_safe=True)
        if name == "c":
            raise ValueError("bug")
        return {"value": name.upper()}

    entries = fleet.each(["a", "b", "c", "d"], read, 2)

    assert [entry["database"] for entry in entries] == ["a", "b", "c", "d"]
    assert entries[0] == {"database": "a", "failed": False, "value": "A"}
    assert entries[1]["failed"] and entries[1]["retry_safe"] and entries[1]["msg"].startswith("b is down")
    assert entries[2]["failed"] and not entries[2]["retry_safe"] and "failed unexpectedly: bug" in entries[2]["msg"]
    assert fleet.summary(entries) == {"databases_read": 2, "databases_failed": ["b", "c"]}


@pytest.mark.parametrize(("params", "fragment"), [
    ({"max_connections": 0}, "max_connections is 0"),
    ({"databases": [" "]}, "empty database name"),
    ({"discover": {"include": ["*"], "exclude": [""]}}, "discover.exclude holds an empty pattern"),
])
def test_bad_options(params, fragment):
    with pytest.raises(IndexOpsError) as raised:
        fleet.check_options(params)
    assert fragment in raised.value.msg and raised.value.retry_safe is False
