"""progress.percent_done: one 0-100 scale across the phases of a concurrent index build."""

from __future__ import annotations

import numbers

import pytest

from ansible_collections.indexops.core.plugins.module_utils.progress import eta_s, percent_done, phase_percent
from tests.unit.casefiles import cases, section

CASES = "progress.yml"
CIC = section(CASES, "cic_phases")
REINDEX = CIC + section(CASES, "reindex_tail")
TOTAL = 1000


def row(phase, fraction):
    """A view row ``fraction`` of the way through ``phase`` (counters of other phases stay zero)."""
    values = {"phase": phase["phase"], "lockers_done": 0, "lockers_total": 0, "blocks_done": 0, "blocks_total": 0,
              "tuples_done": 0, "tuples_total": 0}
    if phase.get("counters"):
        done, total = phase["counters"]
        values[total] = TOTAL
        values[done] = int(TOTAL * fraction)
    return values


def walk(phases):
    """Percent at the start, middle and end of every phase, in the order the server reports them."""
    return [(phase["phase"], fraction, percent_done(row(phase, fraction)))
            for phase in phases for fraction in (0.0, 0.5, 1.0)]


@pytest.mark.parametrize("phases", [CIC, REINDEX], ids=["create-index-concurrently", "reindex-concurrently"])
def test_percent_never_goes_back(phases):
    seen = walk(phases)
    for (phase_a, frac_a, a), (phase_b, frac_b, b) in zip(seen, seen[1:], strict=False):
        assert a <= b, f"{phase_a}@{frac_a}: {a}% then {phase_b}@{frac_b}: {b}%"
    assert seen[-1][2] > seen[0][2]


@pytest.mark.parametrize("phases", [CIC, REINDEX], ids=["create-index-concurrently", "reindex-concurrently"])
def test_percent_within_scale(phases):
    for phase, fraction, percent in walk(phases):
        assert isinstance(percent, numbers.Real)
        assert 0 <= percent <= 100, f"{phase}@{fraction}: {percent}"


def test_initializing_is_zero():
    assert percent_done({"phase": "initializing"}) == 0


@pytest.mark.parametrize("phase", [p for p in REINDEX if p.get("counters")], ids=lambda p: p["phase"])
def test_percent_moves_within_a_phase(phase):
    """During a long phase the operator sees the number move as the phase's own counters move."""
    assert percent_done(row(phase, 0.0)) < percent_done(row(phase, 0.5)) < percent_done(row(phase, 1.0))


def test_table_scan_weighs_more_than_waiting():
    """Scanning the table is the bulk of a build; waiting for writers is not."""
    waiting = next(p for p in CIC if p["phase"] == "waiting for writers before build")
    scanning = next(p for p in CIC if p["phase"] == "building index: scanning table")
    waiting_span = percent_done(row(waiting, 1.0)) - percent_done(row(waiting, 0.0))
    scanning_span = percent_done(row(scanning, 1.0)) - percent_done(row(scanning, 0.0))
    assert scanning_span > waiting_span


@pytest.mark.parametrize("case", cases(CASES, "rows"))
def test_row(case):
    percent = percent_done(case["row"])
    assert isinstance(percent, numbers.Real)
    assert case["min"] <= percent <= case["max"]


PLAIN = section(CASES, "plain_phases")


def test_plain_build_never_goes_back_and_ends_at_100():
    seen = [percent_done({**row(phase, fraction), "command": "CREATE INDEX"})
            for phase in PLAIN for fraction in (0.0, 0.5, 1.0)]
    assert seen == sorted(seen)
    assert seen[-1] == 100


@pytest.mark.parametrize("phases", [CIC, PLAIN], ids=["concurrent", "plain"])
def test_partitioned_build_never_goes_back(phases):
    """Each partition runs the phases again; the overall percent keeps rising across partitions."""
    seen = [percent_done({**row(phase, fraction), "partitions_total": 3, "partitions_done": done})
            for done in range(3) for phase in phases for fraction in (0.0, 0.5, 1.0)]
    assert seen == sorted(seen)
    assert seen[0] == 0 and seen[-1] <= 100


@pytest.mark.parametrize("case", cases(CASES, "eta"))
def test_eta(case):
    percent = percent_done(case["row"])
    assert eta_s(case["row"], percent, case["elapsed_s"]) == case["expected"]


def test_phase_percent_follows_the_phase_counter():
    assert phase_percent({"phase": "building index: scanning table", "blocks_done": 25, "blocks_total": 100}) == 25
    assert phase_percent({"phase": "initializing"}) is None
