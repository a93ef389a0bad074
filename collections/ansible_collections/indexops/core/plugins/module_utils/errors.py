"""Errors that tell an operator what was wrong, what was expected and whether a rerun is safe."""

from __future__ import annotations

RERUN_SAFE = "Nothing was changed or left behind; running again is safe."
FIX_INPUT = "Nothing was changed; correct the input and run again."


class IndexOpsError(Exception):
    """One failure, phrased for the person on call.

    ``what`` says what went wrong, ``expected`` what would have been right, ``hint`` what to do
    (defaults to the input-error wording) and ``details`` carries structured facts for the result.
    """

    def __init__(self, what, expected=None, hint=FIX_INPUT, retry_safe=False, **details):
        super().__init__(what)
        self.what = what
        self.expected = expected
        self.hint = hint
        self.retry_safe = retry_safe
        self.details = details

    @property
    def msg(self):
        parts = [self.what.rstrip(".") + "."]
        if self.expected:
            parts.append("Expected: " + self.expected.rstrip(".") + ".")
        if self.hint:
            parts.append(self.hint)
        return " ".join(parts)

    def __str__(self):
        return self.msg


def input_error(what, expected):
    """A problem with the options: detected before any DDL, so nothing changed."""
    return IndexOpsError(what, expected=expected, hint=FIX_INPUT, retry_safe=False)
