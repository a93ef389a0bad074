"""changefile: change files validated with messages naming file and field, digested, turned into pg_index options."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from ansible_collections.indexops.core.plugins.module_utils import changefile
from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError
from tests.unit.casefiles import cases, section

CASES = "changefile.yml"
BASE = section(CASES, "base")
ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schemas" / "change.schema.json"
EXAMPLES = sorted((ROOT / "changes").glob("*.yml"))
PATH = "changes/orders-customer-created.yml"
FIX_HINT = "Nothing was changed; fix the change file and run again."


def at(document, field):
    """(container, key) for a '/'-separated field path; list positions are numbers."""
    *parents, last = field.split("/")
    for part in parents:
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document, int(last) if isinstance(document, list) else last


def changed(case):
    """The base document with the case's `remove` and `set` applied."""
    document = copy.deepcopy(BASE)
    for field in case.get("remove", ()):
        container, key = at(document, field)
        del container[key]
    for field, value in (case.get("set") or {}).items():
        container, key = at(document, field)
        container[key] = copy.deepcopy(value)
    return document


def error_of(call):
    with pytest.raises(IndexOpsError) as info:
        call()
    return info.value


def assert_mentions(text, fragments):
    missing = [fragment for fragment in fragments if fragment.lower() not in text.lower()]
    assert not missing, f"{text!r} does not mention {missing}"


def digest_of(text, tmp_path, name):
    path = tmp_path / f"{name}.yml"
    path.write_text(text, encoding="utf-8")
    document = changefile.load_change_file(str(path))
    return changefile.digest(changefile.validate_change(document, str(path)))


# --------------------------------------------------------------------------- the schema


def test_schema_file_is_the_module_schema():
    on_disk = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert on_disk == changefile.CHANGE_SCHEMA, (
        "schemas/change.schema.json differs from changefile.CHANGE_SCHEMA; regenerate it with "
        "json.dumps(CHANGE_SCHEMA, indent=2) + newline")


def test_schema_file_is_pretty_printed():
    expected = json.dumps(changefile.CHANGE_SCHEMA, indent=2) + "\n"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == expected


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(changefile.CHANGE_SCHEMA)


def walk_properties(schema, path=""):
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}{name}", sub
        yield from walk_properties(sub, f"{path}{name}/")
    for branch in schema.get("oneOf", ()):
        yield from walk_properties(branch, path)
    if isinstance(schema.get("items"), dict):
        yield f"{path}<item>", schema["items"]
        yield from walk_properties(schema["items"], f"{path}<item>/")


@pytest.mark.parametrize("field, sub", list(walk_properties(changefile.CHANGE_SCHEMA)),
                         ids=[field for field, _ in walk_properties(changefile.CHANGE_SCHEMA)])
def test_every_field_says_what_is_expected(field, sub):
    """Each description is the 'Expected:' an operator reads for that field."""
    assert sub.get("description", "").strip(), f"{field} has no description"


# --------------------------------------------------------------------------- the example change files


def test_there_are_the_example_changes():
    assert [path.name for path in EXAMPLES] == ["order-events-order-id.yml", "orders-customer-created.yml",
                                                "orders-customer-order-key.yml",
                                                "orders-open-email.yml"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_change_is_valid(path):
    document = changefile.load_change_file(str(path))
    jsonschema.validate(document, changefile.CHANGE_SCHEMA)  # what an editor using the schema file sees
    normalised = changefile.validate_change(document, str(path), changefile.change_file_id(str(path)))
    assert normalised["index"]["schema"] == "public" and normalised["index"]["table"] in ("orders", "order_events")
    assert document["expected"]["valid"] is True
    assert document["expected"]["plan_uses_index"].startswith("SELECT")
    assert document["rollback"]["note"].strip()


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_explains_every_top_level_field(path):
    """The examples are the template people copy: a comment sits right above every top-level key."""
    lines = path.read_text(encoding="utf-8").splitlines()
    keys = [number for number, line in enumerate(lines) if re.match(r"^[a-z_]+:", line)]
    assert len(keys) >= 7
    uncommented = [lines[number] for number in keys if not lines[number - 1].startswith("#")]
    assert not uncommented, f"{path.name}: no comment above {uncommented}"


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("case", cases(CASES, "good"))
def test_valid_change(case):
    document = changed(case)
    before = copy.deepcopy(document)
    normalised = changefile.validate_change(document, PATH, "orders-customer-created")
    assert normalised["action"] == document["action"]
    assert normalised["database"] == case.get("expect_database", document.get("database"))
    assert normalised["index"]["name"] == document["index"]["name"]
    assert document == before, "validation must not modify the document"
    assert re.fullmatch(r"[0-9a-f]{64}", changefile.digest(normalised))


@pytest.mark.parametrize("case", cases(CASES, "bad"))
def test_bad_change_names_file_field_and_expectation(case):
    exc = error_of(lambda: changefile.validate_change(changed(case), PATH, "orders-customer-created"))
    msg = exc.msg
    assert msg.startswith(f"{PATH}: {case['field']}: "), msg
    assert exc.retry_safe is False
    assert msg.endswith(FIX_HINT)
    problem, _, expected = msg.partition(" Expected: ")
    assert expected, f"no 'Expected:' in {msg!r}"
    assert_mentions(problem, case["says"])
    assert_mentions(expected.removesuffix(FIX_HINT), case["expects"])
    for phrase in case.get("not_says", ()):
        assert phrase not in problem, problem


@pytest.mark.parametrize("case", cases(CASES, "bad"))
def test_schema_problems_agree(case):
    """schema_problems lists the field first, unless the spec rules after the schema catch it."""
    fields = [field for field, _what, _expected in changefile.schema_problems(changed(case))]
    if fields:
        assert fields[0] == case["field"]
    else:
        assert case["field"] in ("id", "index", "expected/max_duration", "expected/max_size",
                                 "expected/plan_uses_index")


@pytest.mark.parametrize("case", cases(CASES, "yaml"))
def test_yaml_error_names_file_and_line(case, tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text(case["text"], encoding="utf-8")
    msg = error_of(lambda: changefile.load_change_file(str(path))).msg
    assert msg.startswith(f"{path}: line {case['line']}, column "), msg
    assert "is not valid YAML" in msg and "Expected: valid YAML" in msg
    assert_mentions(msg, case["says"])
    assert msg.endswith(FIX_HINT)


@pytest.mark.parametrize("case", cases(CASES, "not_a_mapping"))
def test_file_that_is_not_a_mapping(case, tmp_path):
    path = tmp_path / "x.yml"
    path.write_text(case["text"], encoding="utf-8")
    document = changefile.load_change_file(str(path))
    msg = error_of(lambda: changefile.validate_change(document, str(path), "x")).msg
    assert msg.startswith(f"{path}: ")
    assert_mentions(msg, case["says"] + ["Expected: a YAML mapping with the keys id, owner"])


def test_a_missing_file_names_the_ids_that_exist_and_the_closest(tmp_path):
    for change_id in ("orders-customer-created", "orders-open-email"):
        (tmp_path / f"{change_id}.yml").write_text("id: x\n")
    path = tmp_path / "orders-customer-craeted.yml"
    msg = error_of(lambda: changefile.load_change_file(str(path))).msg
    assert msg.startswith(f"change file {path} does not exist (did you mean orders-customer-created?). ")
    assert f"Expected: one of the change ids in {tmp_path}: orders-customer-created, orders-open-email." in msg
    assert msg.endswith("check -e change=<id> (the file name without .yml) and run again.")
    assert "fix the change file" not in msg


def test_a_missing_file_far_from_every_id_gets_no_guess(tmp_path):
    (tmp_path / "orders-open-email.yml").write_text("id: x\n")
    msg = error_of(lambda: changefile.load_change_file(str(tmp_path / "zzz.yml"))).msg
    assert "does not exist. " in msg and "did you mean" not in msg


def test_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.yml"
    path.write_bytes("owner: J\xf6rg\n".encode("latin-1"))
    msg = error_of(lambda: changefile.load_change_file(str(path))).msg
    assert msg.startswith(f"{path}: file: cannot be read: is not UTF-8 text")


def test_loader_builds_no_python_objects(tmp_path):
    path = tmp_path / "evil.yml"
    path.write_text("id: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    msg = error_of(lambda: changefile.load_change_file(str(path))).msg
    assert msg.startswith(f"{path}: line 1, column 5: is not valid YAML"), msg


@pytest.mark.parametrize("case", section(CASES, "file_ids"), ids=lambda case: case["path"])
def test_change_file_id(case):
    assert changefile.change_file_id(case["path"]) == case["id"]


@pytest.mark.parametrize("case", section(CASES, "bad_file_ids"), ids=lambda case: case["path"])
def test_bad_change_file_name(case):
    msg = error_of(lambda: changefile.change_file_id(case["path"])).msg
    assert msg.startswith(f"{case['path']}: file name: ")
    assert "Expected: a change file named changes/<id>.yml" in msg
    assert_mentions(msg, case["says"])


# --------------------------------------------------------------------------- digest


@pytest.mark.parametrize("case", cases(CASES, "digest_same"))
def test_digest_ignores(case, tmp_path):
    assert digest_of(case["a"], tmp_path, "a") == digest_of(case["b"], tmp_path, "b"), case["because"]


@pytest.mark.parametrize("case", cases(CASES, "digest_different"))
def test_digest_changes_when(case, tmp_path):
    assert digest_of(case["a"], tmp_path, "a") != digest_of(case["b"], tmp_path, "b"), case["because"]


def test_digest_of_example_survives_reformatting(tmp_path):
    """Dumping the example without its comments, keys sorted, gives the same digest."""
    for path in EXAMPLES:
        original = digest_of(path.read_text(encoding="utf-8"), tmp_path, "original")
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        rewritten = yaml.safe_dump(document, sort_keys=True, default_flow_style=True, width=10_000)
        assert "#" not in rewritten
        assert digest_of(rewritten, tmp_path, "rewritten") == original


def test_a_change_without_a_constraint_keeps_the_digest_it_had_before_constraints_existed():
    """Rehearsals are found by digest: adding the constraint options must not invalidate old ones.
    The value is the digest of changes/orders-customer-created.yml computed before constraint support."""
    document = changefile.load_change_file(str(ROOT / "changes" / "orders-customer-created.yml"))
    assert changefile.digest(changefile.validate_change(document)) == (
        "d2eb664bb81b1820e12da274ab4394b964af6988c1b364201536e3f6c9762378")


def test_digest_is_sha256_of_canonical_json():
    normalised = {"b": [1, 2], "a": {"y": None, "x": "é"}}
    canonical = '{"a":{"x":"\\u00e9","y":null},"b":[1,2]}'
    assert changefile.digest(normalised) == hashlib.sha256(canonical.encode()).hexdigest()


# --------------------------------------------------------------------------- pg_index options


@pytest.mark.parametrize("case", cases(CASES, "args"))
def test_pg_index_args_and_inverse(case):
    document = changed(case)
    changefile.validate_change(document, PATH)
    assert changefile.pg_index_args(document) == case["apply"]
    assert changefile.inverse_args(document) == case["inverse"]
    definition = "CREATE INDEX orders_customer_created_idx ON public.orders USING btree (customer_id)"
    assert changefile.inverse_args(document, definition) == case["inverse_with_definition"]


def test_pg_index_args_do_not_share_the_document():
    document = changed({})
    args = changefile.pg_index_args(document)
    args["name"] = "other"
    assert document["index"]["name"] == "orders_customer_created_idx"
