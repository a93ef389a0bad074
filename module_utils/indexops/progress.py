"""One 0-100 scale for pg_stat_progress_create_index, whose counters restart at each phase."""

from __future__ import annotations

# phase -> (band start, band end, counter pair that measures progress inside the band)
PHASE_BANDS = {
    "initializing": (0, 1, None),
    "waiting for writers before build": (1, 3, ("lockers_done", "lockers_total")),
    "building index": (3, 50, ("blocks_done", "blocks_total")),
    "building index: scanning table": (3, 50, ("blocks_done", "blocks_total")),
    "building index: sorting live tuples": (50, 60, ("tuples_done", "tuples_total")),
    "building index: loading tuples in tree": (60, 75, ("tuples_done", "tuples_total")),
    "waiting for writers before validation": (75, 77, ("lockers_done", "lockers_total")),
    "index validation: scanning index": (77, 83, ("blocks_done", "blocks_total")),
    "index validation: sorting tuples": (83, 85, ("tuples_done", "tuples_total")),
    "index validation: scanning table": (85, 97, ("blocks_done", "blocks_total")),
    "waiting for old snapshots": (97, 98, ("lockers_done", "lockers_total")),
    "waiting for readers before marking dead": (98, 99, ("lockers_done", "lockers_total")),
    "waiting for readers before dropping": (99, 100, ("lockers_done", "lockers_total")),
}


def percent_done(row):
    """Overall percent for one progress row (a mapping of the view's columns)."""
    phase = row.get("phase") or ""
    band = PHASE_BANDS.get(phase) or next(
        (value for key, value in PHASE_BANDS.items() if phase.startswith(key)), (0, 100, None))
    start, end, counters = band
    fraction = 0.0
    if counters:
        done, total = (row.get(counters[0]) or 0), (row.get(counters[1]) or 0)
        fraction = min(done / total, 1.0) if total else 0.0
    return round(start + (end - start) * fraction, 1)
