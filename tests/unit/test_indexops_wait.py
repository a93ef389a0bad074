"""action_plugins/indexops_wait.py: which finished background-job results mean the pg_index process died,
and what of a finished job's result becomes the task's own.

async_wrapper writes a result of its own (the module's raw output under ``data``, or ``outdata`` when
it could not start the module) only when the module printed no JSON: killed, or crashed before it
answered. pg_index's own results, successful or failed, never carry those keys.
"""

from __future__ import annotations

import pytest

from action_plugins import indexops_wait as wait

CASES = [
    ("the module was killed: async_wrapper's traceback and no output",
     {"failed": True, "cmd": "AnsiballZ_pg_index.py", "data": "", "stderr": "",
      "msg": "Traceback (most recent call last): ... ValueError: No start of json char found"}, True),
    ("the module could not be started", {"failed": True, "cmd": "x", "msg": "No such file", "outdata": ""}, True),
    ("pg_index failed and said why", {"failed": True, "changed": False, "action": "none",
                                      "msg": "could not get the locks ... running again is safe"}, False),
    ("pg_index succeeded", {"changed": True, "action": "created", "attempts": 1}, False),
    ("the job ran past its time limit", {"failed": True, "msg": "Timeout exceeded"}, False),
]


@pytest.mark.parametrize(("outcome", "crashed"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_module_crashed(outcome, crashed):
    assert wait.module_crashed(outcome) is crashed


def test_a_failed_jobs_result_carries_its_message_and_no_placeholder_traceback():
    """ansible-core 2.19 adds ``exception`` to every failed module result; shown, it reads
    "(traceback unavailable)". The task's result is what pg_index said (issue 16 item 8)."""
    job = {"ansible_job_id": "j1", "finished": 1, "results_file": "/tmp/j1", "failed": True, "retry_safe": True,
           "msg": "could not get the locks ... running again is safe", "exception": object(), "attempts": 5}

    assert wait.job_outcome(job) == {"failed": True, "retry_safe": True, "attempts": 5,
                                     "msg": "could not get the locks ... running again is safe"}
