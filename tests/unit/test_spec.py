"""spec.build_spec and spec.duration_seconds: options in, a validated IndexSpec or a clear error out."""

from __future__ import annotations

import copy
import math

import pytest
from pglast import parse_sql

from ansible_collections.indexops.core.plugins.module_utils import spec as spec_mod
from ansible_collections.indexops.core.plugins.module_utils import sqlcompose
from ansible_collections.indexops.core.plugins.module_utils.errors import FIX_INPUT, IndexOpsError
from tests.unit.casefiles import cases, section
from tests.unit.sqlrender import render as render_sql

CASES = "spec.yml"
BASE = section(CASES, "base")
COLUMN_FIELDS = ("name", "expression", "opclass", "collation", "order", "nulls", "reads")


def as_tuples(value):
    """YAML lists -> tuples, the shape IndexSpec uses for every sequence."""
    if isinstance(value, list):
        return tuple(as_tuples(item) for item in value)
    return value


def assert_input_error(exc, fragments):
    """The error says what was wrong, what was expected, and that rerunning after a fix is safe."""
    assert isinstance(exc, IndexOpsError)
    assert exc.what and exc.what.strip(), "the error must say what was wrong"
    assert exc.expected and exc.expected.strip(), "the error must say what was expected"
    assert exc.retry_safe is False
    msg = exc.msg
    assert "Expected: " in msg
    assert FIX_INPUT in msg, "input errors must tell the operator nothing changed and to fix the input"
    assert str(exc) == msg
    lowered = msg.lower()
    missing = [fragment for fragment in fragments if fragment.lower() not in lowered]
    assert not missing, f"message {msg!r} does not mention {missing}"


def substitute(value, needle, replacement):
    if isinstance(value, str):
        return value.replace(needle, replacement)
    if isinstance(value, list):
        return [substitute(item, needle, replacement) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, needle, replacement) for key, item in value.items()}
    return value


# --------------------------------------------------------------------------- build_spec: good


@pytest.mark.parametrize("case", cases(CASES, "good"))
def test_build_spec_accepts(case):
    params = copy.deepcopy(case["params"])
    built = spec_mod.build_spec(params)
    assert isinstance(built, spec_mod.IndexSpec)
    for key, expected in case["expect"].items():
        if key == "columns":
            assert len(built.columns) == len(expected), "every listed column becomes one key column, in order"
            for position, (column, wanted) in enumerate(zip(built.columns, expected, strict=True)):
                for field, value in wanted.items():
                    assert field in COLUMN_FIELDS, f"case lists unknown column field {field}"
                    assert getattr(column, field) == as_tuples(value), f"columns[{position}].{field}"
        else:
            assert getattr(built, key) == as_tuples(expected), key
    assert params == case["params"], "build_spec must not modify the caller's options"


@pytest.mark.parametrize("case", cases(CASES, "good"))
def test_build_spec_qualified_table(case):
    built = spec_mod.build_spec(copy.deepcopy(case["params"]))
    assert built.qualified_table == f"{built.schema}.{built.table}"
    # every column a key, INCLUDE or WHERE reads is listed once, sorted, for the preflight check
    reads = {name for column in built.columns for name in column.reads} | set(built.include) | set(built.where_reads)
    assert built.referenced_columns == tuple(sorted(reads))


def test_build_spec_result_is_immutable():
    built = spec_mod.build_spec(dict(BASE))
    with pytest.raises(AttributeError):
        built.name = "other"  # frozen dataclass: a spec cannot drift after validation


# --------------------------------------------------------------------------- build_spec: bad


@pytest.mark.parametrize("case", cases(CASES, "bad"))
def test_build_spec_rejects(case):
    params = {**copy.deepcopy(BASE), **copy.deepcopy(case["params"])}
    with pytest.raises(IndexOpsError) as info:
        spec_mod.build_spec(params)
    assert_input_error(info.value, case["error"])


def _forbidden_params():
    params = []
    for field in section(CASES, "identifier_fields"):
        for bad in section(CASES, "forbidden_characters"):
            params.append(pytest.param(field, bad["text"], id=f"{field['id']}-{bad['id']}"))
    return params


@pytest.mark.parametrize(("field", "bad"), _forbidden_params())
def test_build_spec_rejects_forbidden_characters_in_identifiers(field, bad):
    params = {**copy.deepcopy(BASE), **substitute(field["params"], "<BAD>", bad)}
    with pytest.raises(IndexOpsError) as info:
        spec_mod.build_spec(params)
    assert_input_error(info.value, [field["what"], "not allowed", "no quotes, semicolons"])


@pytest.mark.parametrize("field", section(CASES, "identifier_fields"), ids=lambda field: field["id"])
def test_identifier_fields_template_is_valid_without_bad_text(field):
    """Guards the table above: each template is accepted once the forbidden text is removed."""
    params = {**copy.deepcopy(BASE), **substitute(field["params"], "<BAD>", "_")}
    assert spec_mod.build_spec(params).name


# --------------------------------------------------------------------------- build_target


def test_build_target_defaults_to_public_without_table():
    assert spec_mod.build_target({"name": "ix"}) == ("ix", "public", None)


def test_build_target_resolves_qualified_table():
    assert spec_mod.build_target({"name": "ix", "table": "sales.orders"}) == ("ix", "sales", "orders")


def test_build_target_rejects_schema_conflict():
    with pytest.raises(IndexOpsError) as info:
        spec_mod.build_target({"name": "ix", "table": "sales.orders", "schema": "public"})
    assert_input_error(info.value, ["schema given once"])


# --------------------------------------------------------------------------- duration_seconds


@pytest.mark.parametrize("case", section(CASES, "durations")["good"], ids=lambda case: case["id"])
def test_duration_seconds(case):
    assert math.isclose(spec_mod.duration_seconds(case["value"], "lock_timeout"), case["seconds"], rel_tol=1e-9)


@pytest.mark.parametrize("case", section(CASES, "durations")["bad"], ids=lambda case: case["id"])
def test_duration_seconds_rejects(case):
    with pytest.raises(IndexOpsError) as info:
        spec_mod.duration_seconds(case["value"], "lock_timeout")
    assert_input_error(info.value, ["lock_timeout", "not a duration", "'500ms'"])


# --------------------------------------------------------------------------- params_from_definition


@pytest.mark.parametrize("case", section(CASES, "definitions")["good"], ids=lambda case: case["id"])
def test_params_from_definition(case):
    params = spec_mod.params_from_definition(case["text"])
    for key, expected in case["expect"].items():
        if key == "columns":
            assert len(params["columns"]) == len(expected)
            for position, (column, wanted) in enumerate(zip(params["columns"], expected, strict=True)):
                for field, value in wanted.items():
                    assert column.get(field) == value, f"columns[{position}].{field}"
        else:
            assert params[key] == expected, key


@pytest.mark.parametrize("case", section(CASES, "definitions")["good"], ids=lambda case: case["id"])
def test_definition_round_trip_recreates_the_same_index(case):
    """Options from a recorded definition build a statement that records the very same options."""
    params = spec_mod.params_from_definition(case["text"])
    built = spec_mod.build_spec(params)
    statement = render_sql(sqlcompose.create_index(built, concurrently=False))
    assert spec_mod.params_from_definition(statement) == params
    original = parse_sql(case["text"])[0].stmt
    assert (built.schema, built.table, built.name) == (original.relation.schemaname, original.relation.relname,
                                                        original.idxname)


@pytest.mark.parametrize("kind", ["unique", "primary_key"])
@pytest.mark.parametrize("timing", [{}, {"deferrable": True}, {"deferrable": True, "initially_deferred": True}])
def test_a_recorded_constraint_definition_gives_back_the_constraint_options(kind, timing):
    """What the ledger records of an index that backs a constraint (constraints.recorded_definition)
    reads back into the same constraint options, and they build the same spec."""
    from ansible_collections.indexops.core.plugins.module_utils import constraints

    wanted = spec_mod.build_spec({"name": "t_key", "table": "public.t", "columns": ["a"], "constraint": kind,
                                  **timing})
    statement = render_sql(constraints.add_constraint("public", "t", "t_key", kind, **timing))
    text = constraints.recorded_definition("CREATE UNIQUE INDEX t_key ON public.t USING btree (a)",
                                           {"statement": statement})
    params = spec_mod.params_from_definition(text)
    assert (params["constraint"], params["deferrable"], params["initially_deferred"]) == (
        kind, timing.get("deferrable", False), timing.get("initially_deferred", False))
    assert spec_mod.build_spec(params) == wanted


@pytest.mark.parametrize("case", section(CASES, "definitions")["bad"], ids=lambda case: case["id"])
def test_params_from_definition_rejects(case):
    if "build_error" in case:
        params = spec_mod.params_from_definition(case["text"])
        with pytest.raises(IndexOpsError) as info:
            spec_mod.build_spec(params)
        assert_input_error(info.value, case["build_error"])
    else:
        with pytest.raises(IndexOpsError) as info:
            spec_mod.params_from_definition(case["text"])
        assert_input_error(info.value, case["error"])
