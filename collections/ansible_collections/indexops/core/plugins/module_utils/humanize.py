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


def timestamp(value, zone=True, unknown="-"):
    """'2026-12-01 13:12:20 UTC' (without ' UTC' when ``zone`` is false, under a '(UTC)' heading) from
    the ledger's ISO 8601 text or epoch seconds; ``unknown`` when there is none. Whole seconds: people
    compare these with a clock, not with each other's microseconds."""
    if value is None or value == "":
        return unknown
    if isinstance(value, (int, float)):
        moment = datetime.fromtimestamp(float(value), UTC)
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace(" ", "T").replace("Z", "+00:00"))
        except ValueError:
            return str(value)
        moment = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if zone else "")
