"""Lock-timeout retries: which errors are retried, and how long to wait between attempts."""

from __future__ import annotations

import time

# SQLSTATEs worth another attempt: the statement never got its lock, so nothing was done.
RETRYABLE = {
    "55P03": "lock timeout",  # lock_not_available
    "40P01": "deadlock",  # deadlock_detected
}


def backoff_delays(attempts, base, cap, rng):
    """Seconds to sleep before attempts 2..N: exponential, capped, with jitter.

    "Equal jitter": half the step is fixed, half random, so retries from several runs spread out
    yet never fire back-to-back.
    """
    delays = []
    for step in range(max(attempts - 1, 0)):
        ceiling = min(cap, base * (2 ** step))
        delays.append(ceiling / 2 + rng.uniform(0, ceiling / 2))
    return delays


def is_retryable(exc):
    return getattr(exc, "pgcode", None) in RETRYABLE


class RetryBudgetExhausted(Exception):
    """Every attempt hit a lock timeout or deadlock; carries the last error."""

    def __init__(self, last_error, attempts, lock_wait_s):
        super().__init__(str(last_error))
        self.last_error = last_error
        self.attempts = attempts
        self.lock_wait_s = lock_wait_s


class RetryCounter:
    """Attempts made and seconds lost to lock waits, across all statements of one job."""

    def __init__(self):
        self.attempts = 0
        self.lock_wait_s = 0.0


def run_with_retries(attempt, delays, counter, *, on_retry=None, sleep=time.sleep, clock=time.monotonic):
    """Call ``attempt()`` until it succeeds, retrying lock errors after each delay in turn."""
    for delay in [*delays, None]:
        counter.attempts += 1
        started = clock()
        try:
            return attempt()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            # A watched statement knows how long it waited for the lock itself (its attempt may
            # also have waited on other transactions, which is not lock waiting).
            waited = getattr(exc, "lock_wait_s", None)
            counter.lock_wait_s += clock() - started if waited is None else waited
            if on_retry:
                on_retry(exc)
            if delay is None:
                raise RetryBudgetExhausted(exc, counter.attempts, counter.lock_wait_s) from exc
            sleep(delay)
            counter.lock_wait_s += delay
    raise AssertionError("unreachable")  # the loop always returns or raises
