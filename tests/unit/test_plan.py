"""plan.py: every branch of state present, absent and rebuilt, decided from facts without a database
(tests/unit/cases/plan.yml). That index_job.py reads those facts from a real server and carries the
plan out is tested in tests/integration/test_pg_index_present.py, test_pg_index_states.py and
test_pg_index_failures.py."""

from __future__ import annotations

import pytest

from ansible_collections.indexops.core.plugins.module_utils import constraints, names, plan
from ansible_collections.indexops.core.plugins.module_utils.safety import Safety
from ansible_collections.indexops.core.plugins.module_utils.spec import build_spec
from tests.unit.casefiles import cases
from tests.unit.sqlrender import render

CASES = "plan.yml"
TABLE_OID = 100
BUILD = {"pid": 0, "application_name": "app", "command": "CREATE INDEX CONCURRENTLY",
         "phase": "building index: scanning table"}


def index(fields, name="t_a_idx"):
    """A catalog.relation row (a valid btree index public.<name> on public.t) with ``fields`` applied."""
    if fields is None:
        return None
    fields = dict(fields)
    builds = [{**BUILD, **build} for build in fields.pop("builds", [])]
    row = {"oid": 1, "relkind": "i", "schema": "public", "name": name, "table_oid": TABLE_OID, "table": "t",
           "table_schema": "public", "valid": True, "ready": True, "live": True,
           "definition": f"CREATE INDEX {name} ON public.t USING btree (a)", "size_bytes": 8192,
           "tablespace": None, "constraints": None, **fields}
    return plan.Index(row, builds)


def decided(outcome, expect):
    if "refusal" in expect:
        assert isinstance(outcome, plan.Refusal), f"expected a refusal, got a plan: {outcome}"
        assert outcome.code == expect["refusal"]
        assert expect["message"] in outcome.error.what, outcome.error.what
        return
    assert isinstance(outcome, plan.Plan), f"expected a plan, got {outcome.error.what if outcome else outcome}"
    assert outcome.action == expect["action"]
    if "sql" in expect:
        assert [render(step.statement) for step in outcome.steps] == expect["sql"]


@pytest.mark.parametrize("case", cases(CASES, "present"))
def test_present(case):
    spec = build_spec(case["spec"])
    facts = plan.PresentFacts(spec=spec, wanted=case["wanted"], table_oid=TABLE_OID,
                              existing=index(case.get("existing"), spec.name),
                              replacement=index(case.get("replacement"), names.replacement_name(spec.name)))
    decided(plan.plan_present(facts, Safety(**case.get("safety", {}))), case["expect"])


@pytest.mark.parametrize("case", cases(CASES, "absent"))
def test_absent(case):
    facts = plan.ExistingFacts("public", "t_a_idx", index(case.get("existing")))
    decided(plan.plan_absent(facts, Safety(**case.get("safety", {}))), case["expect"])


@pytest.mark.parametrize("case", cases(CASES, "rebuilt"))
def test_rebuilt(case):
    leftovers = [index(item, item["name"]) for item in case.get("leftovers", [])]
    facts = plan.ExistingFacts("public", "t_a_idx", index(case.get("existing")), leftovers)
    decided(plan.plan_rebuilt(facts, Safety(**case.get("safety", {}))), case["expect"])


@pytest.mark.parametrize("case", cases(CASES, "constraint_present"))
def test_constraint_present(case):
    """constraints.plan_present on top of plan.plan_present's outcome for the same facts."""
    spec = build_spec(case["spec"])
    facts = plan.PresentFacts(spec=spec, wanted=case["wanted"], table_oid=TABLE_OID,
                              existing=index(case.get("existing"), spec.name))
    safety = Safety(**case.get("safety", {}))
    found = constraints.ConstraintFacts(**case.get("found", {}))
    decided(constraints.plan_present(plan.plan_present(facts, safety), facts, found, safety), case["expect"])


@pytest.mark.parametrize("case", cases(CASES, "constraint_absent"))
def test_constraint_absent(case):
    facts = plan.ExistingFacts("public", "t_a_idx", index(case.get("existing")))
    found = constraints.ConstraintFacts(**case.get("found", {}))
    decided(constraints.plan_absent(facts, found, Safety(**case.get("safety", {})), case["drop"]), case["expect"])


def test_every_refusal_code_and_every_action_has_a_case():
    """The table covers each way plan.py and constraints.py can decide (a new branch needs a case)."""
    from tests.unit.casefiles import section
    states = ("present", "absent", "rebuilt", "constraint_present", "constraint_absent")
    expects = [case["expect"] for state in states for case in section(CASES, state)]
    codes = {plan.BEING_BUILT, plan.INVALID, plan.MISMATCH, plan.CONSTRAINT, plan.PARTITIONED, plan.MISSING,
             constraints.CONSTRAINT_MISMATCH, constraints.FOREIGN_KEYS, constraints.PRIMARY_KEY_EXISTS,
             constraints.PARTITIONED_TABLE}
    assert {expect["refusal"] for expect in expects if "refusal" in expect} == codes
    assert {expect["action"] for expect in expects if "action" in expect} == {
        "created", "none", "replaced", "repaired_invalid", "dropped", "rebuilt", constraints.ADDED}


def test_undo_drops_only_the_checks_a_failed_run_added_and_did_not_drop():
    """After a failure, the NOT NULL checks still in place (added by this run's finished steps) are dropped."""
    spec = build_spec({"name": "t_pkey", "table": "t", "columns": ["a", "b"], "constraint": "primary_key"})
    steps = constraints.constraint_steps(spec, constraints.ConstraintFacts(not_null={"a": False, "b": False}))
    a_done, b_added = steps[:4], steps[4:5]  # a: added, validated, set, dropped; b: added
    assert [render(step.statement) for step in constraints.undo_steps(a_done + b_added)] == [
        'ALTER TABLE "public"."t" DROP CONSTRAINT IF EXISTS "b_indexops_nn"']
    assert constraints.undo_steps(a_done) == []


def test_a_replacement_name_fits_in_63_bytes_on_a_character_boundary():
    name = "é" * 40  # 80 bytes
    temp = names.replacement_name(name)
    assert temp.endswith(names.REPLACEMENT_SUFFIX) and len(temp.encode()) <= 63
    assert temp.encode().decode() == temp
