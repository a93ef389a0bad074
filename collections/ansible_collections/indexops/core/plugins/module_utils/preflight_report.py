"""pg_index_preflight's results and their wording: the checks of one run (Check, Checks), the
one-line texts for people, and the duration estimate from the rehearsal's measurement. Pure: no
database, so all of it is unit-tested (tests/unit/test_preflight.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ansible_collections.indexops.core.plugins.module_utils import humanize
from ansible_collections.indexops.core.plugins.module_utils.errors import input_error


@dataclass
class Check:
    name: str
    ok: bool | None = None
    detail: str = "not checked"


class Checks:
    """The checks of one run, in a fixed order per action."""

    def __init__(self, names):
        self.items = [Check(name) for name in names]
        self.by_name = {check.name: check for check in self.items}

    def passed(self, name, detail):
        self.by_name[name].ok, self.by_name[name].detail = True, detail

    def failed(self, name, detail):
        self.by_name[name].ok, self.by_name[name].detail = False, detail

    def skip(self, names, because):
        for name in names:
            check = self.by_name.get(name)
            if check is not None and check.ok is None:
                check.detail = f"not checked: {because}"

    @property
    def go(self):
        return not any(check.ok is False for check in self.items)

    def reasons(self):
        return [f"{check.name}: {check.detail}" for check in self.items if check.ok is False]

    def as_list(self):
        return [asdict(check) for check in self.items]



def describe(exc):
    """One line from an IndexOpsError: what was wrong and what was expected."""
    text = exc.what.rstrip(".")
    if exc.expected:
        text += f" (expected: {exc.expected.rstrip('.')})"
    return " ".join(text.split())


def version_text(version):
    return f"PostgreSQL {version // 10000}.{version % 10000} ({version})"


def rehearsal_measurement(rehearsal):
    """(duration_s, table_bytes or None) from the gate's rehearsal, or None when there is none."""
    if not rehearsal or rehearsal.get("duration_s") is None:
        return None
    expected = "rehearsal: {duration_s: <seconds>, table_bytes: <bytes>} from a rehearsal report, or null"
    try:
        duration = float(rehearsal["duration_s"])
        measured = rehearsal.get("table_bytes")
        measured = None if measured is None else int(measured)
    except (TypeError, ValueError):
        raise input_error(f"rehearsal {rehearsal!r} has a duration_s or table_bytes that is not a number",
                          expected) from None
    if duration < 0 or (measured is not None and measured < 0):
        raise input_error(f"rehearsal {rehearsal!r} has a negative duration_s or table_bytes", expected)
    return duration, measured


def estimate_seconds(measurement, table_bytes):
    """The rehearsal's duration scaled by table size; unscaled when the rehearsal has no size."""
    if measurement is None or table_bytes is None:
        return None
    duration, measured = measurement
    if not measured:
        return duration
    return duration * table_bytes / measured


def no_measurement(counted):
    """Why there is no estimate: which rehearsals would have counted, when the caller says."""
    if not counted:
        return "no rehearsal measurement to estimate the duration from"
    return (f"no rehearsal measurement to estimate the duration from: only a successful rehearsal in "
            f"{' or '.join(counted)} counts (indexops_rehearsal_environments), and none was found for this "
            f"change; playbooks/rehearse.yml there gives the estimate")


def judge_estimate(measurement, table_bytes, window_remaining_s, counted=()):
    """(ok, estimate_s, detail) of the estimated_duration check; ``counted`` names the environments
    whose rehearsals count."""
    estimate = estimate_seconds(measurement, table_bytes)
    if estimate is None:
        return True, None, no_measurement(counted)
    duration, measured = measurement
    basis = (f"rehearsal took {humanize.duration(duration)} on {humanize.size(measured)}, this table is "
             f"{humanize.size(table_bytes)}" if measured else
             f"rehearsal took {humanize.duration(duration)}; it recorded no table size, so not scaled")
    text = f"estimated {humanize.duration(estimate)} ({basis})"
    if window_remaining_s is None:
        return True, estimate, text
    if estimate > window_remaining_s:
        return False, estimate, (f"{text} is longer than the {humanize.duration(max(window_remaining_s, 0))} left in "
                                 "the maintenance window; run it at the start of a window")
    return True, estimate, f"{text}, within the {humanize.duration(window_remaining_s)} left in the maintenance window"


def describe_transaction(row):
    who = f"{row.get('usename') or '?'}/{row.get('application_name') or '-'}"
    state = row.get("state") or "unknown state"
    return f"pid {row['pid']} ({state}, open {humanize.duration(row['age_s'])}, {who}): {row['query']}"
