"""status.change_state: the state of a change from its index and its ledger jobs (cases in YAML)."""

from __future__ import annotations

import pytest

from ansible_collections.indexops.core.plugins.module_utils.status import change_state
from tests.unit.casefiles import cases, section

CASES = "change_state.yml"
STATES = {"pending", "building", "done", "mismatch", "invalid", "failed", "lost", "rolled_back"}
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
