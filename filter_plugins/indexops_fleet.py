# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for a read over many databases of one server (pg_index_preflight's database_results).

- ``indexops_fleet_outcome(entries)``: one small row per database (database, checked, go, reasons), what
  the preflight report keeps: a server of 500 databases must not put 500 full results in it.
- ``indexops_fleet_lines(entries)``: one console line per database: ``<db>: go``, ``<db>: NO-GO: ...``
  or ``<db>: not checked: ...``.

Pure data shaping on the control node.
"""

from __future__ import annotations


def indexops_fleet_outcome(entries):
    out = []
    for entry in entries or []:
        if entry.get("failed"):
            out.append({"database": entry.get("database"), "checked": False, "go": False,
                        "reasons": [f"not checked: {entry.get('msg')}"]})
        else:
            out.append({"database": entry.get("database"), "checked": True, "go": bool(entry.get("go")),
                        "reasons": list(entry.get("reasons") or [])})
    return out


def indexops_fleet_lines(entries):
    lines = []
    for row in indexops_fleet_outcome(entries):
        if not row["checked"]:
            lines.append(f"{row['database']}: {row['reasons'][0]}")
        else:
            lines.append(f"{row['database']}: go" if row["go"] else f"{row['database']}: NO-GO: "
                         + "; ".join(row["reasons"]))
    return lines


class FilterModule:
    """indexops fleet filters."""

    def filters(self):
        return {"indexops_fleet_outcome": indexops_fleet_outcome, "indexops_fleet_lines": indexops_fleet_lines}
