"""Numbers as people read them in the console and the status table. Shared by the modules and the
controller-side plugins (action_plugins/indexops_wait.py, filter_plugins/indexops_status.py), which
import it from this collection: one formatter, not a copy per plugin."""

from __future__ import annotations


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
