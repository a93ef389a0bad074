"""Numbers as people read them in the console and the status table. Shared by the modules and the
controller-side plugins (action_plugins/indexops_wait.py, filter_plugins/indexops_status.py), which
import it from this collection: one formatter, not a copy per plugin."""

from __future__ import annotations

from datetime import UTC, datetime


def duration(seconds, unknown="?"):
    """12s, 3m05s, 2h10m; ``unknown`` when there is no figure."""
    if seconds is None:
        return unknown
    seconds = int(round(float(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


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
