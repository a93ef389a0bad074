"""filter_plugins/indexops_rollout.py: the rollout of a change across servers (serial, max_fail_percentage), the
batches Ansible cuts, and the report entry of a server whose batch did not run."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from filter_plugins import indexops_rollout as rollout

HOSTS = [f"db{i:02d}" for i in range(1, 21)]


@pytest.mark.parametrize(("given", "serial"), [
    ([1, "10%", "100%"], [1, "10%", "100%"]),
    ([], []),
    (2, [2]),
    ("1,10%,100%", [1, "10%", "100%"]),   # -e indexops_serial=1,10%,100%
    ("3", [3]),
    (["2", " 50 % "], [2, "50%"]),
])
def test_serial_is_read_as_ansible_takes_it(given, serial):
    assert rollout.indexops_rollout_serial(given) == serial


@pytest.mark.parametrize("given", [0, [0], [1, -1], "many", ["0%"], ["150%"], [True], [1.5], [None], "1,,x"])
def test_a_bad_serial_is_refused_with_what_was_expected(given):
    with pytest.raises(AnsibleFilterError, match="expected a list of batch sizes, each a whole number above 0"):
        rollout.indexops_rollout_serial(given)


@pytest.mark.parametrize(("given", "percent"), [(0, 0), (100, 100), ("30", 30), ("30%", 30)])
def test_max_fail_percentage_is_a_whole_number_from_0_to_100(given, percent):
    assert rollout.indexops_rollout_max_fail(given) == percent


@pytest.mark.parametrize("given", [150, -1, "many", True, 12.5, None, "101%"])
def test_a_bad_max_fail_percentage_is_refused(given):
    with pytest.raises(AnsibleFilterError, match="expected a whole number from 0 to 100"):
        rollout.indexops_rollout_max_fail(given)


def test_an_inventory_that_says_nothing_gets_one_batch_and_no_tolerance():
    assert rollout.indexops_rollout(HOSTS[:3], {name: {} for name in HOSTS[:3]}) == {
        "serial": [], "max_fail_percentage": 0}
    assert rollout.indexops_rollout_batches(HOSTS[:3], []) == [HOSTS[:3]]


def test_the_play_keywords_take_the_first_hosts_values_and_none_without_hostvars():
    hostvars = {"db01": {"indexops_serial": [1, "50%"], "indexops_max_fail_percentage": "20"}, "db02": {}}
    assert rollout.indexops_rollout(["db01", "db02"], hostvars) == {"serial": [1, "50%"], "max_fail_percentage": 20}
    # ansible-playbook --syntax-check: no play ran, no hostvars.
    assert rollout.indexops_rollout(["db01"], {}) == {"serial": [], "max_fail_percentage": 0}


@pytest.mark.parametrize(("count", "serial", "sizes"), [
    (20, [1, "10%", "100%"], [1, 2, 17]),
    (2, [1, "10%", "100%"], [1, 1]),      # 10% of 2 is at least 1
    (1, [1, "10%", "100%"], [1]),
    (7, [2], [2, 2, 2, 1]),               # the last size repeats
    (5, ["50%"], [2, 2, 1]),
    (4, [], [4]),
])
def test_batches_are_cut_as_ansible_cuts_them(count, serial, sizes):
    batches = rollout.indexops_rollout_batches(HOSTS[:count], serial)
    assert [len(batch) for batch in batches] == sizes
    assert [host for batch in batches for host in batch] == HOSTS[:count]


def test_the_report_names_every_server_and_says_which_were_not_reached():
    done = {"action": "created", "error": None}
    hostvars = {"db01": {"indexops_report_host": done}, "db02": {"indexops_preflight_result": {"go": True}},
                "db03": {"indexops_preflight_result": {"go": False, "reasons": ["index_name: taken"]}}}
    entries = rollout.indexops_rollout_report_hosts(["db01", "db02", "db03"], hostvars)
    assert list(entries) == ["db01", "db02", "db03"]
    assert entries["db01"] is done
    assert entries["db02"]["reached"] is False and entries["db02"]["error"] is None
    assert entries["db03"]["reached"] is True and entries["db03"]["error"] == "no-go before any DDL: index_name: taken"


def test_a_fact_of_an_earlier_batch_is_found_on_the_first_host_that_has_it():
    hostvars = {"db01": {}, "db02": {"indexops_report_path": "/r/x"}, "db03": {"indexops_report_path": "/r/y"}}
    assert rollout.indexops_rollout_fact(["db01", "db02", "db03"], hostvars, "indexops_report_path") == "/r/x"
    assert rollout.indexops_rollout_fact(["db01"], hostvars, "indexops_report_path") is None
