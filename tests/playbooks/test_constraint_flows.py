"""The flows with constraint-backed indexes, through the real ansible-playbook against real PostgreSQL:
apply of changes/orders-customer-order-key.yml (a UNIQUE constraint) and its rollback, and a drop
change with drop_constraint whose rollback recreates the primary key from the ledger."""

from __future__ import annotations

import pytest

from tests.playbooks.test_flows import flows, ok  # noqa: F401 - flows is the fixture these tests use

pytestmark = pytest.mark.playbook

CHANGE = "orders-customer-order-key"
INDEX = "orders_customer_id_id_key"


def constraint(db, name):
    """(contype, pg_get_constraintdef) of constraint ``name`` on public.orders, or None."""
    return db.fetchone("SELECT contype::text, pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint "
                       "WHERE conrelid = 'public.orders'::regclass AND conname = %s", (name,))


def test_apply_adds_the_unique_constraint_and_rollback_drops_it_with_its_index(flows):  # noqa: F811
    ok(flows.run("apply", change=CHANGE))
    assert constraint(flows.db, INDEX) == ("u", "UNIQUE (customer_id, id)")
    assert flows.index(INDEX)[0] is True
    report = flows.report(CHANGE)
    assert report["success"] is True, report

    run = flows.run("rollback", change=CHANGE)

    ok(run)
    assert constraint(flows.db, INDEX) is None and flows.index(INDEX) is None
    assert [(job["kind"], job["action"]) for job in flows.ledger(CHANGE)] == [("apply", "created"),
                                                                             ("rollback", "dropped")]
    again = flows.run("rollback", change=CHANGE)
    ok(again)
    assert again.recap["pgtest"]["changed"] == 0, again.describe()


def test_rollback_of_a_constraint_drop_recreates_the_primary_key_from_the_ledger(flows):  # noqa: F811
    before = constraint(flows.db, "orders_pkey")
    assert before == ("p", "PRIMARY KEY (id)")
    flows.write_change("orders-drop-pkey", action="drop",
                       index={"name": "orders_pkey", "table": "public.orders", "drop_constraint": True},
                       expected={"valid": False},
                       rollback={"note": "Recreating it restores the primary key."})

    ok(flows.run("apply", change="orders-drop-pkey"))
    assert constraint(flows.db, "orders_pkey") is None and flows.index("orders_pkey") is None
    recorded = flows.ledger("orders-drop-pkey")[0]["definition_before"]
    assert recorded == ("CREATE UNIQUE INDEX orders_pkey ON public.orders USING btree (id); "
                        'ALTER TABLE "public"."orders" ADD CONSTRAINT "orders_pkey" PRIMARY KEY USING INDEX '
                        '"orders_pkey"')

    run = flows.run("rollback", change="orders-drop-pkey")

    ok(run)
    assert constraint(flows.db, "orders_pkey") == before
    jobs = flows.ledger("orders-drop-pkey")
    assert [(job["kind"], job["action"]) for job in jobs] == [("apply", "dropped"), ("rollback", "created")]


def test_check_mode_on_a_unique_index_without_the_constraint_says_only_the_constraint_is_added(flows):  # noqa: F811
    flows.db.execute("CREATE UNIQUE INDEX orders_customer_id_id_key ON public.orders (customer_id, id)")

    run = flows.run("apply", change=CHANGE, check=True)

    ok(run)
    said = "pgtest: would add the constraint to the existing index (no rebuild) (the index is valid now, "
    assert said in run.stdout and "; nothing ran" in run.stdout.split(said, 1)[1].splitlines()[0], run.describe()
    assert ('would run: ALTER TABLE "public"."orders" ADD CONSTRAINT "orders_customer_id_id_key" UNIQUE USING INDEX '
            '"orders_customer_id_id_key"') in run.stdout
    assert constraint(flows.db, INDEX) is None
