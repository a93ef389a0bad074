"""One 0-100 scale for pg_stat_progress_create_index, whose counters restart at each phase.

Each command's phases get a band of the scale, in the order the server runs them (PostgreSQL
manual, "CREATE INDEX Progress Reporting"); inside a band the phase's own counter pair moves the
percent from the band's start to its end. Bands are data, not branches: a new phase is one row.

A build on a partitioned table runs the phases once per partition; the overall percent is then
(partitions done + the current partition's percent) / partitions total.

ETA: the module is stateless (one poll), so the only rate it knows is the rate so far:
eta = elapsed * (100 - percent) / percent. It is given only in a phase that does measurable work
(scanning, sorting, loading: a blocks or tuples counter) and once at least MIN_PERCENT_FOR_ETA is
done; a phase that waits for other sessions has no rate, so eta is null while waiting.
"""

from __future__ import annotations

BLOCKS = ("blocks_done", "blocks_total")
TUPLES = ("tuples_done", "tuples_total")
LOCKERS = ("lockers_done", "lockers_total")
# Counters that measure work the build itself does; waiting phases count lockers instead.
WORK_COUNTERS = (BLOCKS, TUPLES)

# (phase, band start, band end, counter pair that measures progress inside the band)
# CREATE INDEX CONCURRENTLY and REINDEX CONCURRENTLY: two table scans and several waits; the last
# two phases only occur in REINDEX CONCURRENTLY (CIC ends after "waiting for old snapshots").
CONCURRENT_BANDS = (
    ("initializing", 0, 1, None),
    ("waiting for writers before build", 1, 3, LOCKERS),
    ("building index: scanning table", 3, 50, BLOCKS),
    ("building index: sorting live tuples", 50, 60, TUPLES),
    ("building index: loading tuples in tree", 60, 75, TUPLES),
    # gist, gin, brin, hash and spgist report a plain "building index" (or their own sub-phases).
    ("building index", 3, 75, BLOCKS),
    ("waiting for writers before validation", 75, 77, LOCKERS),
    ("index validation: scanning index", 77, 83, BLOCKS),
    ("index validation: sorting tuples", 83, 85, TUPLES),
    ("index validation: scanning table", 85, 97, BLOCKS),
    ("waiting for old snapshots", 97, 98, LOCKERS),
    ("waiting for readers before marking dead", 98, 99, LOCKERS),
    ("waiting for readers before dropping", 99, 100, LOCKERS),
)

# CREATE INDEX and REINDEX without CONCURRENTLY: one scan, one sort, one load, no waits.
PLAIN_BANDS = (
    ("initializing", 0, 1, None),
    ("building index: scanning table", 1, 60, BLOCKS),
    ("building index: sorting live tuples", 60, 75, TUPLES),
    ("building index: loading tuples in tree", 75, 100, TUPLES),
    ("building index", 1, 100, BLOCKS),
)

# command (pg_stat_progress_create_index.command) -> its bands; an unknown or hidden command
# gets the concurrent bands, which cover every phase.
COMMAND_BANDS = {
    "CREATE INDEX CONCURRENTLY": CONCURRENT_BANDS,
    "REINDEX CONCURRENTLY": CONCURRENT_BANDS,
    "CREATE INDEX": PLAIN_BANDS,
    "REINDEX": PLAIN_BANDS,
}
UNKNOWN_BAND = (0, 100, None)
MIN_PERCENT_FOR_ETA = 1.0


def band_of(row):
    """(start, end, counters) of the row's phase: exact phase first, then the longest prefix
    (an access method's own "building index: ..." sub-phase), else the whole scale."""
    phase = row.get("phase") or ""
    bands = COMMAND_BANDS.get(row.get("command") or "", CONCURRENT_BANDS)
    exact = next((band[1:] for band in bands if band[0] == phase), None)
    if exact is not None:
        return exact
    prefixes = sorted((band for band in bands if phase.startswith(band[0])), key=lambda band: -len(band[0]))
    return prefixes[0][1:] if prefixes else UNKNOWN_BAND


def counter_fraction(row, counters):
    """done/total of one counter pair, clipped to 0..1; None when the phase has no counter or the
    server has not set its total yet."""
    if not counters:
        return None
    done, total = (row.get(counters[0]) or 0), (row.get(counters[1]) or 0)
    if not total:
        return None
    return max(0.0, min(done / total, 1.0))


def phase_percent(row):
    """Percent of the current phase done, from its own counters; None when it has none."""
    fraction = counter_fraction(row, band_of(row)[2])
    return None if fraction is None else round(100 * fraction, 1)


def partition_share(row, percent):
    """Scale one partition's percent onto the whole partitioned build."""
    total = row.get("partitions_total") or 0
    if not total:
        return percent
    done = min(row.get("partitions_done") or 0, total)
    return min(100.0 * (done + percent / 100.0) / total, 100.0)


def percent_done(row):
    """Overall percent for one progress row (a mapping of the view's columns)."""
    start, end, counters = band_of(row)
    fraction = counter_fraction(row, counters) or 0.0
    return round(partition_share(row, start + (end - start) * fraction), 1)


def measurable(row):
    """Whether the phase does work with a rate (scan, sort, load), as opposed to waiting."""
    return band_of(row)[2] in WORK_COUNTERS


def eta_s(row, percent, elapsed_s):
    """Seconds left at the rate so far, or None when no rate is known (see the module docstring)."""
    if percent is None or elapsed_s is None or elapsed_s <= 0 or not measurable(row):
        return None
    if percent < MIN_PERCENT_FOR_ETA or percent >= 100:
        return None
    return round(elapsed_s * (100.0 - percent) / percent, 1)
