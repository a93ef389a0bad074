"""The runbook flows on a partitioned table, through the real ansible-playbook: the example change
changes/order-events-order-id.yml on public.order_events as the sandbox seeds it (quarters of 2024,
the last one partitioned again by kind, and a default partition). Preflight, apply (with writers on
every partition), status, rollback, and the rollback of a drop that recreates the partitioned index.
"""

from __future__ import annotations

import pytest

from scripts.sandbox import ORDER_EVENTS_DDL, ORDER_EVENTS_SEED
from tests.playbooks.test_flows import ROWS, Flows, new_flows, ok

pytestmark = pytest.mark.playbook

CHANGE = "order-events-order-id"
INDEX = "order_events_order_id_idx"
LEAVES = ("order_events_2024q1", "order_events_2024q2", "order_events_2024q3", "order_events_2024q4_other",
          "order_events_2024q4_shipping", "order_events_default")


@pytest.fixture
def pflows(db, run_playbook, environment_inventory, tmp_path) -> Flows:
    return new_flows(db, run_playbook, environment_inventory, tmp_path, ORDER_EVENTS_DDL, ORDER_EVENTS_SEED,
                     "ANALYZE public.order_events")


def attached_leaf_indexes(db, index=INDEX):
    """{leaf partition: its index} for every leaf index under the partitioned index, any level."""
    rows = db.fetchall(
        "SELECT t.relname, c.relname FROM pg_partition_tree(to_regclass(%s)) pt "
        "JOIN pg_class c ON c.oid = pt.relid JOIN pg_index i ON i.indexrelid = c.oid "
        "JOIN pg_class t ON t.oid = i.indrelid WHERE pt.isleaf", (f"public.{index}",))
    return dict(rows)


def test_preflight_apply_status_and_rollback_of_an_index_on_a_partitioned_table(pflows):
    preflight = pflows.run("preflight", change=CHANGE)
    ok(preflight)
    assert "partitioned: 6 partitions, each indexed concurrently on its own" in preflight.stdout, preflight.describe()

    apply = pflows.run("apply", change=CHANGE)
    ok(apply)
    assert pflows.index(INDEX)[0] is True
    assert attached_leaf_indexes(pflows.db) == {leaf: f"{INDEX}_{leaf}" for leaf in LEAVES}
    report = pflows.report(CHANGE)
    host = next(iter(report["hosts"].values()))
    assert report["success"] is True
    assert sum("CREATE INDEX CONCURRENTLY" in statement for statement in host["sql"]) == len(LEAVES)
    assert sorted(part["partition"] for part in host["partitions"] if part["leaf"]) == sorted(
        f"public.{leaf}" for leaf in LEAVES)
    # One attempt per statement when nothing was retried, and the line says so rather than "15 attempt(s)".
    assert f"{len(host['sql'])} statement(s) in {host['attempts']} attempt(s)" in apply.stdout, apply.describe()
    markdown = pflows.reports(CHANGE, ".md")[-1].read_text()
    assert "Partitions (6 with data):" in markdown
    assert f"| public.order_events_2024q1 | {INDEX}_order_events_2024q1 | built concurrently and attached |" \
        in markdown, markdown
    assert "expectation plan_uses_index: expected the plan uses order_events_order_id_idx, observed used - met" \
        in apply.stdout, apply.describe()

    status = pflows.run("status", change=CHANGE)
    ok(status)
    assert INDEX in status.stdout and "done" in status.stdout, status.describe()

    rollback = pflows.run("rollback", change=CHANGE)
    ok(rollback)
    assert pflows.index(INDEX) is None and attached_leaf_indexes(pflows.db) == {}
    assert [(job["kind"], job["action"]) for job in pflows.ledger(CHANGE)] == [("apply", "created"),
                                                                               ("rollback", "dropped")]


def test_rollback_of_a_drop_recreates_the_partitioned_index_with_every_partition(pflows):
    ok(pflows.run("apply", change=CHANGE))
    before = pflows.index(INDEX)
    pflows.write_change("order-events-drop", action="drop", index={"name": INDEX, "table": "public.order_events"},
                        expected={"valid": False}, rollback={"note": "Recreating it restores the order page."})

    dropped = pflows.run("apply", change="order-events-drop")
    ok(dropped)
    assert pflows.index(INDEX) is None

    recreated = pflows.run("rollback", change="order-events-drop")
    ok(recreated)
    assert pflows.index(INDEX) == before
    assert attached_leaf_indexes(pflows.db) == {leaf: f"{INDEX}_{leaf}" for leaf in LEAVES}


def test_a_rehearsal_on_staging_measures_the_whole_partitioned_table_and_leaves_the_index_built(pflows):
    run = pflows.run("rehearse", "staging", change=CHANGE)
    ok(run)
    assert pflows.index(INDEX)[0] is True
    assert attached_leaf_indexes(pflows.db) == {leaf: f"{INDEX}_{leaf}" for leaf in LEAVES}
    assert [(job["kind"], job["action"]) for job in pflows.ledger(CHANGE)] == [
        ("rehearse", "created"), ("rollback", "dropped"), ("rehearse", "created")]
    measurements = pflows.report(CHANGE)["measurements"]
    leaves_bytes = pflows.db.fetchval(
        "SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree('public.order_events') WHERE isleaf")
    # The table size the production estimate scales by is the partitions', not the parent's zero.
    assert measurements["table_bytes"] == leaves_bytes > 0
    assert measurements["size_bytes"] > 0 and measurements["table_rows_estimate"] == ROWS
