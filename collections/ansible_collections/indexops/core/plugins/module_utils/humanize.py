"""Numbers as people read them: durations, sizes and UTC times in the console, the status table, the
reports and the modules' messages. THE formatter for people: the modules, the controller-side plugins
(action_plugins/indexops_wait.py, filter_plugins/indexops_status.py) and, through the filter plugin
indexops.core.humanize (plugins/filter/humanize.py), every template and role message use it, so one
figure reads the same everywhere. Machine fields (JSON results, the ledger) stay numbers and ISO 8601."""

from __future__ import annotations

from datetime import UTC, datetime


def duration(seconds, unknown="?"):
    """A duration as people read it, one scheme everywhere: '0.4 s' and '9.5 s' below ten seconds,
    '36 s', '3 min 05 s', '3 h 00 min', '2 d 09 h'; ``unknown`` when there is no figure. Machine fields
    keep the number of seconds; this is only for what a person reads."""
    if seconds is None or seconds == "":
        return unknown
    seconds = max(float(seconds), 0.0)
    if round(seconds, 1) < 10:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600:02d} h"


BINARY_UNITS = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def size(nbytes, unknown="?"):
    """A size in binary units, labelled as such (PostgreSQL's pg_size_pretty says MB for MiB):
    '812 B', '16.0 KiB', '60.2 MiB', '1.5 GiB'; ``unknown`` when there is no figure."""
    if nbytes is None or nbytes == "":
        return unknown
    nbytes = int(nbytes)
    for unit, factor in BINARY_UNITS:
        if abs(nbytes) >= factor:
            return f"{nbytes / factor:.1f} {unit}"
    return f"{nbytes} B"


def moment(value):
    """A UTC datetime from the ledger's ISO 8601 text or epoch seconds; None when there is none or
    it cannot be read."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace(" ", "T").replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def timestamp(value, zone=True, unknown="-"):
    """'2026-12-01 13:12:20 UTC' (without ' UTC' when ``zone`` is false, under a '(UTC)' heading) from
    the ledger's ISO 8601 text or epoch seconds; ``unknown`` when there is none. Whole seconds: people
    compare these with a clock, not with each other's microseconds."""
    when = moment(value)
    if when is None:
        return unknown if value in (None, "") else str(value)
    return when.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if zone else "")


def iso(value):
    """The same moment for machines: ISO 8601 with its zone ('2026-12-01T13:12:20.512000+00:00'), or None."""
    when = moment(value)
    return when.isoformat() if when is not None else None
