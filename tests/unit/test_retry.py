"""retry: the backoff schedule and which errors earn another attempt."""

from __future__ import annotations

import math
import random

import pytest

from ansible_collections.indexops.core.plugins.module_utils.retry import (
    RetryBudgetExhausted,
    RetryCounter,
    backoff_delays,
    is_retryable,
    run_with_retries,
)
from tests.unit.casefiles import cases

CASES = "retry.yml"


class PgError(Exception):
    """Stands in for psycopg2.Error: only the SQLSTATE in .pgcode matters to the retry logic."""

    def __init__(self, pgcode):
        super().__init__(f"SQLSTATE {pgcode}")
        self.pgcode = pgcode


class PlainError(Exception):
    pass


class FakeTime:
    """A clock that only moves when an attempt runs or the code sleeps; sleeps are recorded."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class Attempts:
    """An attempt callable that plays the scripted outcomes, each taking ``attempt_s`` seconds."""

    def __init__(self, outcomes, attempt_s, fake_time):
        self.outcomes = list(outcomes)
        self.attempt_s = attempt_s
        self.time = fake_time
        self.calls = 0
        self.raised = []

    def __call__(self):
        outcome = self.outcomes[self.calls]
        self.calls += 1
        self.time.now += self.attempt_s
        if outcome == "ok":
            return f"result of attempt {self.calls}"
        exc = PlainError("boom") if outcome == "plain" else PgError(outcome)
        self.raised.append(exc)
        raise exc


# --------------------------------------------------------------------------- backoff_delays


@pytest.mark.parametrize("case", cases(CASES, "backoff"))
def test_backoff_delays(case):
    delays = backoff_delays(case["attempts"], case["base"], case["cap"], random.Random(case["seed"]))
    assert len(delays) == max(case["attempts"] - 1, 0), "one delay before each attempt after the first"
    for step, delay in enumerate(delays):
        ceiling = min(case["cap"], case["base"] * 2 ** step)
        assert ceiling / 2 <= delay <= ceiling, f"delay {step}: {delay} outside [{ceiling / 2}, {ceiling}]"
        assert delay <= case["cap"]


@pytest.mark.parametrize("case", cases(CASES, "backoff"))
def test_backoff_delays_are_reproducible_for_a_seed(case):
    args = case["attempts"], case["base"], case["cap"]
    assert backoff_delays(*args, random.Random(case["seed"])) == backoff_delays(*args, random.Random(case["seed"]))


def test_backoff_delays_are_jittered():
    """Different runs (seeds) spread out instead of retrying in lockstep."""
    schedules = {tuple(backoff_delays(6, 1.0, 30.0, random.Random(seed))) for seed in range(10)}
    assert len(schedules) == 10


def test_backoff_delays_grow_until_the_cap():
    """The lower bound doubles each step, so even the unluckiest draw backs off exponentially."""
    delays = backoff_delays(6, 1.0, 8.0, random.Random(5))
    floors = [min(8.0, 2.0 ** step) / 2 for step in range(5)]
    assert floors == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert all(delay >= floor for delay, floor in zip(delays, floors, strict=True))
    assert sum(delays) >= sum(floors)


# --------------------------------------------------------------------------- is_retryable


@pytest.mark.parametrize(("pgcode", "retryable"), [
    ("55P03", True),  # lock_not_available: lock_timeout expired, nothing was done
    ("40P01", True),  # deadlock_detected: this session was chosen as the victim, nothing was done
    ("23505", False),  # unique_violation: a rerun fails the same way
    ("57014", False),  # query_canceled (statement_timeout / cancel)
    ("42P07", False),  # duplicate_table
    (None, False),
])
def test_is_retryable(pgcode, retryable):
    assert is_retryable(PgError(pgcode)) is retryable


def test_plain_exception_is_not_retryable():
    assert is_retryable(ValueError("no pgcode")) is False


# --------------------------------------------------------------------------- run_with_retries


@pytest.mark.parametrize("case", cases(CASES, "runs"))
def test_run_with_retries(case):
    fake = FakeTime()
    attempt = Attempts(case["outcomes"], case["attempt_s"], fake)
    counter = RetryCounter()
    retried = []
    expect = case["expect"]

    def run():
        return run_with_retries(attempt, list(case["delays"]), counter, on_retry=retried.append,
                                sleep=fake.sleep, clock=fake.clock)

    failed_attempts = expect["attempts"] - (1 if "result" in expect else 0)
    if "result" in expect:
        assert run() == f"result of attempt {expect['attempts']}"
    elif "raises" in expect:
        expected_type = PlainError if expect["raises"] == "plain" else PgError
        with pytest.raises(expected_type) as info:
            run()
        assert info.value is attempt.raised[-1], "a non-retryable error is raised as it is"
        if expected_type is PgError:
            assert info.value.pgcode == expect["raises"]
        failed_attempts -= 1  # the non-retryable failure is not a lock wait
    else:
        with pytest.raises(RetryBudgetExhausted) as info:
            run()
        exc = info.value
        assert exc.last_error is attempt.raised[-1]
        assert exc.last_error.pgcode == expect["exhausted"]
        assert exc.__cause__ is exc.last_error
        assert exc.attempts == expect["attempts"]
        assert math.isclose(exc.lock_wait_s, counter.lock_wait_s)

    assert attempt.calls == expect["attempts"], "no attempt after success, a fatal error or the budget"
    assert counter.attempts == expect["attempts"]
    assert fake.sleeps == expect["sleeps"]
    if "retried" in expect:
        assert [exc.pgcode for exc in retried] == expect["retried"]
    # documented: seconds lost to lock waits = failed attempts plus the backoff between them
    wanted_wait = failed_attempts * case["attempt_s"] + sum(expect["sleeps"])
    assert math.isclose(counter.lock_wait_s, wanted_wait), (counter.lock_wait_s, wanted_wait)


def test_counter_accumulates_across_statements():
    """One job runs several statements through one counter; attempts and waits add up."""
    fake = FakeTime()
    counter = RetryCounter()
    first = Attempts(["55P03", "ok"], 1.0, fake)
    second = Attempts(["40P01", "40P01", "ok"], 0.5, fake)
    run_with_retries(first, [2.0, 4.0], counter, sleep=fake.sleep, clock=fake.clock)
    run_with_retries(second, [2.0, 4.0], counter, sleep=fake.sleep, clock=fake.clock)
    assert counter.attempts == 5
    assert math.isclose(counter.lock_wait_s, (1.0 + 2.0) + (0.5 + 2.0 + 0.5 + 4.0))


def test_exhaustion_reports_job_totals():
    fake = FakeTime()
    counter = RetryCounter()
    counter.attempts, counter.lock_wait_s = 2, 3.0  # from an earlier statement of the same job
    attempt = Attempts(["55P03", "55P03"], 1.0, fake)
    with pytest.raises(RetryBudgetExhausted) as info:
        run_with_retries(attempt, [0.5], counter, sleep=fake.sleep, clock=fake.clock)
    assert info.value.attempts == 4
    assert math.isclose(info.value.lock_wait_s, 3.0 + 1.0 + 0.5 + 1.0)
    assert "55P03" in str(info.value), "the message carries the last error"


def test_delays_are_not_consumed_from_the_callers_list():
    fake = FakeTime()
    delays = [0.5, 1.0]
    run_with_retries(Attempts(["55P03", "ok"], 1.0, fake), delays, RetryCounter(), sleep=fake.sleep,
                     clock=fake.clock)
    assert delays == [0.5, 1.0]
