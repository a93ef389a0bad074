"""pg_index with constraint: unique | primary_key, and state: absent with drop_constraint, against a
real PostgreSQL: the index is built concurrently, the constraint added USING INDEX, a primary key on
nullable columns takes the NOT VALID check path (no scan under ACCESS EXCLUSIVE), every step is
finished by a rerun, and drops refuse while foreign keys depend on the constraint."""

from __future__ import annotations

import contextlib
import time

import pytest

from tests.integration.helpers_catalog import index_row, snapshot, wait_until
from tests.integration.test_busy import Writer, assert_no_write_stall
from tests.pg_index_runner import run_module, run_pg_index

Q = '"public"."t"'


def make_table(db, rows=20_000, nullable=True):
    """public.t (id, email, status): id unique, NULL-free but nullable unless ``nullable`` is false.

    Autovacuum is off on it, so that the table's seq_scan counter moves only for the statements run here."""
    db.execute(f"CREATE TABLE public.t (id bigint{'' if nullable else ' NOT NULL'}, email text, status text) "
               "WITH (autovacuum_enabled = false)")
    db.execute("INSERT INTO public.t SELECT g, 'user' || g || '@example.com', 'open' FROM generate_series(1, %s) g",
               (rows,))


def constraint_of(db, name, table="t"):
    """(contype, condeferrable, condeferred) of constraint ``name`` on public.<table>, or None."""
    return db.fetchone("SELECT contype::text, condeferrable, condeferred FROM pg_constraint "
                       "WHERE conrelid = %s::regclass AND conname = %s", (f"public.{table}", name))


def not_null(db, column, table="t"):
    return db.fetchval("SELECT attnotnull FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s",
                       (f"public.{table}", column))


def checks(db, table="t"):
    """Names of the CHECK constraints on public.<table>."""
    return [row[0] for row in db.fetchall("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass "
                                          "AND contype = 'c' ORDER BY 1", (f"public.{table}",))]


def build_closed(db, statement):
    """Run ``statement`` on a session of its own and close it: a backend sends its scan counts when it
    exits (PostgreSQL 14 holds them back up to 0.5 s otherwise), so the build's own scan is in the
    baseline that seq_scans reads next."""
    with contextlib.closing(db.connect()) as builder, builder.cursor() as cur:
        cur.execute(statement)


def seq_scans(db, table="t"):
    """The table's seq_scan counter once every session of the module has ended and its stats have
    arrived: a backend flushes them as it exits, just after it leaves pg_stat_activity, so the
    counter is read until two reads 0.6 s apart agree (PostgreSQL 14's statistics collector serves a
    snapshot up to 0.5 s old)."""
    wait_until(lambda: not db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                       "AND application_name LIKE 'indexops%%'"), "the module's sessions to end")
    query = "SELECT pg_stat_clear_snapshot(), seq_scan FROM pg_stat_all_tables WHERE relid = %s::regclass"
    readings = [db.fetchone(query, (f"public.{table}",))[1]]

    def settled():
        time.sleep(0.6)
        readings.append(db.fetchone(query, (f"public.{table}",))[1])
        return readings[-1] == readings[-2]

    wait_until(settled, "the table's scan counter to settle")
    return readings[-1]


PK_ON_NULLABLE = [
    f'ALTER TABLE {Q} ADD CONSTRAINT "id_indexops_nn" CHECK ("id" IS NOT NULL) NOT VALID',
    f'ALTER TABLE {Q} VALIDATE CONSTRAINT "id_indexops_nn"',
    f'ALTER TABLE {Q} ALTER COLUMN "id" SET NOT NULL',
    f'ALTER TABLE {Q} DROP CONSTRAINT IF EXISTS "id_indexops_nn"',
    f'ALTER TABLE {Q} ADD CONSTRAINT "t_pkey" PRIMARY KEY USING INDEX "t_pkey"',
]
BUILD_PK = f'CREATE UNIQUE INDEX CONCURRENTLY "t_pkey" ON {Q} USING "btree" ("id")'


def pk(db, **args):
    return run_pg_index(db, name="t_pkey", table="t", columns=["id"], constraint="primary_key", **args)


# --------------------------------------------------------------------------- unique

def test_unique_constraint_is_built_concurrently_then_added_and_a_rerun_changes_nothing(db):
    make_table(db)
    result = run_pg_index(db, name="t_email_key", table="t", columns=["email"], constraint="unique",
                          lock_timeout="200ms")
    assert result.get("failed") is not True, result.get("msg")
    assert result["action"] == "created" and result["changed"] is True
    assert result["sql"] == [
        f'CREATE UNIQUE INDEX CONCURRENTLY "t_email_key" ON {Q} USING "btree" ("email")',
        f'ALTER TABLE {Q} ADD CONSTRAINT "t_email_key" UNIQUE USING INDEX "t_email_key"']
    assert constraint_of(db, "t_email_key") == ("u", False, False)
    assert result["constraint"] == {"name": "t_email_key", "type": "UNIQUE", "deferrable": False,
                                    "initially_deferred": False, "definition": "UNIQUE (email)"}
    again = run_pg_index(db, name="t_email_key", table="t", columns=["email"], constraint="unique")
    assert (again["changed"], again["action"], again["sql"]) == (False, "none", [])


def test_a_unique_index_without_the_constraint_gets_it_added_without_a_rebuild(db):
    make_table(db)
    db.execute("CREATE UNIQUE INDEX t_email_key ON public.t (email)")
    oid = index_row(db, "public", "t_email_key")["oid"]
    result = run_pg_index(db, name="t_email_key", table="t", columns=["email"], constraint="unique",
                          deferrable=True, initially_deferred=True, diff=True)
    assert result["action"] == "constraint_added", result.get("msg")
    assert result["sql"] == [f'ALTER TABLE {Q} ADD CONSTRAINT "t_email_key" UNIQUE USING INDEX "t_email_key" '
                             "DEFERRABLE INITIALLY DEFERRED"]
    assert index_row(db, "public", "t_email_key")["oid"] == oid  # the same index: nothing was rebuilt
    assert constraint_of(db, "t_email_key") == ("u", True, True)
    assert result["diff"]["after"].endswith("CONSTRAINT t_email_key UNIQUE DEFERRABLE INITIALLY DEFERRED\n")


def test_adding_a_unique_constraint_to_an_existing_index_reads_no_row(db):
    """ADD CONSTRAINT ... UNIQUE USING INDEX under ACCESS EXCLUSIVE is a catalog change: the table's
    seq_scan counter does not move (the primary key test below shows the counter sees a scan)."""
    make_table(db)
    build_closed(db, "CREATE UNIQUE INDEX t_email_key ON public.t (email)")
    scans = seq_scans(db)
    result = run_pg_index(db, name="t_email_key", table="t", columns=["email"], constraint="unique")
    assert result["action"] == "constraint_added", result.get("msg")
    assert seq_scans(db) == scans
    assert constraint_of(db, "t_email_key") == ("u", False, False)


def test_check_mode_lists_every_statement_and_changes_nothing(db):
    make_table(db)
    before = snapshot(db)
    result = pk(db, check_mode=True)
    assert result["changed"] is True and result["sql"] == [BUILD_PK, *PK_ON_NULLABLE]
    assert snapshot(db) == before and checks(db) == [] and not_null(db, "id") is False


@pytest.mark.parametrize("deferrable", [True, False])
def test_another_constraint_kind_or_deferrability_is_reported_and_nothing_changes(db, deferrable):
    make_table(db)
    db.execute("ALTER TABLE public.t ADD CONSTRAINT t_pkey UNIQUE (id)"
               + (" DEFERRABLE" if deferrable else ""))
    before = snapshot(db)
    if deferrable:
        result = run_pg_index(db, name="t_pkey", table="t", columns=["id"], constraint="unique")
        assert "backs CONSTRAINT t_pkey UNIQUE DEFERRABLE, not the wanted CONSTRAINT t_pkey UNIQUE" in result["msg"]
    else:
        result = pk(db)
        assert "backs CONSTRAINT t_pkey UNIQUE, not the wanted CONSTRAINT t_pkey PRIMARY KEY" in result["msg"]
    assert result["failed"] is True and "drop_constraint: true" in result["msg"]
    assert snapshot(db) == before and constraint_of(db, "t_pkey")[0] == "u"


# --------------------------------------------------------------------------- primary key

def test_primary_key_on_a_nullable_column_takes_the_check_path_and_scans_only_to_validate(db):
    """The table's seq_scan counter moves once: VALIDATE CONSTRAINT (SHARE UPDATE EXCLUSIVE). SET NOT
    NULL and ADD PRIMARY KEY, under ACCESS EXCLUSIVE, read no row (the control below shows that SET
    NOT NULL without the valid check does scan, so the counter would show it)."""
    make_table(db)
    build_closed(db, "CREATE UNIQUE INDEX t_pkey ON public.t (id)")
    scans = seq_scans(db)
    result = pk(db, lock_timeout="200ms")
    assert result["action"] == "constraint_added", result.get("msg")
    assert result["sql"] == PK_ON_NULLABLE
    assert seq_scans(db) - scans == 1
    assert constraint_of(db, "t_pkey") == ("p", False, False) and not_null(db, "id") is True
    assert checks(db) == []
    assert result["constraint"]["definition"] == "PRIMARY KEY (id)"

    db.execute("CREATE TABLE public.control (id bigint) WITH (autovacuum_enabled = false)")
    db.execute("INSERT INTO public.control SELECT generate_series(1, 1000)")
    scans = seq_scans(db, "control")
    with contextlib.closing(db.connect()) as other, other.cursor() as cur:
        cur.execute("ALTER TABLE public.control ALTER COLUMN id SET NOT NULL")
        if db.server_version_num >= 150000:  # PostgreSQL 14 has no forced flush: its stats go out on close
            cur.execute("SELECT pg_stat_force_next_flush()")
            cur.execute("SELECT 1")
    assert seq_scans(db, "control") - scans == 1


def test_primary_key_with_writers_running_never_stalls_a_write(db):
    """A writer with lock_timeout + 250 ms as its own lock_timeout inserts all along: the build, the
    check, its validation, SET NOT NULL and ADD PRIMARY KEY never hold it up longer (a 55P03 fails)."""
    make_table(db, rows=1_000_000)
    with Writer(db) as writer:
        result = pk(db, lock_timeout="200ms")
        wait_until(lambda: writer.writes > 5, "a few writes during the run")
    assert result.get("failed") is not True, result.get("msg")
    assert result["sql"] == [BUILD_PK, *PK_ON_NULLABLE]
    assert_no_write_stall(writer)
    assert constraint_of(db, "t_pkey") == ("p", False, False)


def test_primary_key_on_not_null_columns_needs_no_check(db):
    make_table(db, nullable=False)
    result = pk(db)
    assert result["sql"] == [BUILD_PK, PK_ON_NULLABLE[-1]]
    assert constraint_of(db, "t_pkey") == ("p", False, False)


@pytest.mark.parametrize("stopped_after", range(1, 5))
def test_a_rerun_after_any_step_of_the_not_null_path_finishes_the_job(db, stopped_after):
    """A run that stopped after step N (the process died) left what those steps did; the rerun runs
    only the rest and ends with the primary key and no check."""
    make_table(db)
    db.execute("CREATE UNIQUE INDEX t_pkey ON public.t (id)")
    for statement in PK_ON_NULLABLE[:stopped_after]:
        db.execute(statement)
    result = pk(db)
    rest = PK_ON_NULLABLE[stopped_after:]
    if stopped_after == 3:  # NOT NULL is set, the check is still there: the rerun drops it
        rest = PK_ON_NULLABLE[3:]
    assert result["sql"] == rest, result.get("msg")
    assert constraint_of(db, "t_pkey") == ("p", False, False) and checks(db) == [] and not_null(db, "id") is True
    assert pk(db)["changed"] is False


def test_nulls_in_the_key_fail_the_validation_and_the_check_is_dropped_again(db):
    make_table(db)
    db.execute("INSERT INTO public.t VALUES (NULL, 'n@example.com', 'open')")
    result = pk(db, ledger={"change_id": "pk", "spec_digest": "0" * 64, "kind": "apply", "environment": "staging",
                            "owner": "team-db", "rollback_note": "drop it", "operator": "tester"})
    assert result["failed"] is True
    assert "VALIDATE CONSTRAINT" in result["msg"] and "23514" in result["msg"]
    assert "The NOT NULL check id_indexops_nn this run added was dropped again." in result["msg"]
    assert checks(db) == [] and not_null(db, "id") is False and constraint_of(db, "t_pkey") is None
    assert db.fetchone("SELECT state, last_error LIKE '%%23514%%' FROM indexops.jobs WHERE change_id = 'pk'") == (
        "failed", True)


def test_a_second_primary_key_is_refused_before_any_ddl(db):
    make_table(db)
    db.execute("ALTER TABLE public.t ADD COLUMN k int GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
    before = snapshot(db)
    result = run_pg_index(db, name="t_id_pk", table="t", columns=["id"], constraint="primary_key")
    assert result["failed"] is True
    assert "table public.t already has primary key t_pkey, so public.t_id_pk cannot become one" in result["msg"]
    assert snapshot(db) == before


def test_a_constraint_on_a_partitioned_table_is_refused_before_any_ddl(db):
    db.execute("CREATE TABLE public.p (id bigint, at date) PARTITION BY RANGE (at)")
    db.execute("CREATE TABLE public.p1 PARTITION OF public.p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')")
    before = snapshot(db)
    result = run_pg_index(db, name="p_pkey", table="p", columns=["id", "at"], constraint="primary_key",
                          concurrently=False)
    assert result["failed"] is True
    assert ("public.p is a partitioned table; PostgreSQL does not support ADD CONSTRAINT ... USING INDEX"
            in result["msg"])
    assert snapshot(db) == before


def test_a_constraint_refuses_an_index_it_cannot_use(db):
    make_table(db)
    before = snapshot(db)
    result = run_pg_index(db, name="t_pkey", table="t", columns=[{"name": "id", "order": "desc"}],
                          constraint="primary_key", where="id > 0")
    assert result["failed"] is True
    assert ("constraint primary_key was given an index with a where predicate, order or nulls on a column"
            in result["msg"])
    assert snapshot(db) == before


# --------------------------------------------------------------------------- absent

def test_absent_refuses_an_index_that_backs_a_constraint_and_names_drop_constraint(db):
    make_table(db, nullable=False)
    db.execute("ALTER TABLE public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id)")
    before = snapshot(db)
    result = run_pg_index(db, name="t_pkey", state="absent")
    assert result["failed"] is True
    assert "backs CONSTRAINT t_pkey PRIMARY KEY, so pg_index will not drop it unless drop_constraint is true" in \
        result["msg"]
    assert snapshot(db) == before


def test_drop_constraint_refuses_while_foreign_keys_depend_on_it_and_names_them(db):
    make_table(db, nullable=False)
    db.execute("ALTER TABLE public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id)")
    db.execute("CREATE TABLE public.orders (id int, t_id bigint CONSTRAINT orders_t_fk REFERENCES public.t (id))")
    before = snapshot(db)
    result = run_pg_index(db, name="t_pkey", state="absent", drop_constraint=True)
    assert result["failed"] is True
    assert "foreign keys depend on it: orders_t_fk on public.orders" in result["msg"]
    assert result["foreign_keys"] == [{"schema": "public", "table": "orders", "name": "orders_t_fk"}]
    assert snapshot(db) == before


def test_drop_constraint_drops_it_and_its_index_and_the_definition_recreates_both(db):
    make_table(db, nullable=False)
    db.execute("ALTER TABLE public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id) DEFERRABLE")
    check = run_pg_index(db, name="t_pkey", state="absent", drop_constraint=True, check_mode=True)
    assert check["sql"] == [f'ALTER TABLE {Q} DROP CONSTRAINT IF EXISTS "t_pkey"']
    assert constraint_of(db, "t_pkey") is not None
    result = run_pg_index(db, name="t_pkey", state="absent", drop_constraint=True, lock_timeout="200ms")
    assert (result["action"], result["sql"]) == ("dropped", check["sql"]), result.get("msg")
    assert index_row(db, "public", "t_pkey") is None and constraint_of(db, "t_pkey") is None
    recorded = result["definition_before"]
    assert recorded == ("CREATE UNIQUE INDEX t_pkey ON public.t USING btree (id); "
                        f'ALTER TABLE {Q} ADD CONSTRAINT "t_pkey" PRIMARY KEY USING INDEX "t_pkey" DEFERRABLE')
    back = run_pg_index(db, definition=recorded, state="present", on_mismatch="replace")
    assert back["action"] == "created", back.get("msg")
    assert back["sql"] == [BUILD_PK, f'ALTER TABLE {Q} ADD CONSTRAINT "t_pkey" PRIMARY KEY USING INDEX "t_pkey" '
                                     "DEFERRABLE"]
    assert constraint_of(db, "t_pkey") == ("p", True, False)


def test_drop_constraint_waits_under_lock_timeout_and_says_who_blocks(db):
    make_table(db, nullable=False)
    db.execute("ALTER TABLE public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id)")
    holder = db.connect(autocommit=False, application_name="test/reader")
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT count(*) FROM public.t")
        result = run_pg_index(db, name="t_pkey", state="absent", drop_constraint=True, lock_timeout="100ms",
                              lock_retries=2, lock_retry_delay=0.05)
    finally:
        holder.rollback()
        holder.close()
    assert result["failed"] is True and result["retry_safe"] is True
    assert "within lock_timeout 100ms in 2 attempts" in result["msg"]
    assert "SELECT count(*) FROM public.t" in result["msg"]
    assert constraint_of(db, "t_pkey") == ("p", False, False)


# --------------------------------------------------------------------------- preflight

def preflight(db, action="create", **index):
    change = {"id": "t-pkey", "owner": "team-test", "reason": "TEST-2: a primary key for t", "action": action,
              "index": index, "expected": {"valid": True}, "rollback": {"note": "Drop the constraint."}}
    return run_module("pg_index_preflight", {**db.params, "change": change})


def checks_of(result):
    return {check["name"]: check for check in result["checks"]}


def test_preflight_says_which_primary_key_columns_allow_null_and_the_path_it_takes(db):
    make_table(db)
    before = snapshot(db)
    result = preflight(db, name="t_pkey", table="public.t", columns=["id"], constraint="primary_key")
    assert result["go"] is True, result["reasons"]
    detail = checks_of(result)["constraint"]["detail"]
    assert detail.startswith("applying adds CONSTRAINT t_pkey PRIMARY KEY with ALTER TABLE ... ADD CONSTRAINT")
    assert "column(s) id allow NULL: each is proven NOT NULL first without a scan under ACCESS EXCLUSIVE" in detail
    assert "duplicates cannot be checked without scanning the table" in detail
    assert checks_of(result)["index_name"]["detail"] == "no index public.t_pkey yet; applying builds it"
    assert snapshot(db) == before


def test_preflight_of_an_existing_unique_index_says_the_constraint_is_added_without_a_rebuild(db):
    make_table(db, nullable=False)
    db.execute("CREATE UNIQUE INDEX t_pkey ON public.t (id)")
    result = preflight(db, name="t_pkey", table="public.t", columns=["id"], constraint="primary_key")
    assert result["go"] is True, result["reasons"]
    assert checks_of(result)["index_name"]["detail"] == (
        "unique index public.t_pkey already exists without the constraint; applying adds the constraint to it "
        "(no rebuild)")
    detail = checks_of(result)["constraint"]["detail"]
    assert "allow NULL" not in detail and "the unique index exists, so there are no duplicates" in detail


def test_preflight_of_a_constraint_on_a_partitioned_table_is_a_nogo(db):
    db.execute("CREATE TABLE public.p (id bigint, at date) PARTITION BY RANGE (at)")
    result = preflight(db, name="p_pkey", table="public.p", columns=["id", "at"], constraint="primary_key")
    assert not result.get("failed"), result.get("msg")
    assert result["go"] is False
    said = "public.p is a partitioned table; PostgreSQL does not support ADD CONSTRAINT ... USING INDEX on it"
    assert checks_of(result)["constraint"] == {"name": "constraint", "ok": False, "detail": said}
    assert checks_of(result)["index_name"]["detail"].startswith(said)


def test_preflight_of_a_drop_names_the_foreign_keys_that_block_it(db):
    make_table(db, nullable=False)
    db.execute("ALTER TABLE public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id)")
    db.execute("CREATE TABLE public.orders (id int, t_id bigint CONSTRAINT orders_t_fk REFERENCES public.t (id))")
    result = preflight(db, action="drop", name="t_pkey", table="public.t", drop_constraint=True)
    assert result["go"] is False
    assert checks_of(result)["index_exists"]["detail"] == (
        "constraint t_pkey of index public.t_pkey cannot be dropped: foreign keys depend on it: orders_t_fk on "
        "public.orders (drop those foreign keys first)")
    db.execute("DROP TABLE public.orders")
    assert preflight(db, action="drop", name="t_pkey", table="public.t", drop_constraint=True)["go"] is True


def test_the_ledger_keeps_the_index_definition_after_and_the_constraint_it_backs(db):
    make_table(db)
    ledger = {"change_id": "pk", "spec_digest": "0" * 64, "kind": "apply", "environment": "staging",
              "owner": "team-db", "rollback_note": "drop it", "operator": "tester"}
    result = pk(db, ledger=ledger)
    assert result["action"] == "created", result.get("msg")
    row = db.fetchone("SELECT state, definition_after, observed -> 'constraint' FROM indexops.jobs "
                      "WHERE change_id = 'pk'")
    assert row[0] == "succeeded"
    assert row[1] == db.fetchval("SELECT pg_get_indexdef('public.t_pkey'::regclass)")  # what status compares
    assert row[2] == {"name": "t_pkey", "type": "PRIMARY KEY", "deferrable": False, "initially_deferred": False,
                      "definition": "PRIMARY KEY (id)"}
