"""The two waits of a concurrent statement, told apart and bounded separately.

A CONCURRENTLY statement (CREATE/DROP INDEX, REINDEX) waits for two different things:

- a **relation lock** (the table's or an index's): other sessions can queue behind such a waiter,
  so the wait is cut at ``lock_timeout`` and the statement retried on the backoff schedule;
- **other transactions to finish** (a ``virtualxid`` or ``transactionid`` lock: writers before the
  build, old snapshots before validation, readers before a drop): the statement already holds
  SHARE UPDATE EXCLUSIVE on the table, which no read or write conflicts with, so nobody queues
  behind it. It is bounded only by ``build_wait_timeout`` (none by default).

PostgreSQL's own ``lock_timeout`` cuts every lock wait of a statement alike, so a build on a
database where some statement is always seconds old would never finish. A watched statement
therefore runs with ``lock_timeout`` off, and a second session reads the builder's one ungranted
lock from ``pg_locks`` and cancels the statement for the first kind only (or for the second, once
its budget is spent). ``judge`` is the whole decision and has no database in it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ansible_collections.indexops.core.plugins.module_utils.catalog import fetch_all, fetch_one
from ansible_collections.indexops.core.plugins.module_utils.humanize import duration

# Lock types that mean "waiting for another transaction to end"; every other type is a lock on
# something (relation, object, tuple, ...) that others may queue behind.
TRANSACTION_LOCKTYPES = frozenset({"virtualxid", "transactionid"})
LOCK = "lock"  # a relation-lock wait past lock_timeout
TRANSACTIONS = "transactions"  # waits for other transactions past build_wait_timeout
LOST = "watch lost"  # the watching session failed: nothing would bound a lock wait any more
IDLE_POLL_S = 0.2

# The builder's ungranted lock, if it waits for one (a backend waits for one lock at a time).
# waitstart (PostgreSQL 14+) dates the wait on the server's clock, so the cut does not depend on
# when the watcher first saw it.
WAIT_OF = """
SELECT l.locktype, l.mode, l.relation::bigint AS relation, l.virtualxid, l.transactionid::text AS transactionid,
       l.waitstart::text AS waitstart,
       coalesce(extract(epoch FROM pg_catalog.clock_timestamp() - l.waitstart)::float, 0) AS waited_s
FROM pg_catalog.pg_locks l
WHERE l.pid = %s AND NOT l.granted
LIMIT 1
"""

# The sessions the builder waits for, oldest transaction first.
BLOCKING_SESSIONS = """
SELECT a.pid, a.application_name, a.usename, a.state, left(a.query, 200) AS query,
       extract(epoch FROM pg_catalog.clock_timestamp() - a.xact_start)::float AS xact_age_s
FROM pg_catalog.pg_stat_activity a
WHERE a.pid = ANY (pg_catalog.pg_blocking_pids(%s))
ORDER BY a.xact_start NULLS LAST, a.pid
"""


@dataclass(frozen=True)
class Wait:
    """One ungranted lock of the builder, as pg_locks shows it."""

    locktype: str
    waited_s: float
    episode: tuple = ()  # what it waits for and since when: the same wait seen again has the same episode

    @property
    def on_transactions(self):
        return self.locktype in TRANSACTION_LOCKTYPES


@dataclass(frozen=True)
class Verdict:
    cut: str | None  # LOCK or TRANSACTIONS to cancel the statement now; None to look again
    sleep_s: float  # when to look again


def judge(wait, transactions_waited_s, *, lock_timeout_s, build_wait_timeout_s, poll_s=IDLE_POLL_S):
    """What to do about the builder's current wait, and when to look again.

    ``transactions_waited_s`` is the time waited on other transactions so far, this wait included.
    The next look is never later than the moment a limit would be reached, so a cut lands on time
    rather than one poll late.
    """
    if wait is None:
        return Verdict(None, poll_s)
    if not wait.on_transactions:
        left = lock_timeout_s - wait.waited_s
        return Verdict(LOCK, 0.0) if left <= 0 else Verdict(None, min(left, poll_s))
    if build_wait_timeout_s is None:
        return Verdict(None, poll_s)
    left = build_wait_timeout_s - transactions_waited_s
    return Verdict(TRANSACTIONS, 0.0) if left <= 0 else Verdict(None, min(left, poll_s))


class TransactionWaits:
    """Seconds spent waiting on other transactions, summed over distinct waits."""

    def __init__(self):
        self.episodes = {}

    def observe(self, wait):
        if wait is not None and wait.on_transactions:
            self.episodes[wait.episode] = max(wait.waited_s, self.episodes.get(wait.episode, 0.0))

    @property
    def total_s(self):
        return sum(self.episodes.values())


def read_wait(conn, pid):
    row = fetch_one(conn, WAIT_OF, (pid,))
    if row is None:
        return None
    episode = (row["locktype"], row["relation"], row["virtualxid"], row["transactionid"], row["waitstart"])
    return Wait(row["locktype"], row["waited_s"] or 0.0, episode)


def blocking_sessions(conn, pid):
    return fetch_all(conn, BLOCKING_SESSIONS, (pid,))


def describe_session(row):
    age = f", transaction open {duration(row['xact_age_s'])}" if row.get("xact_age_s") is not None else ""
    app = row.get("application_name") or "no application_name"
    return f"pid {row['pid']} ({app}, {row.get('state') or 'unknown state'}{age}): {row.get('query') or ''}".strip()


class LockWaitCut(Exception):
    """A relation-lock wait of a watched statement passed lock_timeout and was cancelled.

    Carries SQLSTATE 55P03 so that it is retried exactly like the server's own lock timeout.
    """

    pgcode = "55P03"

    def __init__(self, waited_s, blockers):
        super().__init__(f"waited {duration(waited_s)} for a lock, longer than lock_timeout")
        self.lock_wait_s = waited_s
        self.blockers = blockers


class TransactionWaitExceeded(Exception):
    """A watched statement waited on other transactions past build_wait_timeout and was cancelled."""

    def __init__(self, waited_s, blockers):
        super().__init__(f"waited {duration(waited_s)} for other transactions")
        self.waited_s = waited_s
        self.blockers = blockers


class WatchLost(Exception):
    """The watching session failed, so the statement was stopped: nothing bounded its lock waits."""


class StatementWatch:
    """Watch the statement running on ``target`` from the session ``conn``, in a thread.

    Cancels it (through the target's own cancel key: no privilege needed) when ``judge`` says so
    and records why in ``cut``, with the wait and the sessions it waited for. ``stop()`` ends the
    watch; after it, ``transactions_waited_s`` says how long the statement waited on others.
    """

    def __init__(self, conn, target, *, lock_timeout_s, build_wait_timeout_s, already_waited_s=0.0,
                 poll_s=IDLE_POLL_S):
        self.conn = conn
        self.target = target
        self.pid = target.get_backend_pid()
        self.lock_timeout_s = lock_timeout_s
        self.build_wait_timeout_s = build_wait_timeout_s
        self.already_waited_s = already_waited_s
        self.poll_s = min(poll_s, max(lock_timeout_s / 4, 0.02))
        self.waits = TransactionWaits()
        self.cut = None
        self.cut_wait = None
        self.blockers = []
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"indexops-watch-{self.pid}", daemon=True)

    @property
    def transactions_waited_s(self):
        return self.waits.total_s

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()

    def _run(self):
        try:
            self._watch()
        except Exception as exc:  # noqa: BLE001 - any failure of the watcher must stop the statement
            self.error = exc
            self._cancel(LOST, None)

    def _watch(self):
        while not self._stop.is_set():
            wait = read_wait(self.conn, self.pid)
            self.waits.observe(wait)
            verdict = judge(wait, self.already_waited_s + self.waits.total_s, lock_timeout_s=self.lock_timeout_s,
                            build_wait_timeout_s=self.build_wait_timeout_s, poll_s=self.poll_s)
            if verdict.cut:
                self.blockers = blocking_sessions(self.conn, self.pid)
                self._cancel(verdict.cut, wait)
                return
            self._stop.wait(verdict.sleep_s)

    def _cancel(self, why, wait):
        if self._stop.is_set():
            return  # the statement ended meanwhile; never cancel whatever the session runs next
        self.cut, self.cut_wait = why, wait
        self.target.cancel()

