"""Change files: one YAML file per index change, validated, digested and turned into module args.

The JSON Schema below is the contract for changes/*.yml; schemas/change.schema.json is the same
document for editors and is checked against this one by the unit tests.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Hashable
from dataclasses import asdict

import yaml

from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError
from ansible_collections.indexops.core.plugins.module_utils.spec import (
    build_spec,
    build_target,
    duration_seconds,
    size_bytes,
)

ACTIONS = ("create", "drop", "rebuild", "replace")

COLUMN_SCHEMA = {
    "description": ("a column name, or a mapping with name or expression plus optional opclass, collation, "
                    "order (asc|desc) and nulls (first|last)"),
    "oneOf": [
        {"type": "string", "minLength": 1},
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "description": "a column of the table"},
                "expression": {"type": "string", "description": "one SQL expression, e.g. lower(email)"},
                "opclass": {"type": "string", "description": "an operator class, e.g. text_pattern_ops"},
                "collation": {"type": "string", "description": "a collation, e.g. C"},
                "order": {"enum": ["asc", "desc"], "description": "asc or desc (btree only)"},
                "nulls": {"enum": ["first", "last"], "description": "first or last (btree only)"},
            },
        },
    ],
}

# Every property carries a description phrased as what a valid value looks like: it is the
# "Expected:" part of the error message an operator sees for that field.
CHANGE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://indexops.invalid/change.schema.json",
    "title": "indexops change file",
    "description": "One index change, stored as changes/<id>.yml (one file per change).",
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "owner", "reason", "action", "index", "expected", "rollback"],
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,99}$",
               "description": ("lower-case letters, digits, '.', '_' or '-', starting with a letter or digit, "
                               "at most 100 characters; the file is changes/<id>.yml")},
        "owner": {"type": "string", "minLength": 1,
                  "description": "the team or person who owns the index, e.g. team-checkout"},
        "reason": {"type": "string", "minLength": 1,
                   "description": "the ticket or link that explains why, e.g. https://tracker.example.com/OPS-123"},
        "database": {"type": "string", "minLength": 1,
                     "description": "a database name; omit it to use the inventory's indexops_db"},
        "action": {"enum": list(ACTIONS), "description": "one of " + ", ".join(ACTIONS)},
        "index": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "description": ("the pg_index spec: name, table, columns and optionally schema, include, where, "
                            "method, unique, nulls_not_distinct, storage, tablespace, constraint, deferrable, "
                            "initially_deferred, drop_constraint"),
            "properties": {
                "name": {"type": "string", "minLength": 1, "description": "the index name, at most 63 bytes"},
                "table": {"type": "string", "minLength": 1,
                          "description": "the table, optionally schema-qualified, e.g. orders or sales.orders"},
                "schema": {"type": "string", "minLength": 1,
                           "description": "the schema, when table is not qualified (default public)"},
                "columns": {"type": "array", "minItems": 1, "items": COLUMN_SCHEMA,
                            "description": "a non-empty list of key columns, in order"},
                "include": {"type": "array", "items": {"type": "string", "description": "a column name"},
                            "description": "a list of column names stored in the index (INCLUDE)"},
                "where": {"type": "string",
                          "description": "one SQL predicate for a partial index, e.g. status = 'pending'"},
                "method": {"enum": ["btree", "hash", "gist", "spgist", "gin", "brin"],
                           "description": "btree, hash, gist, spgist, gin or brin"},
                "unique": {"type": "boolean", "description": "true or false"},
                "nulls_not_distinct": {"type": "boolean", "description": "true or false (needs unique)"},
                "storage": {"type": "object",
                            "additionalProperties": {"type": ["string", "number", "boolean"],
                                                     "description": "a number, a word, or true/false"},
                            "description": "storage parameters as name: value, e.g. {fillfactor: 90}"},
                "tablespace": {"type": "string", "description": "a tablespace name"},
                "constraint": {"enum": ["unique", "primary_key"],
                               "description": ("unique or primary_key: the index (create, replace) then backs that "
                                               "constraint, under the index's name")},
                "deferrable": {"type": "boolean", "description": "true or false (needs constraint)"},
                "initially_deferred": {"type": "boolean",
                                       "description": "true or false (needs constraint and deferrable)"},
                "drop_constraint": {"type": "boolean",
                                    "description": ("true or false: for drop, drop the UNIQUE or PRIMARY KEY "
                                                    "constraint the index backs, and so the index")},
            },
        },
        "expected": {
            "type": "object",
            "additionalProperties": False,
            "description": "a mapping with any of valid, max_duration, max_size and plan_uses_index",
            "properties": {
                "valid": {"type": "boolean", "description": "true or false: the index is valid afterwards"},
                "max_duration": {"type": "string", "description": "a duration like 10min or 2h"},
                "max_size": {"type": "string", "description": "a size like 500MB or 2GB"},
                "plan_uses_index": {"type": "string",
                                    "description": "a SELECT whose EXPLAIN must use the index after the change"},
            },
        },
        "rollback": {
            "type": "object",
            "additionalProperties": False,
            "required": ["note"],
            "description": "a mapping with note",
            "properties": {"note": {"type": "string", "minLength": 1,
                                    "description": "what to do and to watch when this change is rolled back"}},
        },
    },
    "allOf": [
        {"if": {"properties": {"action": {"enum": ["create", "replace"]}}},
         "then": {"properties": {"index": {"required": ["name", "table", "columns"]}}}},
    ],
}

def change_error(field, problem, expected, path="<change>"):
    return IndexOpsError(f"{path}: {field}: {problem}", expected=expected,
                         hint="Nothing was changed; fix the change file and run again.")


class _ChangeLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice is an error instead of silently winning."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # SafeLoader itself reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def change_file_id(path):
    """The change id a file name promises: changes/<id>.yml -> <id>."""
    name = os.path.basename(str(path))
    if not name.endswith(".yml") or name == ".yml":
        raise change_error("file name", f"{name!r} does not end in .yml", "a change file named changes/<id>.yml", path)
    return name[: -len(".yml")]


def missing_change(path):
    """(problem, expected) for a change file that does not exist: the ids that do, and the closest one."""
    folder = os.path.dirname(str(path)) or "."
    try:
        known = sorted(name[: -len(".yml")] for name in os.listdir(folder) if name.endswith(".yml"))
    except OSError:
        known = []
    meant = closest(os.path.basename(str(path)).removesuffix(".yml"), known, cutoff=0.6)
    return f"does not exist{did_you_mean(meant)}", f"one of the change ids in {folder}: {', '.join(known) or '(none)'}"


def load_change_file(path):
    """The YAML document of a change file; an unreadable file or a YAML error names the file and line."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        problem, expected = missing_change(path)
        # The change id on the command line is what is wrong, not a file to fix.
        raise IndexOpsError(f"change file {path} {problem}", expected=expected,
                            hint="Nothing was changed; check -e change=<id> (the file name without .yml) and run "
                                 "again.") from None
    except (OSError, UnicodeDecodeError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) else f"is not UTF-8 text ({exc.reason})"
        raise change_error("file", f"cannot be read: {problem}", "a readable UTF-8 file changes/<id>.yml",
                           path) from None
    try:
        return yaml.load(text, Loader=_ChangeLoader)  # a SafeLoader: no Python objects are built
    except yaml.MarkedYAMLError as exc:
        raise change_error(*_yaml_problem(exc), "valid YAML: check the indentation, quoting and colons there",
                           path) from None
    except yaml.YAMLError as exc:
        raise change_error("YAML", f"is not valid YAML: {exc}", "a valid YAML document", path) from None


def _yaml_problem(exc):
    """(where, what) of a YAML error: the line and column of the problem, and where its context began."""
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
    problem = f"is not valid YAML: {exc.problem or exc.context or exc}"
    if "'\\t'" in problem:
        problem += " (a tab: YAML indents with spaces only)"
    if exc.context and exc.problem:
        began = exc.context_mark
        problem += f" ({exc.context}" + (f" that began at line {began.line + 1})" if began else ")")
    return where, problem


def schema_problems(document):
    """Every schema violation as (field path, what is wrong, what was expected), shallowest first."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(CHANGE_SCHEMA)
    problems = []
    for error in validator.iter_errors(document):
        for problem in _explain(error):
            if problem not in problems:
                problems.append(problem)
    # A misspelt key is one mistake, not two: "colums is not a known key (did you mean columns?)"
    # stands for "columns is missing" as well.
    meant = {stands_for for *_, stands_for in problems if stands_for}
    problems = [(field, problem, expected) for field, problem, expected, _ in problems
                if not (problem == "is missing" and field in meant)]
    return sorted(problems, key=lambda item: (item[0].count("/"), item[0], item[1]))


def closest(word, candidates, cutoff=0.8):
    """The candidate a mistyped ``word`` most likely meant, or None when none is close."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    return match[0] if match else None


def did_you_mean(word):
    return f" (did you mean {word}?)" if word else ""


def _explain(error):
    """(field, problem, expected, the field a misspelt key stands for or None) for one jsonschema
    error, naming the exact key when one is at fault."""
    path = [str(part) for part in error.absolute_path]
    if error.validator == "required":
        return [(_field(path + [key]), "is missing", _described(path + [key], error.schema), None)
                for key in error.validator_value if key not in error.instance]
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = list(error.schema.get("properties", {}))
        unknown = [(str(key), closest(str(key), known)) for key in error.instance if key not in known]
        expected = "one of the keys " + ", ".join(known)
        return [(_field(path + [key]), "is not a known key" + did_you_mean(meant), expected,
                 _field(path + [meant]) if meant else None) for key, meant in unknown]
    if error.validator == "oneOf" and error.context:
        branch = _matching_branch(error)
        inner = [sub for sub in error.context if sub.relative_schema_path[0] == branch]
        if inner:
            return [item for sub in inner for item in _explain(sub)]
    return [(_field(path), error.message, _described(path, error.schema), None)]


def _matching_branch(error):
    """Index of the oneOf branch whose type fits the value (a mapping or a string)."""
    wanted = "object" if isinstance(error.instance, dict) else "string" if isinstance(error.instance, str) else None
    for index, branch in enumerate(error.validator_value):
        if branch.get("type") == wanted:
            return index
    return None


def _schema_at(parts):
    """The part of CHANGE_SCHEMA that describes the value at ``parts``, or None."""
    node = CHANGE_SCHEMA
    for part in parts:
        candidates = [node, *node.get("oneOf", ())]
        node = next((c["properties"][part] for c in candidates if part in c.get("properties", {})), None)
        if node is None and part.isdigit():
            node = next((c["items"] for c in candidates if isinstance(c.get("items"), dict)), None)
        if node is None:
            node = next((c["additionalProperties"] for c in candidates
                         if isinstance(c.get("additionalProperties"), dict)), None)
        if node is None:
            return None
    return node


def _field(parts):
    return "/".join(parts) or "(top level)"


def _described(parts, fallback_schema):
    """'field: what a valid value looks like', from the schema's description of that field."""
    schema = _schema_at(parts) or fallback_schema
    description = schema.get("description") if isinstance(schema, dict) else None
    if description:
        return f"{_field(parts)}: {description}"
    return f"{_field(parts)} as schemas/change.schema.json describes it"


def validate_change(document, path="<change>", file_id=None):
    """Schema, then the index spec itself; returns the normalised spec used for the digest."""
    if not isinstance(document, dict):
        problem = "is empty" if document is None else f"is a {type(document).__name__}, not a mapping"
        keys = ", ".join(CHANGE_SCHEMA["required"])
        raise change_error("(top level)", problem, f"a YAML mapping with the keys {keys}", path)
    problems = schema_problems(document)
    if problems:
        field, problem, expected = problems[0]
        others = sorted({other for other, _, _ in problems[1:] if other != field})
        more = f" (and {len(problems) - 1} more, in {', '.join(others) or field})" if len(problems) > 1 else ""
        raise change_error(field, problem + more, expected, path)
    if file_id and document["id"] != file_id:
        raise change_error("id", f"is {document['id']!r} but the file is named {file_id}.yml",
                           "id equal to the file name", path)
    expected = document["expected"]
    if "max_duration" in expected:
        _checked(lambda: duration_seconds(expected["max_duration"], "max_duration"), "expected/max_duration", path)
    if "max_size" in expected:
        _checked(lambda: size_bytes(expected["max_size"], "max_size"), "expected/max_size", path)
    if "plan_uses_index" in document["expected"]:
        from ansible_collections.indexops.core.plugins.module_utils.fragments import select_statement

        _checked(lambda: select_statement(document["expected"]["plan_uses_index"]), "expected/plan_uses_index", path)
    return _checked(lambda: normalised_spec(document), "index", path)


def _checked(call, field, path):
    try:
        return call()
    except IndexOpsError as exc:
        raise change_error(field, exc.what, exc.expected or "a valid value", path) from None


def normalised_spec(document):
    """What the change does, independent of formatting: the input to the digest."""
    index = document["index"]
    if document["action"] in ("create", "replace"):
        spec = asdict(build_spec(index))
        if spec["constraint"] is None:  # so that the digests of changes without a constraint stay as they were
            del spec["constraint"]
    else:
        name, schema, table = build_target(index)
        spec = {"name": name, "schema": schema, "table": table}
        if document["action"] == "drop" and index.get("drop_constraint"):  # absent: digests stay as they were
            spec["drop_constraint"] = True
    return {"action": document["action"], "database": document.get("database"), "index": spec}


def digest(normalised):
    """sha256 of the normalised change: comments, key order and whitespace do not change it."""
    text = json.dumps(normalised, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def pg_index_args(document):
    """The pg_index options that carry out the change."""
    index = dict(document["index"])
    return {
        "create": {**index, "state": "present", "on_mismatch": "fail"},
        "replace": {**index, "state": "present", "on_mismatch": "replace"},
        "drop": {**_locator(index), "state": "absent", **_drop_constraint(index)},
        "rebuild": {**_locator(index), "state": "rebuilt"},
    }[document["action"]]


def inverse_args(document, definition_before=None):
    """The pg_index options that undo the change, or None when there is nothing to undo.

    create -> drop concurrently (with a constraint: drop the constraint, which drops its index); drop
    and replace -> recreate the definition recorded in the ledger before the change (with the
    constraint it backed: constraints.recorded_definition); rebuild changes no definition, so it has no
    inverse.
    """
    action = document["action"]
    if action == "create":
        index = document["index"]
        return {**_locator(index), "state": "absent", **({"drop_constraint": True} if index.get("constraint") else {})}
    if action in ("drop", "replace"):
        if not definition_before:
            return None
        return {"definition": definition_before, "state": "present", "on_mismatch": "replace"}
    return None


def _drop_constraint(index):
    return {"drop_constraint": True} if index.get("drop_constraint") else {}


def _locator(index):
    return {key: index[key] for key in ("name", "table", "schema") if key in index}
