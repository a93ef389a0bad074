"""filter_plugins/indexops_fleet.py: the waves of an apply / rollback over a server's databases, and what
each database ended as."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from filter_plugins import indexops_fleet as fleet

NAMES = [f"t{i:02d}" for i in range(1, 33)]


@pytest.mark.parametrize(("count", "waves", "sizes"), [
    (32, [1, 10, "rest"], [1, 10, 21]),
    (5, [1, 10, "rest"], [1, 4]),
    (1, [1, 10, "rest"], [1]),
    (0, [1, 10, "rest"], []),
    (11, [1, 10, "rest"], [1, 10]),
    (7, [2], [2, 2, 2, 1]),            # the last size repeats
    (12, [1, 5], [1, 5, 5, 1]),
    (3, ["rest"], [3]),
])
def test_plan_cuts_the_databases_into_waves_in_order(count, waves, sizes):
    plan = fleet.indexops_wave_plan(NAMES[:count], waves)
    assert [len(wave) for wave in plan] == sizes
    assert [name for wave in plan for name in wave] == NAMES[:count]


@pytest.mark.parametrize("waves", [[], None, "1,10", [0], [1, -2], ["rest", 1], [1.5], [True], ["all"]])
def test_plan_refuses_waves_it_cannot_read_and_says_what_it_expects(waves):
    with pytest.raises(AnsibleFilterError) as error:
        fleet.indexops_wave_plan(NAMES, waves)
    text = str(error.value)
    assert "indexops_waves" in text and "[1, 10, rest]" in text and "nothing was changed" in text


def test_outcome_says_done_unchanged_failed_and_not_touched_per_database():
    plan = [["a"], ["b", "c", "d"], ["e"]]
    results = {"a": {"changed": True, "action": "created", "duration_s": 0.5, "error": None},
               "b": {"changed": False, "action": "none", "error": None},
               "c": {"changed": False, "action": None, "error": "could not create unique index\nDETAIL: Key (x)=(1)"}}
    rows = fleet.indexops_wave_outcome(plan, results)
    assert [(row["database"], row["wave"], row["outcome"]) for row in rows] == [
        ("a", 1, "done"), ("b", 2, "unchanged"), ("c", 2, "failed"), ("d", 2, "not touched"), ("e", 3, "not touched")]
    assert rows[2]["error"] == "could not create unique index", "one line per error"
    summary = fleet.indexops_wave_summary(rows)
    assert summary["counts"] == {"done": 1, "unchanged": 1, "failed": 1, "not touched": 2}
    assert summary["failed"] == ["c"] and summary["not_touched"] == ["d", "e"]
    assert fleet.indexops_wave_lines(rows) == [
        "a (wave 1): done, created", "b (wave 2): unchanged, none",
        "c (wave 2): FAILED: could not create unique index", "d (wave 2): not touched", "e (wave 3): not touched"]


def test_host_entry_fails_with_one_line_that_names_the_failed_and_counts_the_rest():
    plan = [["a"], ["b", "c"], ["d", "e"]]
    rows = fleet.indexops_wave_outcome(plan, {"a": {"changed": True, "action": "created"},
                                              "b": {"changed": True, "action": "created"},
                                              "c": {"error": "could not create unique index \"x\"."}})
    host = fleet.indexops_wave_host(rows, "apply", 3, "2", 0)
    assert host["error"] == ('1 of 5 database(s) failed (failure budget 0), stopped after wave 2 of 3: '
                             'c: could not create unique index "x". Done 2, unchanged 0, not touched 2. '
                             'Rerunning is safe: databases already done change nothing')
    assert host["stopped_after"] == 2 and host["changed"] and not host["valid"]
    clean = fleet.indexops_wave_host(fleet.indexops_wave_outcome([["a"]], {"a": {"changed": False, "action": "none"}}),
                                     "apply", 1)
    assert clean["error"] is None and clean["valid"] and not clean["changed"]


def test_wave_results_read_each_database_of_the_one_run_and_a_run_refused_before_any_is_every_ones_failure():
    raw = {"failed": True, "msg": "1 of 3 database(s) failed; ...", "database_results": [
        {"database": "a", "failed": False, "changed": True, "action": "created", "duration_s": 0.4},
        {"database": "b", "failed": True, "changed": False, "retry_safe": True, "msg": "lock timeout\nsecond line"},
        {"database": "c", "failed": True, "changed": False, "msg": "expectation broken",
         "result": {"action": "created", "duration_s": 1.5}},
    ]}

    got = fleet.indexops_wave_results(raw, ["a", "b", "c"], "apply")

    assert got["a"] == {"kind": "apply", "database": "a", "changed": True, "action": "created", "duration_s": 0.4,
                        "error": None, "retry_safe": None}
    assert got["b"]["error"] == "lock timeout" and got["b"]["retry_safe"] is True and got["b"]["action"] is None
    assert got["c"]["error"] == "expectation broken" and got["c"]["action"] == "created"
    rows = fleet.indexops_wave_outcome([["a", "b", "c"]], got)
    assert [row["outcome"] for row in rows] == ["done", "failed", "failed"]

    refused = fleet.indexops_wave_results({"failed": True, "msg": "lock_timeout is 'soon'", "retry_safe": False},
                                    ["a", "b"], "apply")
    assert [refused[name]["error"] for name in ("a", "b")] == ["lock_timeout is 'soon'"] * 2


# --------------------------------------------------------------------------- a rehearsal over the databases

def rehearsed(duration_s, size_bytes=8192, error=None, failed_step=None, first="created"):
    """A database's rehearsal result as roles/indexops_operation/tasks/rehearse.yml keeps it."""
    ok = {"rollback": {"action": "dropped", "duration_s": 0.2, "error": None},
          "reapply": {"action": "created", "duration_s": 0.3, "error": None}}
    steps = {"apply": {"action": None if error else first, "duration_s": duration_s, "error": error}, **(
        {"rollback": {"action": "skipped", "error": None}, "reapply": {"action": "skipped", "error": None}}
        if error else ok)}
    return {"changed": not error, "action": None if error else first, "duration_s": duration_s,
            "size_bytes": size_bytes, "lock_wait_s": 0.0, "txn_wait_s": None, "table_bytes": 65536,
            "table_rows_estimate": 3000,
            "steps": steps, "failed_step": failed_step, "error": error}


def test_a_rehearsal_row_has_its_steps_and_its_line_says_each_step_and_the_one_that_failed():
    plan = [["a"], ["b", "c"], ["d"]]
    results = {"a": rehearsed(0.5), "b": rehearsed(0.1, first="none"),
               "c": rehearsed(None, error="could not create unique index \"x\"\nDETAIL: Key (ref)=(1)",
                              failed_step="apply")}
    rows = fleet.indexops_wave_outcome(plan, results)
    assert [row["outcome"] for row in rows] == ["done", "done", "failed", "not touched"]
    assert rows[2]["step"] == "apply" and rows[2]["steps"]["apply"]["error"] == 'could not create unique index "x"'
    assert fleet.indexops_wave_steps(rows[2]) == "apply failed, rollback skipped, reapply skipped"
    assert fleet.indexops_wave_lines(rows) == [
        "a (wave 1): done: apply created, rollback dropped, reapply created",
        "b (wave 2): done: apply none, rollback dropped, reapply created",
        'c (wave 2): FAILED at apply: could not create unique index "x"', "d (wave 3): not touched"]
    host = fleet.indexops_wave_host(rows, "rehearse", 3, 2, 0)
    assert 'c (apply): could not create unique index "x". Done 2, unchanged 0, not touched 1.' in host["error"]
    assert "it rehearses every database again" in host["error"]
    assert host["measurements"] is None, "a rehearsal where a database failed is no evidence"


def test_check_mode_lines_say_what_would_be_done_not_done():
    rows = fleet.indexops_wave_outcome([["a", "b"]], {"a": rehearsed(0.0), "b": {"changed": False, "action": "none"}})
    assert fleet.indexops_wave_lines(rows, True) == [
        "a (wave 1): would create the index, then roll it back and apply it again (check mode: nothing ran)",
        "b (wave 1): would leave the index as it is (already as specified) (check mode: nothing ran)"]


def test_the_evidence_of_a_rehearsal_over_many_databases_is_the_slowest_and_says_over_how_many():
    rows = fleet.indexops_wave_outcome([["a", "b", "c"]], {
        "a": rehearsed(0.5, 100), "b": rehearsed(2.5, 300), "c": rehearsed(1.0, 900)})
    host = fleet.indexops_wave_host(rows, "rehearse", 1)
    assert host["measurements"] == {"duration_s": 2.5, "size_bytes": 300, "lock_wait_s": 0.0, "txn_wait_s": 0,
                                    "table_bytes": 65536, "table_rows_estimate": 3000, "rollback_duration_s": 0.2,
                                    "reapply_duration_s": 0.3, "databases": 3, "database": "b"}
    # Over hosts: a fleet host counts its databases, a host's own database counts one.
    single = {**rehearsed(3.0, 50), "database": None}
    both = fleet.indexops_rehearse_measurements([host, single])
    assert both["duration_s"] == 3.0 and both["database"] is None and both["databases"] == 4
    assert fleet.indexops_rehearse_measurements([host, rehearsed(None, error="boom", failed_step="apply")]) is None
    assert fleet.indexops_rehearse_measurements([]) is None
    untouched = fleet.indexops_wave_outcome([["a"], ["b"]], {"a": rehearsed(0.5)})
    assert fleet.indexops_wave_host(untouched, "rehearse", 2)["measurements"] is None
