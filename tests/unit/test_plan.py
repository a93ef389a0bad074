"""plan.py: every branch of state present, absent and rebuilt, decided from facts without a database
(tests/unit/cases/plan.yml). That index_job.py reads those facts from a real server and carries the
plan out is tested in tests/integration/test_pg_index_present.py, test_pg_index_states.py and
test_pg_index_failures.py."""

from __future__ import annotations

import pytest

from ansible_collections.indexops.core.plugins.module_utils import constraints, names, partitions, plan
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


PARENT_OID = 100
INDEX_OID = 1


def partition_tree(case):
    """PartitionedFacts from a case's compact description (see plan.yml, section partitioned)."""
    oids = {"p": PARENT_OID}
    index_oids = {"p_a_idx": INDEX_OID}
    for number, item in enumerate(case.get("partitions", []), start=1):
        oids[item["table"]] = PARENT_OID + number
        for count, index_item in enumerate(item.get("indexes", []), start=1):
            index_oids[index_item["name"]] = 1000 * number + count
    index_oids.setdefault("other", 999)
    parts = []
    for item in case.get("partitions", []):
        leaf = item.get("leaf", True)
        row = {"oid": oids[item["table"]], "parent_oid": oids[item.get("parent", "p")], "leaf": leaf,
               "level": 2 if item.get("parent") else 1, "relkind": item.get("relkind", "r" if leaf else "p"),
               "schema": "public", "table": item["table"], "owner": item.get("owner", "app"),
               "owned": item.get("owned", True), "table_bytes": 8192}
        indexes = []
        for index_item in item.get("indexes", []):
            fields = dict(index_item)
            name = fields.pop("name")
            attached = fields.pop("attached_to", None)
            fields.setdefault("definition", f"CREATE INDEX {name} ON public.{item['table']} USING btree (a)")
            built = index({"oid": index_oids[name], "relkind": "i" if leaf else "I", "table_oid": row["oid"],
                           "table": item["table"], **fields}, name)
            built.row["attached_to"] = index_oids[attached] if attached else None
            indexes.append(built)
        parts.append(partitions.Partition(row, indexes, item.get("key", [])))
    return partitions.PartitionedFacts(key=case.get("key", ["id"]), partitions=parts)


def decided_partitions(outcome, expect):
    decided(outcome, expect)
    if "partitions" in expect:
        got = [(part["partition"], part["action"]) for part in outcome.partitions]
        assert len(got) == len(expect["partitions"]), got
        for (label, action), (want_label, want_action) in zip(got, expect["partitions"], strict=True):
            assert label == want_label and action.startswith(want_action), got


@pytest.mark.parametrize("case", cases(CASES, "partitioned"))
def test_partitioned(case):
    spec = build_spec(case["spec"])
    wanted = case.get("wanted", f"CREATE {'UNIQUE ' if spec.unique else ''}INDEX p_a_idx ON public.p USING btree "
                                f"({', '.join(column.name for column in spec.columns)})")
    existing = case.get("existing")
    facts = plan.PresentFacts(spec=spec, wanted=wanted, table_oid=PARENT_OID,
                              existing=index({"oid": INDEX_OID, "table_oid": PARENT_OID, "table": "p", **existing},
                                             "p_a_idx") if existing else None,
                              partitioned=partition_tree(case))
    decided_partitions(plan.plan_present(facts, Safety(**case.get("safety", {}))), case["expect"])


@pytest.mark.parametrize("case", cases(CASES, "partitioned_rebuilt"))
def test_partitioned_rebuilt(case):
    existing = index({"oid": INDEX_OID, "relkind": "I", "table_oid": PARENT_OID, "table": "p",
                      "definition": "CREATE INDEX p_a_idx ON ONLY public.p USING btree (a)"}, "p_a_idx")
    leftovers = {name: [index(item, item["name"]) for item in items]
                 for name, items in case.get("leftovers", {}).items()}
    facts = plan.ExistingFacts("public", "p_a_idx", existing, partitioned=partition_tree(case),
                               partition_leftovers=leftovers)
    decided_partitions(plan.plan_rebuilt(facts, Safety(**case.get("safety", {}))), case["expect"])


def test_a_partition_index_name_fits_in_63_bytes_and_long_names_stay_apart():
    assert names.partition_index_name("orders_created_idx", "orders_2026_01") == "orders_created_idx_orders_2026_01"
    first = names.partition_index_name("i" * 40, "orders_2026_01_" + "x" * 20)
    second = names.partition_index_name("i" * 40, "orders_2026_02_" + "x" * 20)
    assert len(first.encode()) <= 63 and len(second.encode()) <= 63
    assert first != second
    wide = names.partition_index_name("é" * 30, "ö" * 30)
    assert len(wide.encode()) <= 63 and wide.encode().decode() == wide
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
    states = ("present", "absent", "rebuilt", "constraint_present", "constraint_absent", "partitioned",
              "partitioned_rebuilt")
    expects = [case["expect"] for state in states for case in section(CASES, state)]
    codes = {plan.BEING_BUILT, plan.INVALID, plan.MISMATCH, plan.CONSTRAINT, plan.REPLACE_PARTITIONED, plan.MISSING,
             partitions.PARTITION_KEY, partitions.PARTITION_OWNER, partitions.PARTITION_FOREIGN,
             partitions.PARTITION_NAME, partitions.PARTITION_ATTACHED_INVALID,
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
