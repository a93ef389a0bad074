"""The environment gate: may this change run its DDL here, now?

Three checks, in this order, each with a one-line refusal that says what is refused, why and what
to do:

1. the kill switch (``indexops_enabled``) — DDL only; a break-glass override never passes it;
2. the maintenance window — DDL only; the override passes it;
3. the rehearsal requirement — a successful rehearsal of the same change digest, from one of the
   rehearsal environments, finished within the maximum age; the override passes it. The evidence
   comes from one of two sources (``rehearsal_source``):
   - ``reports``: ``rehearse`` reports in reports_dir/<change>/*.json on the control node;
   - ``ledger``: the rehearsal environment's ledger (indexops.jobs), read by the module beforehand
     (rehearsal_ledger.py) and judged here (rehearsals.py). Report files are not read at all then,
     so a file written on the control node cannot pass the gate.

Read-only operations (``read``) skip the kill switch and the window. The newest matching rehearsal
is returned whether or not one is required, because preflight scales its duration estimate from it
(from the ledger only when the caller read it: indexops_gate reads it only when a rehearsal is required).
Nothing here talks to a database; the inputs besides the options are reports_dir/<change>/*.json
(source reports) or the ledger rows the caller read (source ledger).
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ansible_collections.indexops.core.plugins.module_utils import humanize, rehearsals
from ansible_collections.indexops.core.plugins.module_utils.changefile import CHANGE_SCHEMA
from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError, input_error
from ansible_collections.indexops.core.plugins.module_utils.spec import duration_seconds

UTC = dt.UTC
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = {**{day: i for i, day in enumerate(DAYS)},
             **{name: i for i, name in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday",
                                                  "saturday", "sunday"))}}
CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")
CHANGE_ID = re.compile(CHANGE_SCHEMA["properties"]["id"]["pattern"])
DIGEST = re.compile(r"^[0-9a-f]{64}$")
OPERATIONS = ("ddl", "read")
SOURCES = ("reports", "ledger")
REHEARSAL_KIND = "rehearse"

# Why a rehearsal report did not count, in the order the checks run, with how the refusal says it.
NOT_COUNTED = {
    "digest": "{n} for another digest (the change was edited after it)",
    "environment": "{n} from {others} (only rehearsals from {allowed} count)",
    "failed": "{n} failed",
    "incomplete": "{n} incomplete (not yet applied, rolled back and applied again, or still running)",
    "age": "{n} older than {max_age}",
    "unreadable": "{n} unreadable",
}


@dataclass(frozen=True)
class Window:
    """A weekly maintenance window: opens on ``days`` at ``start``, closes at ``end`` (local time).

    An ``end`` at or before ``start`` closes on the next day, so a window may cross midnight; the
    days are the days on which it opens. ``end`` may be 24:00.
    """

    days: tuple
    start: dt.time
    end_minutes: int
    timezone: str

    @property
    def zone(self):
        return ZoneInfo(self.timezone)

    @property
    def text(self):
        end = f"{self.end_minutes // 60:02d}:{self.end_minutes % 60:02d}"
        return f"{days_text(self.days)} {self.start:%H:%M}-{end} {self.timezone}"

    def intervals(self, now):
        """(opens, closes) in UTC for every window opening from the day before ``now`` to 8 days after."""
        today = now.astimezone(self.zone).date()
        start_minutes = self.start.hour * 60 + self.start.minute
        length_days = 0 if self.end_minutes > start_minutes else 1
        for offset in range(-1, 9):
            day = today + dt.timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opens = dt.datetime.combine(day, self.start, tzinfo=self.zone)
            close_day = day + dt.timedelta(days=length_days + self.end_minutes // 1440)
            close_time = dt.time(self.end_minutes % 1440 // 60, self.end_minutes % 60)
            closes = dt.datetime.combine(close_day, close_time, tzinfo=self.zone)
            yield opens.astimezone(UTC), closes.astimezone(UTC)


@dataclass(frozen=True)
class Policy:
    """Everything the gate decides on, validated."""

    change_id: str
    digest: str
    environment: str
    operation: str
    enabled: bool
    window: Window | None
    require_rehearsal: bool
    rehearsal_environments: tuple
    rehearsal_max_age: str
    rehearsal_max_age_s: float
    reports_dir: str
    override_reason: str | None
    operator: str | None
    now: dt.datetime
    rehearsal_source: str = "reports"
    ledger_where: str | None = None  # where the rehearsal ledger is (source ledger), None when none is set
    command_line: tuple = ()  # the policy variables this run was given with -e (the value_source filter)


def days_text(days):
    """(0, 1, 2, 4) -> 'mon-wed,fri'."""
    runs = []
    for day in days:
        if runs and day == runs[-1][1] + 1:
            runs[-1][1] = day
        else:
            runs.append([day, day])
    return ",".join(DAYS[low] if low == high else f"{DAYS[low]}-{DAYS[high]}" for low, high in runs)


# --------------------------------------------------------------------------- parsing


def parse_window(value):
    """A maintenance window mapping -> Window, or None for 'always open'."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise input_error(f"maintenance_window is a {type(value).__name__}",
                          "a mapping with days, start, end and timezone, or null for always open")
    unknown = sorted(set(value) - {"days", "start", "end", "timezone"})
    if unknown:
        raise input_error(f"maintenance_window has unknown keys {unknown}", "only days, start, end and timezone")
    start = parse_clock(value.get("start"), "maintenance_window.start", allow_24=False)
    end = parse_clock(value.get("end"), "maintenance_window.end", allow_24=True)
    if end == start:
        raise input_error(f"maintenance_window.start and end are both {value.get('start')}",
                          "an end different from the start (use maintenance_window: null for always open)")
    return Window(days=parse_days(value.get("days")), start=dt.time(start // 60, start % 60), end_minutes=end,
                  timezone=parse_timezone(value.get("timezone")))


def parse_clock(value, what, allow_24):
    """'HH:MM' -> minutes after midnight; 24:00 only for the end of a window."""
    expected = f"{what} as a quoted \"HH:MM\" between 00:00 and {'24:00' if allow_24 else '23:59'}"
    if (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value.isdigit()):
        raise input_error(f"{what} is the number {value}, which is how YAML reads an unquoted time such as 22:00",
                          expected)
    match = CLOCK.match(value) if isinstance(value, str) else None
    if not match:
        raise input_error(f"{what} is {value!r}", expected)
    hours, minutes = int(match.group(1)), int(match.group(2))
    total = hours * 60 + minutes
    if minutes > 59 or total > (1440 if allow_24 else 1439):
        raise input_error(f"{what} {value!r} is not a time of day", expected)
    return total


def parse_days(value):
    """['mon', 'wed-fri', 'sunday'] -> sorted weekday numbers (Monday is 0); unset means every day."""
    expected = "maintenance_window.days as a list of mon, tue, wed, thu, fri, sat, sun or ranges like mon-fri"
    if value is None:
        return tuple(range(7))
    if not isinstance(value, list) or not value:
        raise input_error(f"maintenance_window.days is {value!r}", expected)
    days = set()
    for item in value:
        first, _, last = str(item).strip().lower().partition("-")
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise input_error(f"maintenance_window.days has {item!r}", expected)
        low, high = DAY_NAMES[first], DAY_NAMES[last or first]
        days.update(range(low, high + 1) if low <= high else [*range(low, 7), *range(0, high + 1)])
    return tuple(sorted(days))


def parse_timezone(value):
    expected = "maintenance_window.timezone as an IANA time zone such as Europe/Berlin or UTC"
    if not isinstance(value, str) or not value.strip():
        raise input_error("maintenance_window.timezone is missing", expected)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise input_error(f"maintenance_window.timezone {value!r} is not a known time zone", expected) from None
    return value


def parse_instant(value, what):
    """ISO-8601 text -> an aware datetime; text without an offset is refused (it would be ambiguous)."""
    expected = f"{what} as ISO-8601 with a UTC offset, e.g. 2025-03-01T22:30:00+01:00 or 2025-03-01T21:30:00Z"
    try:
        instant = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise input_error(f"{what} {value!r} is not an ISO-8601 time", expected) from None
    if instant.tzinfo is None:
        raise input_error(f"{what} {value!r} has no UTC offset", expected)
    return instant


def max_age_seconds(value):
    """'7d', '12h', '30min' -> seconds. A bare number is refused: PostgreSQL would read it as milliseconds."""
    expected = "rehearsal_max_age with a unit, e.g. 7d, 12h or 30min"
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().replace(".", "", 1).isdigit()):
        raise input_error(f"rehearsal_max_age {value!r} has no unit", expected)
    try:
        return duration_seconds(value, "rehearsal_max_age")
    except IndexOpsError:
        raise input_error(f"rehearsal_max_age {value!r} is not a duration", expected) from None


def build_policy(params, now=None):
    """Validate the gate's options (a dict shaped like the module's parameters) into a Policy."""
    change_id, digest = params.get("change_id"), params.get("digest")
    if not isinstance(change_id, str) or not CHANGE_ID.match(change_id):
        raise input_error(f"change_id {change_id!r} is not a change id",
                          "the id of a change file: lower-case letters, digits, '.', '_' or '-'")
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise input_error(f"digest {digest!r} is not a change digest", "the 64 hex digits indexops_change returns")
    operation = params.get("operation") or "ddl"
    if operation not in OPERATIONS:
        raise input_error(f"operation is {operation!r}", "ddl or read")
    environments = tuple(params.get("rehearsal_environments") or ())
    if params.get("require_rehearsal") and not environments:
        raise input_error("require_rehearsal is true but rehearsal_environments is empty",
                          "at least one environment whose rehearsals count, e.g. [staging]")
    override = (params.get("override_reason") or "").strip() or None
    operator = (params.get("operator") or "").strip() or None
    if override and not operator:
        raise input_error("a break-glass override_reason was given without an operator",
                          "the name of the person breaking glass (-e indexops_operator=<name>), so it can be recorded")
    max_age = params.get("rehearsal_max_age") or "7d"
    source = params.get("rehearsal_source") or "reports"
    if source not in SOURCES:
        raise input_error(f"rehearsal_source is {source!r}", "reports or ledger")
    ledger_where = params.get("ledger_where")
    command_line = tuple(params.get("given_on_command_line") or ())
    if source == "ledger" and params.get("require_rehearsal") and not ledger_where:
        raise input_error(
            f"rehearsal_source is ledger ({given_where('indexops_rehearsal_source', command_line)}) and a "
            "rehearsal is required, but no rehearsal ledger is set",
            "rehearsal_ledger (indexops_rehearsal_ledger in the inventory's group_vars) with the login_host, "
            "login_port, login_user and db of the rehearsal environment's database")
    return Policy(
        change_id=change_id, digest=digest, environment=str(params.get("environment") or ""), operation=operation,
        enabled=bool(params.get("enabled", True)), window=parse_window(params.get("maintenance_window")),
        require_rehearsal=bool(params.get("require_rehearsal")), rehearsal_environments=environments,
        rehearsal_max_age=str(max_age), rehearsal_max_age_s=max_age_seconds(max_age),
        reports_dir=str(params.get("reports_dir") or "reports"), override_reason=override, operator=operator,
        now=parse_instant(params["now"], "now") if params.get("now") else (now or dt.datetime.now(UTC)),
        rehearsal_source=source, ledger_where=ledger_where if source == "ledger" else None,
        command_line=command_line,
    )


def given_where(variable, command_line):
    """Where a policy value came from, so that a refusal sends the operator to the right place."""
    return "given with -e on the command line" if variable in command_line else "from the inventory"


# --------------------------------------------------------------------------- window


def window_state(window, now):
    """open, opens_at (next opening when closed), closes_at and remaining_s (when open), timezone."""
    if window is None:
        return {"open": True, "opens_at": None, "closes_at": None, "remaining_s": None, "timezone": None}
    intervals = sorted(window.intervals(now))
    current = [closes for opens, closes in intervals if opens <= now < closes]
    if current:
        closes = max(current)
        return {"open": True, "opens_at": None, "closes_at": _local_iso(closes, window),
                "remaining_s": (closes - now).total_seconds(), "timezone": window.timezone}
    opens = min(opens for opens, _ in intervals if opens > now)
    return {"open": False, "opens_at": _local_iso(opens, window), "closes_at": None, "remaining_s": None,
            "timezone": window.timezone}


def _local_iso(instant, window):
    return instant.astimezone(window.zone).isoformat()


# --------------------------------------------------------------------------- rehearsals


def find_rehearsal(policy):
    """(newest matching rehearsal or None, {reason: count} for rehearsal reports that did not count)."""
    matches, not_counted = [], {}
    for path in sorted(glob.glob(os.path.join(glob.escape(policy.reports_dir), glob.escape(policy.change_id),
                                              "*.json"))):
        report = _read_report(path)
        if report is not None and report.get("kind") != REHEARSAL_KIND:
            continue  # apply and rollback reports are not rehearsals
        verdict, finished = _judge(report, policy)
        if verdict:
            not_counted.setdefault(verdict, []).append(report.get("environment") if report else None)
        else:
            matches.append((finished, path, report))
    if not matches:
        return None, not_counted
    finished, path, report = max(matches, key=lambda item: (item[0], item[1]))
    measurements = report.get("measurements") or {}
    return {
        "source": "reports", "path": path, "where": path, "environment": report.get("environment"),
        "finished_at": finished.isoformat(),
        "age_s": (policy.now - finished).total_seconds(), "duration_s": measurements.get("duration_s"),
        "table_bytes": measurements.get("table_bytes"), "digest": report.get("digest"),
        "operator": report.get("operator"),
        # A rehearsal over a server's databases measured the slowest one (reports from before: one database).
        "databases": measurements.get("databases", 1),
    }, not_counted


def _read_report(path):
    try:
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def _judge(report, policy):
    """(why the report does not count or None, its finished_at)."""
    if report is None:
        return "unreadable", None
    try:
        finished = dt.datetime.fromisoformat(str(report.get("finished_at")))
    except ValueError:
        return "unreadable", None
    finished = finished if finished.tzinfo else finished.replace(tzinfo=UTC)
    if report.get("digest") != policy.digest:
        return "digest", finished
    if report.get("environment") not in policy.rehearsal_environments:
        return "environment", finished
    if report.get("success") is not True:
        return "failed", finished
    if (policy.now - finished).total_seconds() > policy.rehearsal_max_age_s:
        return "age", finished
    return None, finished


def find_ledger_rehearsal(policy, ledger):
    """Like find_rehearsal, from the rows ``ledger`` holds ({jobs, error}; None when nothing was read)."""
    if not ledger or ledger.get("jobs") is None:
        return None, {}
    return rehearsals.newest(ledger["jobs"], policy.digest, policy.rehearsal_environments,
                             policy.rehearsal_max_age_s, policy.now, policy.ledger_where)


def _not_counted_text(not_counted, policy):
    noun = "rehearsal in the ledger" if policy.rehearsal_source == "ledger" else "rehearsal report"
    plural = "rehearsals in the ledger" if policy.rehearsal_source == "ledger" else "rehearsal reports"
    parts = []
    for verdict, template in NOT_COUNTED.items():
        environments = not_counted.get(verdict)
        if environments:
            others = ", ".join(sorted({str(env) for env in environments}))
            parts.append(template.format(n=len(environments), others=others, max_age=policy.rehearsal_max_age,
                                         allowed=" or ".join(policy.rehearsal_environments)))
    total = sum(len(items) for items in not_counted.values())
    return f" ({total} {noun if total == 1 else plural} did not count: {', '.join(parts)})" if parts else ""


# --------------------------------------------------------------------------- the checks


def check_kill_switch(policy, _window, _rehearsal, _not_counted, _ledger=None):
    if policy.enabled:
        return None
    if "indexops_enabled" in policy.command_line:
        return (f"refused: indexops is switched off for this run on {policy.environment} (indexops_enabled: false, "
                "given with -e on the command line), so no DDL runs; run again without -e indexops_enabled=false "
                "once index changes are allowed again")
    return (f"refused: indexops is switched off on {policy.environment} (indexops_enabled: false, from the "
            f"inventory), so no DDL runs there; set indexops_enabled: true in the {policy.environment} "
            "inventory's group_vars once index changes are allowed again")


def check_window(policy, window, _rehearsal, _not_counted, _ledger=None):
    if window["open"]:
        return None
    zone = policy.window.zone
    local_now = policy.now.astimezone(zone)
    opens = dt.datetime.fromisoformat(window["opens_at"])
    return (f"refused: {policy.environment} allows DDL only in its maintenance window ({policy.window.text}); "
            f"it is {local_now:%a %H:%M} there now and the window opens {opens:%a %Y-%m-%d %H:%M} "
            f"({window['opens_at']}, in {humanize.duration((opens - policy.now).total_seconds())}); run again then")


def searched_text(policy, ledger):
    """Where the gate looked, and why it could not look there when it could not."""
    if policy.rehearsal_source == "reports":
        return os.path.join(policy.reports_dir, policy.change_id, "")
    where = f"the rehearsal ledger ({policy.ledger_where})"
    error = (ledger or {}).get("error")
    return f"{where}, which could not be read: {error.rstrip('.')}" if error else where


def check_rehearsal(policy, _window, rehearsal, not_counted, ledger=None):
    if not policy.require_rehearsal or rehearsal is not None:
        return None
    first = policy.rehearsal_environments[0]
    return (f"refused: {policy.environment} requires a successful rehearsal of change {policy.change_id} "
            f"digest {policy.digest[:12]}… from {' or '.join(policy.rehearsal_environments)} within "
            f"{policy.rehearsal_max_age}; none found in {searched_text(policy, ledger)}"
            f"{_not_counted_text(not_counted, policy)} "
            f"(run playbooks/rehearse.yml -i inventories/{first} -e change={policy.change_id})")


# (name, check, operations it applies to, whether a break-glass override passes it)
CHECKS = (
    ("kill_switch", check_kill_switch, ("ddl",), False),
    ("window", check_window, ("ddl",), True),
    ("rehearsal", check_rehearsal, ("ddl", "read"), True),
)


def decide(policy, ledger=None):
    """The gate's verdict: go, the refusals that stand, the ones a break-glass override passed.

    ``ledger`` (source ledger): {"jobs": the change's ledger rows oldest first, or None, "error": why
    they could not be read, or None}, as the module read them; None when nothing was read.
    """
    window = window_state(policy.window, policy.now)
    if policy.rehearsal_source == "ledger":
        rehearsal, not_counted = find_ledger_rehearsal(policy, ledger)
    else:
        rehearsal, not_counted = find_rehearsal(policy)
    reasons, overridden = [], []
    for _name, check, operations, overridable in CHECKS:
        refusal = check(policy, window, rehearsal, not_counted, ledger) if policy.operation in operations else None
        if refusal and overridable and policy.override_reason:
            overridden.append(f"overridden by {policy.operator} (break glass: {policy.override_reason}): "
                              + refusal.removeprefix("refused: "))
        elif refusal:
            reasons.append(refusal)
    return {
        "go": not reasons,
        "reasons": reasons,
        "overridden": overridden,
        "override": bool(overridden),
        "override_reason": policy.override_reason if overridden else None,
        "rehearsal": rehearsal,
        "rehearsal_source": policy.rehearsal_source,
        "window": window,
        "now": policy.now.isoformat(),
        "changed": False,
    }
