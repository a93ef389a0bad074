"""library/indexops_change.py run in-process as Ansible would: the example changes and bad files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.pg_index_runner import run_module

ROOT = Path(__file__).resolve().parents[2]
CHANGES = ROOT / "changes"
FIX_HINT = "Nothing was changed; fix the change file and run again."
RESULT_KEYS = {"id", "digest", "action", "database", "owner", "reason", "rollback_note", "expected", "index",
               "apply_args", "inverse_args", "changed"}

EXAMPLES = {
    "order-events-order-id": {
        "owner": "team-fulfilment",
        "apply_args": {
            "name": "order_events_order_id_idx",
            "table": "public.order_events",
            "columns": ["order_id", {"name": "created_at", "order": "desc"}],
            "state": "present",
            "on_mismatch": "fail",
            "expected": {
                "valid": True,
                "plan_uses_index": "SELECT kind, created_at FROM order_events WHERE order_id = 42 "
                                   "ORDER BY created_at DESC",
            },
        },
        "inverse_args": {"name": "order_events_order_id_idx", "table": "public.order_events", "state": "absent"},
    },
    "orders-customer-created": {
        "owner": "team-checkout",
        "apply_args": {
            "name": "orders_customer_created_idx",
            "table": "public.orders",
            "columns": ["customer_id", {"name": "created_at", "order": "desc"}],
            "state": "present",
            "on_mismatch": "fail",
            "expected": {
                "valid": True, "max_duration": "10min", "max_size": "500MB",
                "plan_uses_index": "SELECT id FROM orders WHERE customer_id = 42 ORDER BY created_at DESC LIMIT 20",
            },
        },
        "inverse_args": {"name": "orders_customer_created_idx", "table": "public.orders", "state": "absent"},
    },
    "orders-customer-order-key": {
        "owner": "team-checkout",
        "note": "Dropping the constraint also drops its index.",
        "apply_args": {
            "name": "orders_customer_id_id_key",
            "table": "public.orders",
            "columns": ["customer_id", "id"],
            "constraint": "unique",
            "state": "present",
            "on_mismatch": "fail",
            "expected": {
                "valid": True, "max_duration": "10min", "max_size": "500MB",
                "plan_uses_index": "SELECT id FROM orders WHERE customer_id = 42 ORDER BY id",
            },
        },
        "inverse_args": {"name": "orders_customer_id_id_key", "table": "public.orders", "state": "absent",
                         "drop_constraint": True},
    },
    "orders-open-email": {
        "owner": "team-support",
        "apply_args": {
            "name": "orders_open_email_idx",
            "table": "public.orders",
            "columns": [{"expression": "lower(email)"}],
            "include": ["total_cents"],
            "where": "status = 'pending'",
            "state": "present",
            "on_mismatch": "fail",
            "expected": {
                "valid": True,
                "plan_uses_index": ("SELECT id, total_cents FROM orders WHERE lower(email) = 'customer42@example.com' "
                                    "AND status = 'pending'"),
            },
        },
        "inverse_args": {"name": "orders_open_email_idx", "table": "public.orders", "state": "absent"},
    },
}


def run_change(path, check_mode=False, **options):
    return run_module("indexops_change", {"path": str(path), **options}, check_mode=check_mode)


@pytest.mark.parametrize("change_id", sorted(EXAMPLES))
def test_example_change(change_id):
    want = EXAMPLES[change_id]
    result = run_change(CHANGES / f"{change_id}.yml")
    assert "failed" not in result, result.get("msg")
    assert RESULT_KEYS <= set(result)
    assert result["id"] == change_id
    assert result["changed"] is False
    assert re.fullmatch(r"[0-9a-f]{64}", result["digest"])
    assert result["action"] == "create"
    assert result["database"] is None
    assert result["owner"] == want["owner"]
    assert result["reason"].startswith("OPS-")
    assert result["rollback_note"].startswith(want.get("note", "Dropping the index is safe at any time"))
    assert result["apply_args"] == want["apply_args"]
    assert result["inverse_args"] == want["inverse_args"]
    assert result["expected"] == want["apply_args"]["expected"]
    source = yaml.safe_load((CHANGES / f"{change_id}.yml").read_text(encoding="utf-8"))
    assert result["index"] == source["index"], "index is returned exactly as written"


def test_examples_have_different_digests():
    digests = {run_change(CHANGES / f"{change_id}.yml")["digest"] for change_id in EXAMPLES}
    assert len(digests) == len(EXAMPLES)


def test_check_mode_returns_the_same(tmp_path):
    path = CHANGES / "orders-open-email.yml"
    normal, checked = run_change(path), run_change(path, check_mode=True)
    assert checked == normal


def test_digest_survives_comment_and_key_order_edits(tmp_path):
    original = run_change(CHANGES / "orders-customer-created.yml")
    document = yaml.safe_load((CHANGES / "orders-customer-created.yml").read_text(encoding="utf-8"))
    document["index"] = dict(reversed(list(document["index"].items())))
    document["owner"] = "team-someone-else"
    copy = tmp_path / "orders-customer-created.yml"
    copy.write_text("# rewritten\n" + yaml.safe_dump(dict(reversed(list(document.items()))), sort_keys=False),
                    encoding="utf-8")
    assert run_change(copy)["digest"] == original["digest"]


def test_digest_changes_when_the_index_is_edited(tmp_path):
    original = run_change(CHANGES / "orders-customer-created.yml")
    copy = tmp_path / "orders-customer-created.yml"
    text = (CHANGES / "orders-customer-created.yml").read_text(encoding="utf-8")
    copy.write_text(text.replace("      order: desc\n", "      order: asc\n"), encoding="utf-8")
    edited = run_change(copy)
    assert "failed" not in edited, edited.get("msg")
    assert edited["digest"] != original["digest"]


def write_drop_change(tmp_path):
    path = tmp_path / "drop-old.yml"
    path.write_text(yaml.safe_dump({
        "id": "drop-old", "owner": "team-checkout", "reason": "OPS-1", "action": "drop",
        "index": {"name": "orders_old_idx", "table": "orders"}, "expected": {},
        "rollback": {"note": "Recreated from the definition recorded before the drop."},
    }), encoding="utf-8")
    return path


def test_drop_change_has_no_inverse_yet(tmp_path):
    path = write_drop_change(tmp_path)
    result = run_change(path)
    assert "failed" not in result, result.get("msg")
    assert result["apply_args"] == {"name": "orders_old_idx", "table": "orders", "state": "absent", "expected": {}}
    assert result["inverse_args"] is None


def test_drop_change_with_the_definition_before_recreates_it(tmp_path):
    path = write_drop_change(tmp_path)
    definition = "CREATE INDEX orders_old_idx ON public.orders USING btree (created_at)"
    result = run_change(path, definition_before=definition)
    assert "failed" not in result, result.get("msg")
    assert result["inverse_args"] == {"definition": definition, "state": "present", "on_mismatch": "replace"}


def test_create_change_ignores_the_definition_before():
    plain = run_change(CHANGES / "orders-customer-created.yml")
    given = run_change(CHANGES / "orders-customer-created.yml", definition_before="CREATE INDEX x ON orders (id)")
    assert given["inverse_args"] == plain["inverse_args"] == EXAMPLES["orders-customer-created"]["inverse_args"]


def assert_refused(result, path, *fragments):
    assert result["failed"] is True
    assert result.get("changed", False) is False
    msg = result["msg"]
    assert msg.startswith(f"{path}: "), msg
    assert "Expected: " in msg and msg.endswith(FIX_HINT)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"


def test_bad_field(tmp_path):
    path = tmp_path / "orders-customer-created.yml"
    text = (CHANGES / "orders-customer-created.yml").read_text(encoding="utf-8")
    path.write_text(text.replace("      order: desc\n", "      order: downwards\n"), encoding="utf-8")
    assert_refused(run_change(path), path, "index/columns/1/order: 'downwards'", "Expected: index/columns/1/order: asc")


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "orders-customer-created.yml"
    lines = (CHANGES / "orders-customer-created.yml").read_text(encoding="utf-8").splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines) if line.startswith("owner:"))
    lines[number] = "owner: team-checkout\n  broken: indentation\n"
    path.write_text("".join(lines), encoding="utf-8")
    assert_refused(run_change(path), path, f"line {number + 2}, column", "is not valid YAML")


def test_file_name_must_equal_id(tmp_path):
    path = tmp_path / "renamed.yml"
    shutil.copy(CHANGES / "orders-open-email.yml", path)
    assert_refused(run_change(path), path, "id: is 'orders-open-email' but the file is named renamed.yml")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yml"
    result = run_change(path)
    assert result["failed"] is True and result.get("changed", False) is False
    assert result["msg"].startswith(f"change file {path} does not exist. Expected: one of the change ids in "), \
        result["msg"]
    assert result["msg"].endswith("check -e change=<id> (the file name without .yml) and run again.")


def test_path_is_required():
    result = run_module("indexops_change", {})
    assert result["failed"] is True
    assert "path" in result["msg"]
