""".gitignore: the reports runbook.md says to commit are not ignored, the rest is (issue 16 item 19)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

REPORTS = [
    # (path, ignored): the JSON of real environments is read by the gate and by rollbacks.
    ("reports/orders-customer-created/staging-20261207T101500Z.json", False),
    ("reports/orders-customer-created/production-20261207T101500Z.json", False),
    # The Markdown goes into the change ticket; the sandbox and status snapshots are nobody's record.
    ("reports/orders-customer-created/production-20261207T101500Z.md", True),
    ("reports/orders-customer-created/staging-20261207T101500Z.md", True),
    ("reports/orders-customer-created/local-20261207T101500Z.json", True),
    ("reports/status-20261207T101500123Z-ab12.json", True),
]


@pytest.mark.parametrize(("path", "ignored"), REPORTS, ids=[path for path, _ in REPORTS])
def test_reports_to_commit_are_the_only_ones_git_shows(path, ignored):
    checked = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT, check=False)
    assert checked.returncode == (0 if ignored else 1), f"{path}: git check-ignore exited {checked.returncode}"
