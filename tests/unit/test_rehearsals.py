"""rehearsals + gate with rehearsal_source ledger: which ledger jobs make a rehearsal, and the gate's verdict."""

from __future__ import annotations

import copy
import json

import pytest

from ansible_collections.indexops.core.plugins.module_utils import gate, rehearsals
from ansible_collections.indexops.core.plugins.module_utils.errors import FIX_INPUT, IndexOpsError
from tests.unit.casefiles import cases, section

CASES = "rehearsals.yml"
BASE_PARAMS = section(CASES, "base_params")
DIGESTS = {"ab": "ab" * 32, "cd": "cd" * 32}


def job(spec):
    """A ledger row from the short form of the cases file (see its header)."""
    extra = spec if isinstance(spec, dict) else {}
    job_id, kind, action, state = extra.get("job", spec)
    finished = extra.get("finished", f"2025-03-01T10:00:{job_id:02d}Z")
    return {
        "job_id": job_id, "kind": kind, "action": action, "state": state,
        "spec_digest": DIGESTS[extra.get("digest", "ab")], "environment": extra.get("env", "staging"),
        "operator": "bob", "finished_at": finished,
        "observed": extra.get("observed", {"action": action, "duration_s": job_id, "table_bytes": 1000 * job_id}),
    }


def params_of(case, reports_dir=None):
    params = copy.deepcopy(BASE_PARAMS)
    params.update(copy.deepcopy(case.get("params") or {}))
    if reports_dir is not None:
        params["reports_dir"] = str(reports_dir)
    return params


def assert_mentions(text, fragments):
    missing = [fragment for fragment in fragments if fragment not in text]
    assert not missing, f"{text!r} does not mention {missing}"


@pytest.mark.parametrize("case", cases(CASES, "runs"))
def test_runs(case):
    jobs = [job(spec) for spec in case["jobs"]]
    policy = gate.build_policy(params_of(case))

    found = rehearsals.runs(jobs)

    assert [[item["job_id"] for item in run] for run in found] == case["groups"]
    verdicts = [rehearsals.verdict(run, policy.digest, policy.rehearsal_environments, policy.rehearsal_max_age_s,
                                   policy.now) for run in found]
    assert verdicts == case["verdicts"]


@pytest.mark.parametrize("case", cases(CASES, "decisions"))
def test_decision(case, tmp_path):
    reports_dir = tmp_path / "reports"
    if case.get("write_report"):
        # A well-formed, successful rehearsal report of the same digest: what a forger would write.
        (reports_dir / BASE_PARAMS["change_id"]).mkdir(parents=True)
        (reports_dir / BASE_PARAMS["change_id"] / "staging-20250303T100000Z.json").write_text(json.dumps({
            "kind": "rehearse", "change_id": BASE_PARAMS["change_id"], "digest": BASE_PARAMS["digest"],
            "environment": "staging", "finished_at": "2025-03-03T10:00:00Z", "success": True,
            "measurements": {"duration_s": 1.0, "table_bytes": 1}}))
    policy = gate.build_policy(params_of(case, reports_dir))
    if case.get("no_ledger"):
        ledger = None
    elif "ledger_error" in case:
        ledger = {"jobs": None, "error": case["ledger_error"]}
    else:
        ledger = {"jobs": [job(spec) for spec in case["jobs"]], "error": None}

    result = gate.decide(policy, ledger)

    expect = case["expect"]
    assert result["go"] is expect["go"], result["reasons"]
    assert result["rehearsal_source"] == "ledger"
    assert result["go"] == (not result["reasons"])
    if "override" in expect:
        assert result["override"] is expect["override"]
    for key in ("reasons", "overridden"):
        if key in expect:
            assert len(result[key]) == len(expect[key]), result[key]
            for line, fragments in zip(result[key], expect[key], strict=True):
                assert "\n" not in line
                assert_mentions(line, fragments)
    for line in result["reasons"]:
        for fragment in expect.get("reasons_not", ()):
            assert fragment not in line
    if "rehearsal" in expect:
        if expect["rehearsal"] is None:
            assert result["rehearsal"] is None
        else:
            assert result["rehearsal"] is not None, result["reasons"]
            for key, value in expect["rehearsal"].items():
                assert result["rehearsal"][key] == value, key


@pytest.mark.parametrize("case", cases(CASES, "bad_params"))
def test_bad_params(case):
    with pytest.raises(IndexOpsError) as info:
        gate.build_policy(params_of(case))
    assert info.value.retry_safe is False and info.value.msg.endswith(FIX_INPUT)
    assert_mentions(info.value.msg, case["says"])


def test_where_text_names_the_database_server_and_role():
    params = {"login_host": "db.staging", "login_port": 5432, "login_user": "gate", "db": "app"}
    assert rehearsals.where_text(params) == "indexops.jobs in database app on db.staging:5432 as gate"
    assert rehearsals.where_text({}) == "indexops.jobs in database (PGDATABASE) on the PGHOST/local socket server"
