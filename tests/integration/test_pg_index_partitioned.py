"""pg_index on a partitioned table against real PostgreSQL: ON ONLY, a concurrent build per
partition, ATTACH level by level; with writers on every partition, after an interruption, and for
drop, rebuild, check mode, diff and idempotence.

The table has five leaf partitions under two levels: public.pt is LIST-partitioned by region,
pt_b is RANGE-partitioned again by id (pt_b1, pt_b2), pt_c already has a valid index with the wanted
definition (reused, not rebuilt), and pt_d holds another session's INVALID leftover (left alone).
"""

from __future__ import annotations

import contextlib
import threading
import time

import psycopg2
import pytest

from ansible_collections.indexops.core.plugins.module_utils.connection import connect
from ansible_collections.indexops.core.plugins.module_utils.status_read import Status
from tests.integration.helpers_catalog import snapshot, wait_until
from tests.integration.test_pg_index_failures import in_background, session, snapshot_holder
from tests.pg_index_runner import run_module, run_pg_index

LOCK_TIMEOUT = "200ms"
WRITE_STALL_LIMIT = "450ms"  # lock_timeout + 250 ms
LOAD_LIMIT_S = 120.0
REGIONS = ("a", "b", "c", "d")
INDEX = "pt_v_idx"
LEAVES = ("pt_a", "pt_b1", "pt_b2", "pt_c", "pt_d")


@pytest.fixture
def pdb(db):
    for statement in (
        "CREATE TABLE public.pt (id bigint NOT NULL, region text NOT NULL, v int) PARTITION BY LIST (region)",
        "CREATE TABLE public.pt_a PARTITION OF public.pt FOR VALUES IN ('a')",
        "CREATE TABLE public.pt_b PARTITION OF public.pt FOR VALUES IN ('b') PARTITION BY RANGE (id)",
        "CREATE TABLE public.pt_b1 PARTITION OF public.pt_b FOR VALUES FROM (MINVALUE) TO (20000)",
        "CREATE TABLE public.pt_b2 PARTITION OF public.pt_b FOR VALUES FROM (20000) TO (MAXVALUE)",
        "CREATE TABLE public.pt_c PARTITION OF public.pt FOR VALUES IN ('c')",
        "CREATE TABLE public.pt_d PARTITION OF public.pt FOR VALUES IN ('d')",
        "INSERT INTO public.pt SELECT g, (ARRAY['a','b','c','d'])[1 + g % 4], g % 1000 "
        "FROM generate_series(1, 40000) g",
        "CREATE INDEX pt_c_v ON public.pt_c (v)",
    ):
        db.execute(statement)
    # Another session's failed build: a UNIQUE index on a column full of duplicates stays INVALID.
    with pytest.raises(psycopg2.errors.UniqueViolation):
        db.execute("CREATE UNIQUE INDEX CONCURRENTLY pt_d_broken ON public.pt_d (region)")
    return db


def partition_indexes(db):
    """{partition: (index name, valid, attached to, relfilenode)} for every index on pt's partitions."""
    rows = db.fetchall(
        "SELECT t.relname, c.relname, i.indisvalid, inh.inhparent::regclass::text, c.relfilenode "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
        "LEFT JOIN pg_inherits inh ON inh.inhrelid = c.oid "
        "WHERE i.indrelid IN (SELECT relid FROM pg_partition_tree('public.pt') WHERE level > 0) ORDER BY 1, 2")
    found = {}
    for table, index, valid, parent, node in rows:
        found.setdefault(table, []).append((index, valid, parent, node))
    return found


def parent_valid(db):
    return db.fetchval("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.pt_v_idx')")


def build(db, **args):
    return run_pg_index(db, **{"name": INDEX, "table": "pt", "columns": ["v"], "lock_timeout": LOCK_TIMEOUT,
                               **args})


class PartitionWriter:
    """Inserts through the parent into every partition in turn; a write whose lock wait passes
    lock_timeout + 250 ms fails with 55P03 and is recorded."""

    def __init__(self, db):
        self.db = db
        self.stop = threading.Event()
        self.writes = {region: 0 for region in REGIONS}
        self.errors = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        deadline = time.monotonic() + LOAD_LIMIT_S
        number = 0
        with contextlib.closing(self.db.connect(application_name="test/partition-writer")) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT set_config('lock_timeout', %s, false)", (WRITE_STALL_LIMIT,))
                while not self.stop.wait(0.01) and time.monotonic() < deadline:
                    region = REGIONS[number % len(REGIONS)]
                    # ids on both sides of pt_b's range bound, so pt_b1 and pt_b2 are both written to
                    row_id = 100 + number if number % 8 < 4 else 30000 + number
                    try:
                        cur.execute("INSERT INTO public.pt VALUES (%s, %s, %s)", (row_id, region, number % 1000))
                        self.writes[region] += 1
                    except psycopg2.Error as exc:
                        self.errors.append(f"{exc.pgcode}: {exc}")
                    number += 1

    def __enter__(self):
        self.thread.start()
        wait_until(lambda: all(self.writes.values()) or self.errors, "a write into every partition")
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)


def test_build_with_writers_on_every_partition_blocks_no_write_and_reuses_and_leaves_alone(pdb):
    with PartitionWriter(pdb) as writer:
        result = build(pdb)
        writes_during = dict(writer.writes)

    assert not result.get("failed"), result.get("msg")
    assert writer.errors == [], writer.errors  # a write waited longer than lock_timeout + 250 ms
    assert all(count > 0 for count in writes_during.values()), writes_during
    assert (result["changed"], result["action"], result["valid"]) == (True, "created", True)
    assert parent_valid(pdb) is True
    sql = result["sql"]
    assert sql[0] == 'CREATE INDEX "pt_v_idx" ON ONLY "public"."pt" USING "btree" ("v")'
    assert not any("CONCURRENTLY" not in statement and statement.startswith("CREATE INDEX") and "ONLY" not in statement
                   for statement in sql), sql  # every data-scanning build was concurrent
    actions = {part["partition"]: part["action"] for part in result["partitions"]
               if not part["action"].startswith("left alone")}
    assert actions == {
        "public.pt_a": "built concurrently and attached",
        "public.pt_b": "created ON ONLY, its partitions attached, then attached",
        "public.pt_b1": "built concurrently and attached",
        "public.pt_b2": "built concurrently and attached",
        "public.pt_c": "reused (attached)",
        "public.pt_d": "built concurrently and attached",
    }
    left_alone = [part for part in result["partitions"] if part["action"].startswith("left alone")]
    assert [(part["partition"], part["index"]) for part in left_alone] == [("public.pt_d", "pt_d_broken")]

    indexes = partition_indexes(pdb)
    for leaf in LEAVES:
        attached = [entry for entry in indexes[leaf] if entry[2] is not None]
        assert len(attached) == 1 and attached[0][1] is True, (leaf, indexes[leaf])
    assert [entry[0] for entry in indexes["pt_c"] if entry[2]] == ["pt_c_v"]  # reused, not a second copy
    assert ("pt_d_broken", False, None) == indexes["pt_d"][0][:3]  # someone else's leftover, untouched
    assert indexes["pt_b1"][0][2] == "pt_v_idx_pt_b"  # attached level by level

    before = snapshot(pdb)
    again = build(pdb)
    assert not again.get("failed"), again.get("msg")
    assert (again["changed"], again["action"], again["sql"]) == (False, "none", [])
    assert snapshot(pdb) == before


def test_an_interrupted_build_is_finished_by_a_rerun_without_building_a_partition_twice(pdb):
    # A session holding pt_b2 keeps its build from getting its lock: the run fails there, after
    # pt_a and pt_b1 were built and attached.
    with session(pdb, "test/pt_b2-holder", "LOCK TABLE public.pt_b2 IN SHARE UPDATE EXCLUSIVE MODE"):
        failed = build(pdb, lock_retries=2, lock_retry_delay=0.05)
    assert failed.get("failed") is True
    assert "could not get the locks" in failed["msg"] and "pt_b2" in failed["msg"], failed["msg"]
    assert "left INVALID with the partitions finished so far attached: running again finishes it" in failed["msg"]
    assert failed["retry_safe"] is True
    assert parent_valid(pdb) is False
    done = partition_indexes(pdb)
    assert [entry[0] for entry in done.get("pt_b2", [])] == []  # its failed build left nothing behind
    nodes = {leaf: next(entry[3] for entry in done[leaf] if entry[0] == f"pt_v_idx_{leaf}")
             for leaf in ("pt_a", "pt_b1")}

    rerun = build(pdb)
    assert not rerun.get("failed"), rerun.get("msg")
    assert (rerun["action"], rerun["valid"]) == ("created", True)
    built = [statement for statement in rerun["sql"] if statement.startswith("CREATE INDEX CONCURRENTLY")]
    assert sorted(built) == sorted(f'CREATE INDEX CONCURRENTLY "pt_v_idx_{leaf}" ON "public"."{leaf}" USING "btree" '
                                   '("v")' for leaf in ("pt_b2", "pt_d"))
    assert not any("ON ONLY" in statement and '"pt"' in statement for statement in rerun["sql"])
    actions = {part["partition"]: part["action"] for part in rerun["partitions"]}
    assert actions["public.pt_a"] == actions["public.pt_b1"] == "already attached"
    after = partition_indexes(pdb)
    for leaf, node in nodes.items():  # the same files: not built again
        assert next(entry[3] for entry in after[leaf] if entry[0] == f"pt_v_idx_{leaf}") == node
    assert parent_valid(pdb) is True


def test_check_mode_lists_every_statement_and_diff_shows_the_index_without_changing_anything(pdb):
    before = snapshot(pdb)
    result = build(pdb, check_mode=True, diff=True)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["action"] == "created"
    assert snapshot(pdb) == before
    assert len([s for s in result["sql"] if s.startswith("CREATE INDEX CONCURRENTLY")]) == 4  # pt_c is reused
    assert len([s for s in result["sql"] if "ATTACH PARTITION" in s]) == 6
    assert result["diff"]["before"] == "" and "pt_v_idx" in result["diff"]["after"]


def test_a_unique_index_without_the_partition_key_is_refused_before_any_ddl(pdb):
    before = snapshot(pdb)
    result = build(pdb, unique=True)
    assert result.get("failed") is True
    assert "must include its partition key, but columns leave out region" in result["msg"], result["msg"]
    assert result["retry_safe"] is False
    assert snapshot(pdb) == before


def test_rebuild_reindexes_each_partition_concurrently_and_drop_removes_it_under_lock_timeout(pdb):
    assert not build(pdb).get("failed")
    nodes = {leaf: [entry[3] for entry in entries if entry[2]] for leaf, entries in partition_indexes(pdb).items()}

    with PartitionWriter(pdb) as writer:
        rebuilt = run_pg_index(pdb, name=INDEX, state="rebuilt", lock_timeout=LOCK_TIMEOUT)
    assert not rebuilt.get("failed"), rebuilt.get("msg")
    assert writer.errors == [], writer.errors
    assert rebuilt["action"] == "rebuilt" and parent_valid(pdb) is True
    assert sorted(part["partition"] for part in rebuilt["partitions"]) == sorted(f"public.{leaf}" for leaf in LEAVES)
    assert all(statement.startswith("REINDEX INDEX CONCURRENTLY") for statement in rebuilt["sql"]), rebuilt["sql"]
    after = {leaf: [entry[3] for entry in entries if entry[2]] for leaf, entries in partition_indexes(pdb).items()}
    for leaf in LEAVES:
        assert after[leaf] != nodes[leaf], leaf  # new files: really rebuilt

    checked = run_pg_index(pdb, name=INDEX, state="absent", lock_timeout=LOCK_TIMEOUT, check_mode=True)
    assert checked["sql"] == ['DROP INDEX IF EXISTS "public"."pt_v_idx"'] and parent_valid(pdb) is True
    dropped = run_pg_index(pdb, name=INDEX, state="absent", lock_timeout=LOCK_TIMEOUT)
    assert not dropped.get("failed"), dropped.get("msg")
    assert dropped["action"] == "dropped" and parent_valid(pdb) is None
    remaining = {leaf: [entry[0] for entry in entries] for leaf, entries in partition_indexes(pdb).items()}
    assert remaining == {"pt_d": ["pt_d_broken"]}  # every attached part went with it, the reused one too


def test_a_drop_behind_a_long_reader_is_cut_at_lock_timeout_and_says_who(pdb):
    assert not build(pdb).get("failed")
    with session(pdb, "test/reader", "SELECT count(*) FROM public.pt_c"):
        result = run_pg_index(pdb, name=INDEX, state="absent", lock_timeout=LOCK_TIMEOUT, lock_retries=2,
                              lock_retry_delay=0.05)
    assert result.get("failed") is True
    assert "could not get the locks for `DROP INDEX IF EXISTS" in result["msg"], result["msg"]
    assert result["retry_safe"] is True
    assert parent_valid(pdb) is True


def test_status_follows_a_partitioned_build_partition_by_partition(pdb):
    """While a partition's build waits (here for an old snapshot), status finds that build under the
    partitioned index and says which partition of how many it is on."""
    read = Status(lambda: connect({**pdb.params, "connect_timeout": 10}, "test/status"))
    change = {"id": "pt1", "action": "create", "index": {"name": INDEX, "table": "public.pt"}}
    ledger = {"change_id": "pt1", "spec_digest": "0" * 64, "kind": "apply", "environment": "staging",
              "owner": "team-db", "rollback_note": "drop it", "operator": "tester"}
    seen = []

    def building():
        entry = read.run(changes=[change])["changes"][0]
        seen.append(entry)
        return entry["build"] is not None and (entry["job"] or {}).get("partition")

    with snapshot_holder(pdb) as holder:
        with in_background(pdb, build, pdb, ledger=ledger) as future:
            wait_until(building, "status to see the first partition's build")
            holder.rollback()
            result = future.result(timeout=120)

    entry = seen[-1]
    assert entry["state"] == "building", entry
    assert entry["build"]["index_name"] == "pt_v_idx_pt_a", entry["build"]
    assert "partition 1/5 (public.pt_a)" in entry["line"], entry["line"]
    assert "partition 1/5 (public.pt_a)" in entry["row"]["progress"], entry["row"]
    assert not result.get("failed"), result.get("msg")
    done = read.run(changes=[change])["changes"][0]
    assert done["state"] == "done" and "partition" not in done["line"], done["line"]
    assert done["index_state"]["size_bytes"] > 0  # the partitions' indexes, summed


def test_expectations_see_the_partitions_indexes_in_the_plan_and_their_size(pdb):
    pdb.execute("ANALYZE public.pt")
    result = build(pdb, expected={"valid": True, "max_size": "100MB",
                                  "plan_uses_index": "SELECT id FROM pt WHERE v = 5 AND region = 'a'"})
    assert not result.get("failed"), result.get("msg")
    met = {item["name"]: item["met"] for item in result["expectations"]}
    assert met == {"valid": True, "max_size": True, "plan_uses_index": True}, result["expectations"]
    parts = pdb.fetchval("SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree('public.pt_v_idx')")
    assert result["size_bytes"] == parts > 0


def preflight_change(**index):
    return {"id": "pt-v", "owner": "team-test", "reason": "TEST-2: look up pt by v", "action": "create",
            "index": {"name": INDEX, "table": "public.pt", "columns": ["v"], **index},
            "expected": {"valid": True}, "rollback": {"note": "Drop the index; nothing depends on it."}}


def test_preflight_says_how_many_partitions_and_refuses_a_unique_index_without_the_key(pdb):
    before = snapshot(pdb)
    go = run_module("pg_index_preflight", {**pdb.params, "change": preflight_change()})
    assert not go.get("failed"), go.get("msg")
    assert go["go"] is True, go["reasons"]
    table = next(check for check in go["checks"] if check["name"] == "table_exists")
    assert "partitioned: 5 partitions, each indexed concurrently on its own (largest public." in table["detail"]
    assert sorted(item["partition"] for item in go["partitions"]) == sorted(f"public.{leaf}"
                                                                                     for leaf in LEAVES)
    name = next(check for check in go["checks"] if check["name"] == "index_name")
    assert "applying builds it" in name["detail"]

    assert all(item["estimate_s"] is None for item in go["partitions"])  # no rehearsal, no estimate

    total = sum(item["bytes"] for item in go["partitions"])
    rehearsed = run_module("pg_index_preflight", {**pdb.params, "change": preflight_change(),
                                                  "rehearsal": {"duration_s": 10.0, "table_bytes": total,
                                                                "environment": "staging"}})
    shares = {item["partition"]: item["estimate_s"] for item in rehearsed["partitions"]}
    assert rehearsed["estimate_s"] == pytest.approx(10.0, abs=0.01)
    assert sum(shares.values()) == pytest.approx(rehearsed["estimate_s"], abs=0.01)  # the shares add up
    largest = max(rehearsed["partitions"], key=lambda item: item["bytes"])
    assert shares[largest["partition"]] == max(shares.values())

    unique = run_module("pg_index_preflight", {**pdb.params, "change": preflight_change(unique=True)})
    assert unique["go"] is False
    assert any("must include its partition key, but columns leave out region" in reason
               for reason in unique["reasons"]), unique["reasons"]
    assert snapshot(pdb) == before
