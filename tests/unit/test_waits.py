"""waits: which waits of a concurrent statement are cut, and how transaction waits add up."""

from __future__ import annotations

import pytest

from ansible_collections.indexops.core.plugins.module_utils.waits import (
    LOCK,
    TRANSACTIONS,
    TransactionWaits,
    Wait,
    judge,
)
from tests.unit.casefiles import cases

CASES = "waits.yml"
CUTS = {"lock": LOCK, "transactions": TRANSACTIONS, None: None}


@pytest.mark.parametrize("case", cases(CASES, "judge"))
def test_judge(case):
    wait = Wait(case["wait"]["locktype"], case["wait"]["waited_s"]) if case["wait"] else None
    verdict = judge(wait, case["txn_s"], **case["limits"])
    assert verdict.cut == CUTS[case["expect"]["cut"]]
    assert verdict.sleep_s == pytest.approx(case["expect"]["sleep_s"])


@pytest.mark.parametrize("case", cases(CASES, "totals"))
def test_transaction_waits_total(case):
    waits = TransactionWaits()
    for seen in case["seen"]:
        waits.observe(Wait(seen.get("locktype", "virtualxid"), seen["waited_s"], (seen["episode"],)))
    assert waits.total_s == pytest.approx(case["expect"])


def test_a_relation_lock_is_never_cut_before_lock_timeout():
    """Property over a grid: a lock wait is cut exactly when it reaches lock_timeout, never earlier."""
    for lock_timeout in (0.05, 0.2, 1.0, 5.0):
        for step in range(0, 100):
            waited = lock_timeout * step / 50
            verdict = judge(Wait("relation", waited), 0.0, lock_timeout_s=lock_timeout, build_wait_timeout_s=None)
            assert (verdict.cut == LOCK) == (waited >= lock_timeout)
            if verdict.cut is None:  # the next look comes no later than the deadline
                assert waited + verdict.sleep_s <= lock_timeout + 1e-9
