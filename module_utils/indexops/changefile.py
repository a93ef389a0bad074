"""Change files: one YAML file per index change, validated, digested and turned into module args.

The JSON Schema below is the contract for changes/*.yml; schemas/change.schema.json is the same
document for editors and is checked against this one by the unit tests.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict

from ansible.module_utils.indexops.errors import IndexOpsError, input_error
from ansible.module_utils.indexops.spec import build_spec, build_target, duration_seconds

ACTIONS = ("create", "drop", "rebuild", "replace")

COLUMN_SCHEMA = {
    "oneOf": [
        {"type": "string", "minLength": 1},
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "expression": {"type": "string"},
                "opclass": {"type": "string"},
                "collation": {"type": "string"},
                "order": {"enum": ["asc", "desc"]},
                "nulls": {"enum": ["first", "last"]},
            },
        },
    ]
}

CHANGE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://indexops.invalid/change.schema.json",
    "title": "indexops change file",
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "owner", "reason", "action", "index", "expected", "rollback"],
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,99}$",
               "description": "Unique id; the file is changes/<id>.yml"},
        "owner": {"type": "string", "minLength": 1, "description": "Team or person who owns the index"},
        "reason": {"type": "string", "minLength": 1, "description": "Ticket or link explaining why"},
        "database": {"type": "string", "minLength": 1,
                     "description": "Database name; defaults to the inventory's indexops_db"},
        "action": {"enum": list(ACTIONS)},
        "index": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "table": {"type": "string", "minLength": 1},
                "schema": {"type": "string", "minLength": 1},
                "columns": {"type": "array", "minItems": 1, "items": COLUMN_SCHEMA},
                "include": {"type": "array", "items": {"type": "string"}},
                "where": {"type": "string"},
                "method": {"enum": ["btree", "hash", "gist", "spgist", "gin", "brin"]},
                "unique": {"type": "boolean"},
                "nulls_not_distinct": {"type": "boolean"},
                "storage": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
                "tablespace": {"type": "string"},
            },
        },
        "expected": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "valid": {"type": "boolean"},
                "max_duration": {"type": "string", "description": "e.g. 10min, 2h"},
                "max_size": {"type": "string", "description": "e.g. 500MB, 2GB"},
                "plan_uses_index": {"type": "string", "description": "A SELECT whose EXPLAIN must use the index"},
            },
        },
        "rollback": {
            "type": "object",
            "additionalProperties": False,
            "required": ["note"],
            "properties": {"note": {"type": "string", "minLength": 1}},
        },
    },
    "allOf": [
        {"if": {"properties": {"action": {"enum": ["create", "replace"]}}},
         "then": {"properties": {"index": {"required": ["name", "table", "columns"]}}}},
    ],
}

SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|TB)?\s*$", re.IGNORECASE)
SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


def size_bytes(text, what):
    """'500MB' -> bytes, with PostgreSQL's 1024-based units."""
    match = SIZE.match(str(text))
    if not match:
        raise input_error(f"{what} {text!r} is not a size", "a size like 500MB or 2GB")
    return int(float(match.group(1)) * SIZE_UNITS[(match.group(2) or "b").lower()])


def change_error(field, problem, expected, path="<change>"):
    return IndexOpsError(f"{path}: {field}: {problem}", expected=expected,
                         hint="Nothing was changed; fix the change file and run again.")


def schema_errors(document):
    """Every schema violation as (field path, message), most specific first."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(CHANGE_SCHEMA)
    errors = sorted(validator.iter_errors(document), key=lambda e: (len(e.absolute_path), e.message))
    return [("/".join(str(p) for p in error.absolute_path) or "(top level)", error.message) for error in errors]


def validate_change(document, path="<change>", file_id=None):
    """Schema, then the index spec itself; returns the normalised spec used for the digest."""
    if not isinstance(document, dict):
        raise change_error("(top level)", "is not a mapping", "a YAML mapping with id, owner, reason, ...", path)
    problems = schema_errors(document)
    if problems:
        field, message = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise change_error(field, message + more, "a change file that matches schemas/change.schema.json", path)
    if file_id and document["id"] != file_id:
        raise change_error("id", f"is {document['id']!r} but the file is named {file_id}.yml",
                           "id equal to the file name", path)
    expected = document["expected"]
    if "max_duration" in expected:
        _checked(lambda: duration_seconds(expected["max_duration"], "max_duration"), "expected/max_duration", path)
    if "max_size" in expected:
        _checked(lambda: size_bytes(expected["max_size"], "max_size"), "expected/max_size", path)
    if "plan_uses_index" in document["expected"]:
        from ansible.module_utils.indexops.fragments import select_statement

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
    else:
        name, schema, table = build_target(index)
        spec = {"name": name, "schema": schema, "table": table}
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
        "drop": {**_locator(index), "state": "absent"},
        "rebuild": {**_locator(index), "state": "rebuilt"},
    }[document["action"]]


def inverse_args(document, definition_before=None):
    """The pg_index options that undo the change, or None when there is nothing to undo.

    create -> drop concurrently; drop and replace -> recreate the definition recorded in the ledger
    before the change; rebuild changes no definition, so it has no inverse.
    """
    action = document["action"]
    if action == "create":
        return {**_locator(document["index"]), "state": "absent"}
    if action in ("drop", "replace"):
        if not definition_before:
            return None
        return {"definition": definition_before, "state": "present", "on_mismatch": "replace"}
    return None


def _locator(index):
    return {key: index[key] for key in ("name", "table", "schema") if key in index}
