"""module_utils/states.py: the state of a change from its index and its ledger jobs (cases in YAML),
and the words the operator reads about it (the progress line, the attach and attached-job messages)."""

from __future__ import annotations

import re

import pytest

from ansible_collections.indexops.core.plugins.module_utils import states
from ansible_collections.indexops.core.plugins.module_utils.states import change_state
from tests.unit.casefiles import cases, section

CASES = "states.yml"
STATES = set(states.CHANGE_STATES)
DEFINITION = "CREATE INDEX i ON public.t USING btree (a)"
INDEX = {"exists": True, "valid": True, "build": None, "definition": DEFINITION}
JOB = {"kind": "apply", "lost": False, "definition_before": None}


def job(fields):
    """A ledger job; a succeeded apply records the definition it left (definition_after)."""
    row = {**JOB, **fields}
    row.setdefault("definition_after", DEFINITION if row["state"] == "succeeded" else None)
    return row


@pytest.mark.parametrize("case", cases(CASES, "cases"))
def test_change_state(case):
    index = {**INDEX, **case["index"]}
    jobs = [job(item) for item in case["jobs"]]

    assert change_state(case["action"], index, jobs, case.get("build")) == case["state"]


def test_every_state_has_a_case():
    assert {case["state"] for case in section(CASES, "cases")} == STATES


def test_the_build_defaults_to_the_index_own():
    assert change_state("create", {**INDEX, "valid": False, "build": {"pid": 7}}, []) == "building"


ENTRY = {"id": "orders-x", "index": {"schema": "public", "name": "orders_x_idx"}, "state": "building",
         "index_state": {"state": "absent"}, "build": None,
         "job": {"job_id": 7, "state": "running", "operator": "alice", "started_at": "2026-12-01T13:12:20.512345Z",
                 "lost": False}}
FAILED = {**ENTRY, "state": "failed", "index_state": {"state": "invalid"},
          "job": {**ENTRY["job"], "state": "failed", "last_error": "the session running the build ended"}}


def test_the_attach_line_is_one_line_with_whole_seconds_in_utc_and_the_operator():
    line = states.attach_line("orders-x", ENTRY, waits=False)

    assert "\n" not in line and "\\n" not in line
    assert "indexops job 7, started by alice at 2026-12-01 13:12:20 UTC" in line, line
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", line), line
    assert line.endswith("attaching to it instead of starting a second build (not waiting)"), line


def test_an_unknown_operator_is_not_named_unknown():
    line = states.attach_line("orders-x", {**ENTRY, "job": {**ENTRY["job"], "operator": "unknown"}}, waits=True)

    assert "started by an unknown operator" in line and "started by unknown " not in line, line


def test_the_attached_job_end_says_failed_with_its_error_and_that_a_rerun_is_safe():
    message = states.attached_job_end("orders-x", "db1", ENTRY, FAILED)

    assert "that this run attached to on db1 (indexops job 7" in message, message
    assert "failed: the session running the build ended" in message and "The index is now invalid" in message
    assert "running apply again is safe" in message


def test_the_attached_job_end_is_empty_when_the_job_succeeded_or_was_another():
    done = {**ENTRY, "state": "done", "job": {**ENTRY["job"], "state": "succeeded"}}
    other = {**FAILED, "job": {**FAILED["job"], "job_id": 8}}

    assert states.attached_job_end("orders-x", "db1", ENTRY, done) == ""
    assert states.attached_job_end("orders-x", "db1", ENTRY, other) == ""


def test_the_progress_line_names_the_phase_the_pid_and_what_the_build_waits_on():
    build = {"pid": 42, "percent": 1.25, "phase": "waiting for writers before build", "elapsed_s": 65, "eta_s": None,
             "waiting": True, "waiting_on": [{"pid": 99, "state": "idle in transaction", "xact_age_s": 35,
                                              "query": "UPDATE   orders SET x = 1"}]}
    line = states.progress_line({**ENTRY, "build": build})

    assert line == ("public.orders_x_idx building 1.2% waiting for writers before build, pid 42, running 1 min 05 s, "
                    "ETA ?; "
                    "waits on pid 99 (idle in transaction 35 s): UPDATE orders SET x = 1"), line


def test_every_index_state_is_reachable():
    seen = {states.index_state(exists, valid, building)
            for exists in (True, False) for valid in (True, False) for building in (True, False)}
    assert seen == set(states.INDEX_STATES)


def test_a_rerun_that_found_nothing_to_do_does_not_date_the_change():
    build = {"job_id": 1, "kind": "apply", "action": "created", "state": "succeeded",
             "started_at": "2026-12-01T10:00:00.1Z", "duration_s": 920.4}
    rerun = {"job_id": 2, "kind": "apply", "action": "none", "state": "succeeded",
             "started_at": "2026-12-01T11:00:00.1Z", "duration_s": 0.2}
    entry = {**ENTRY, "state": "done", "index_state": {"state": "valid"}, "job": rerun,
             "made_by": states.made_by([build, rerun])}

    row = states.change_row(entry, 0.0)

    assert (row["started"], row["duration"]) == ("2026-12-01 10:00:00", "15 min 20 s"), row
    assert states.made_by([build, {**rerun, "state": "failed"}])["job_id"] == 2  # a failed rerun is the news
    assert states.made_by([rerun])["job_id"] == 2 and states.made_by([]) is None


def test_a_retry_shows_its_attempt_while_the_job_runs_and_not_after():
    build = {"pid": 42, "percent": 50.0, "phase": "building index: scanning table", "elapsed_s": 3, "eta_s": 3}
    retrying = {**ENTRY, "build": build, "job": {**ENTRY["job"], "attempt": 2, "attempts_max": 5}}
    finished = {**retrying, "state": "done", "job": {**retrying["job"], "state": "succeeded"}}

    assert "pid 42, attempt 2/5, running 3.0 s" in states.progress_line(retrying)
    assert ", attempt 2/5, ETA 3.0 s" in states.change_row(retrying, 0.0)["progress"]
    assert "attempt" not in states.progress_line(finished) and "attempt" not in states.progress_line(ENTRY)
