"""ledger.refusal: which catalog facts make the ledger untrusted (pure; the catalog reads are tested
against real PostgreSQL in tests/integration/test_security.py)."""

from __future__ import annotations

import pytest

from ansible_collections.indexops.core.plugins.module_utils.ledger import LedgerFacts, refusal

SCHEMA = {"kind": "schema", "name": "indexops", "relkind": None, "oid": 1, "owner": "indexops"}
TABLE = {"kind": "table", "name": "indexops.jobs", "relkind": "r", "oid": 2, "owner": "indexops"}
INDEX = {"kind": "index", "name": "indexops.jobs_change_idx", "relkind": "i", "oid": 3, "owner": "indexops"}
CLEAN = {"row_security": False, "triggers": [], "rules": [], "policies": [], "inheritance": [], "foreign_code": []}


def facts(objects=(SCHEMA, TABLE, INDEX), code=None, owner=None, grants=()):
    return LedgerFacts(role="indexops", trusted=tuple(filter(None, ("indexops", owner))), objects=list(objects),
                       table_code={**CLEAN, **(code or {})}, grants=list(grants))


def test_no_schema_and_our_own_ledger_are_trusted():
    assert refusal(LedgerFacts(role="indexops", trusted=("indexops",))) is None
    assert refusal(facts()) is None


@pytest.mark.parametrize(("ledger", "message"), [
    (facts([{**SCHEMA, "owner": "app"}]), "schema indexops is owned by role app, not by indexops"),
    (facts([SCHEMA, {**TABLE, "owner": "app"}]), "table indexops.jobs is owned by role app, not by indexops"),
    (facts([SCHEMA, TABLE, {"kind": "function", "name": "indexops.now()", "relkind": None, "oid": 9,
                            "owner": "app"}]), "function indexops.now() is owned by role app"),
    (facts([SCHEMA, {**TABLE, "kind": "view", "relkind": "v"}]), "indexops.jobs is a view, not a plain table"),
    (facts([SCHEMA, {**TABLE, "kind": "partitioned table", "relkind": "p"}]), "is a partitioned table"),
    (facts(code={"triggers": ["pwn"]}), "table indexops.jobs has a trigger pwn that indexops did not create"),
    (facts(code={"rules": ["spy"]}), "has a rule spy"),
    (facts(code={"policies": ["p"]}), "has a row-level security policy p"),
    (facts(code={"row_security": True}), "has row-level security enabled"),
    (facts(code={"inheritance": ["public.child"]}), "has an inheritance parent or child public.child"),
    (facts(code={"foreign_code": ["function public.evil()"]}),
     "default, constraint, index or column type using function public.evil()"),
])
def test_anything_not_ours_is_refused_with_the_object_and_its_owner(ledger, message):
    assert message in refusal(ledger).what


def test_a_shared_owner_named_in_the_policy_is_trusted_as_well_as_the_login_role():
    shared = [{**SCHEMA, "owner": "ledger_team"}, TABLE, INDEX]
    assert refusal(facts(shared)) is not None
    assert refusal(facts(shared, owner="ledger_team")) is None


@pytest.mark.parametrize(("grant", "message", "fix"), [
    ({"kind": "schema", "name": "indexops", "privilege": "CREATE", "grantee": "PUBLIC"},
     "schema indexops grants CREATE to PUBLIC", "REVOKE CREATE ON SCHEMA indexops FROM PUBLIC;"),
    ({"kind": "table", "name": "indexops.jobs", "privilege": "TRIGGER", "grantee": "app"},
     "table indexops.jobs grants TRIGGER to role app", "REVOKE TRIGGER ON indexops.jobs FROM app;"),
])
def test_a_grant_that_lets_another_role_add_code_is_refused_with_the_revoke_to_run(grant, message, fix):
    problem = refusal(facts(grants=[grant]))
    assert message in problem.what
    assert fix in problem.fix and problem.item["owner"] == "indexops"


def test_grants_to_the_trusted_roles_themselves_are_fine():
    grants = [{"kind": "schema", "name": "indexops", "privilege": "CREATE", "grantee": "indexops"},
              {"kind": "table", "name": "indexops.jobs", "privilege": "TRIGGER", "grantee": "ledger_team"}]
    assert refusal(facts(grants=grants, owner="ledger_team")) is None
