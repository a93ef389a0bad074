#!/usr/bin/env python3
"""A small, bounded writer load against public.orders, to show that an index change does not block writes.

One connection, autocommit, one statement per write: an INSERT of a new order, or an UPDATE of the
status of a random existing one (every fourth write). It stops by itself after ``--seconds``, or
earlier once ``--stop-file`` exists, and prints how many writes it did and the slowest one::

    .venv/bin/python scripts/writer_load.py --dsn "host=127.0.0.1 port=54329 user=postgres dbname=indexops_demo" \\
        --seconds 120 --stop-file .sandbox/writer.stop

A write that waited for a lock (a plain CREATE INDEX takes SHARE on the table, so every write waits for
the whole build) shows up as a large maximum latency; under CREATE INDEX CONCURRENTLY it stays small.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

INSERT = """
INSERT INTO public.orders (customer_id, status, total_cents, email, created_at, note)
VALUES (%(customer)s, 'pending', %(total)s, 'customer' || %(customer)s || '@example.com', now(), 'writer load')
"""
UPDATE = "UPDATE public.orders SET status = 'shipped' WHERE id = %(id)s"
MAX_ID = "SELECT coalesce(max(id), 1) FROM public.orders"


@dataclass
class Tally:
    """What the load did: counts, and every write's latency in seconds."""

    inserts: int = 0
    updates: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return self.inserts + self.updates

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0

    def summary(self, elapsed: float) -> str:
        top = max(self.latencies, default=0.0)
        return (f"writer: {self.writes} writes in {elapsed:.1f}s ({self.inserts} inserts, {self.updates} updates), "
                f"max latency {top * 1000:.1f} ms, p99 {self.percentile(0.99) * 1000:.1f} ms, "
                f"median {self.percentile(0.5) * 1000:.1f} ms")


def write_once(cur, rng: random.Random, max_id: int, tally: Tally) -> None:
    """One timed single-row write."""
    began = time.monotonic()
    if tally.writes % 4 == 3:
        cur.execute(UPDATE, {"id": rng.randint(1, max_id)})
        tally.updates += 1
    else:
        cur.execute(INSERT, {"customer": rng.randint(1, 50_000), "total": rng.randint(100, 50_000)})
        tally.inserts += 1
    tally.latencies.append(time.monotonic() - began)


def run(dsn: str, seconds: float, rate: float, stop_file: Path | None) -> Tally:
    """Write at about ``rate`` statements per second until the time is up or the stop file appears."""
    rng = random.Random(42)
    tally = Tally()
    pause = 1.0 / rate if rate > 0 else 0.0
    deadline = time.monotonic() + seconds
    with contextlib.closing(psycopg2.connect(dsn, application_name="indexops/writer-load", connect_timeout=10)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(MAX_ID)
            max_id = cur.fetchone()[0]
            while time.monotonic() < deadline and not (stop_file and stop_file.exists()):
                write_once(cur, rng, max_id, tally)
                time.sleep(pause)
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="libpq DSN of the database holding public.orders")
    parser.add_argument("--seconds", type=float, default=120.0, help="stop after this long at the latest")
    parser.add_argument("--rate", type=float, default=100.0, help="writes per second to aim for (default 100)")
    parser.add_argument("--stop-file", type=Path, help="stop as soon as this file exists (removed at start)")
    args = parser.parse_args(argv)
    if args.stop_file:
        args.stop_file.unlink(missing_ok=True)
    began = time.monotonic()
    try:
        tally = run(args.dsn, args.seconds, args.rate, args.stop_file)
    except psycopg2.Error as exc:
        print(f"writer: failed: {str(exc).strip()}", file=sys.stderr)
        return 1
    print(tally.summary(time.monotonic() - began))
    return 0


if __name__ == "__main__":
    sys.exit(main())
