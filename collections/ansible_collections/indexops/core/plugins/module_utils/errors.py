"""Errors that tell an operator what was wrong, what was expected and whether a rerun is safe."""

from __future__ import annotations

RERUN_SAFE = "Nothing was changed or left behind; running again is safe."
FIX_INPUT = "Nothing was changed; correct the input and run again."


def one_line(text):
    """Text from libpq or the server on one line: libpq puts its advice on a second, tab-indented line
    ("Connection refused\\n\\tIs the server running...?"), and a message is read as one line."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def sentence(text):
    """``text`` ending in exactly one full stop (a question keeps its question mark)."""
    text = one_line(text).rstrip(".")
    return text if text.endswith(("?", "!")) else text + "."


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
        """One line: what, then what was expected, then the hint."""
        parts = [sentence(self.what)]
        if self.expected:
            parts.append("Expected: " + sentence(self.expected))
        if self.hint:
            parts.append(one_line(self.hint))
        return " ".join(parts)

    def __str__(self):
        return self.msg


def input_error(what, expected):
    """A problem with the options: detected before any DDL, so nothing changed."""
    return IndexOpsError(what, expected=expected, hint=FIX_INPUT, retry_safe=False)
