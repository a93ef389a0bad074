# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for a read over many databases of one server (pg_index_preflight's database_results).

- ``indexops_fleet_outcome(entries)``: one small row per database (database, checked, go, reasons), what
  the preflight report keeps: a server of 500 databases must not put 500 full results in it.
- ``indexops_fleet_lines(entries)``: one console line per database: ``<db>: go``, ``<db>: NO-GO: ...``
  or ``<db>: not checked: ...``.
- ``indexops_wave_plan(databases, waves)``: apply / rehearse / rollback over a server's databases in waves
  (indexops_waves, e.g. ``[1, 10, rest]``): the list of waves, each a list of database names.
- ``indexops_wave_results(raw, databases, kind)``: what each database of a wave did, from the one pg_index run
  over the wave (its database_results).
- ``indexops_wave_outcome(plan, results)`` / ``indexops_wave_summary(rows)`` / ``indexops_wave_lines(rows)``:
  what each database of the plan ended as (done / unchanged / failed / not touched), counted and as lines (in
  check mode, what each would do).
- ``indexops_wave_host(rows, kind, waves, stopped_after, budget)``: the report entry of such a host, with the
  one line the run fails with (and, for a rehearsal, its measurements).
- ``indexops_wave_steps(row)``: a rehearsal's three steps in one database as one text
  (``apply created, rollback dropped, reapply created``), for the console and the Markdown report alike.
- ``indexops_rehearse_measurements(entries)``: the evidence of a rehearsal over many targets (hosts, or the
  databases of one host): the slowest one's figures, and over how many it was measured; None when any failed.

Pure data shaping on the control node.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


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


# How an operator writes the waves of a server's databases (indexops_waves): sizes in order, the last one
# repeated, or "rest" (everything left) as the last entry.
REST = "rest"


def _wave_sizes(waves):
    if not isinstance(waves, (list, tuple)) or not waves:
        raise AnsibleFilterError(f"indexops_waves must be a non-empty list of wave sizes such as [1, 10, rest], "
                                 f"got {waves!r}; nothing was changed: fix the inventory and run again")
    sizes = []
    for position, size in enumerate(waves):
        if size == REST and position == len(waves) - 1:
            sizes.append(None)
        elif isinstance(size, int) and not isinstance(size, bool) and size > 0:
            sizes.append(size)
        else:
            raise AnsibleFilterError(f"indexops_waves entry {position + 1} is {size!r}: expected a whole number "
                                     "above 0, or 'rest' as the last entry (e.g. [1, 10, rest]); nothing was changed: "
                                     "fix the inventory and run again")
    return sizes


def indexops_wave_plan(databases, waves):
    """The databases of a server cut into waves: [[canary], [next 10], [the rest]] for [1, 10, rest]. After the
    last size the last size repeats; ``rest`` takes everything left. No empty wave is returned."""
    sizes = _wave_sizes(waves)
    names = list(databases or [])
    plan, start, position = [], 0, 0
    while start < len(names):
        size = sizes[min(position, len(sizes) - 1)]
        end = len(names) if size is None else start + size
        plan.append(names[start:end])
        start, position = end, position + 1
    return plan


def _outcome(result):
    if result.get("error"):
        return "failed"
    return "done" if result.get("changed") else "unchanged"


def _first_line(text):
    return str(text).strip().splitlines()[0] if str(text or "").strip() else None


def _database_result(entry, kind):
    """One database's entry of pg_index's database_results, as indexops_wave_outcome reads a step's result."""
    done = entry.get("result") if isinstance(entry.get("result"), dict) else entry
    return {"kind": kind, "database": entry.get("database"), "changed": bool(entry.get("changed")),
            "action": done.get("action"), "duration_s": done.get("duration_s"),
            "error": _first_line(entry.get("msg")) if entry.get("failed") else None,
            "retry_safe": entry.get("retry_safe")}


def indexops_wave_results(raw, databases, kind):
    """What each database of a wave did, from the result of the one pg_index run over them (its
    database_results). A run that failed before any database (refused input, a lost background job) is
    every database's failure, with its message."""
    raw = raw or {}
    entries = {entry.get("database"): entry for entry in raw.get("database_results") or []}
    out = {}
    for database in databases or []:
        entry = entries.get(database)
        if entry is None:
            entry = {"database": database, "failed": True, "changed": False, "retry_safe": raw.get("retry_safe"),
                     "msg": raw.get("msg") or "the run over this wave returned no result for this database"}
        out[database] = _database_result(entry, kind)
    return out


# A rehearsal's figures kept in its row (roles/indexops_operation/tasks/rehearse.yml), besides duration_s: what
# the evidence of a rehearsal over many databases is made of, without keeping each database's full result.
REHEARSAL_FIGURES = ("size_bytes", "lock_wait_s", "txn_wait_s", "table_bytes", "table_rows_estimate")


def _rehearsal_fields(result):
    """What a rehearsal's row adds: the step that failed, each step's action / duration / error, the figures."""
    steps = {name: {"action": step.get("action"), "duration_s": step.get("duration_s"),
                    "error": _first_line(step.get("error"))} for name, step in result["steps"].items()}
    return {"step": result.get("failed_step"), "steps": steps,
            **{key: result.get(key) for key in REHEARSAL_FIGURES}}


def indexops_wave_outcome(plan, results):
    """One row per database of the plan, in order: database, wave (1-based), outcome (done / unchanged /
    failed / not touched), action, duration_s, error (its first line). ``results`` maps a database to the
    result of its step (roles/indexops_operation's shape); a database without one was not touched. A
    rehearsal's result (it has ``steps``) adds ``step`` (the one that failed), ``steps`` and its figures."""
    results = results or {}
    rows = []
    for number, wave in enumerate(plan or [], start=1):
        for database in wave:
            result = results.get(database)
            if result is None:
                rows.append({"database": database, "wave": number, "outcome": "not touched", "action": None,
                             "duration_s": None, "error": None})
                continue
            row = {"database": database, "wave": number, "outcome": _outcome(result),
                   "action": result.get("action"), "duration_s": result.get("duration_s"),
                   "error": _first_line(result.get("error"))}
            rows.append({**row, **_rehearsal_fields(result)} if result.get("steps") else row)
    return rows


def indexops_wave_steps(row):
    """``apply created, rollback dropped, reapply created``: each step of a rehearsal's row and what it did."""
    return ", ".join(f"{name} {'failed' if step.get('error') else step.get('action') or 'none'}"
                     for name, step in (row.get("steps") or {}).items())


def indexops_wave_summary(rows):
    """The counts of a wave run, and the failed / not touched databases by name, for the console."""
    counts = {outcome: [row["database"] for row in rows or [] if row["outcome"] == outcome]
              for outcome in ("done", "unchanged", "failed", "not touched")}
    return {"counts": {outcome: len(names) for outcome, names in counts.items()}, **{
        outcome.replace(" ", "_"): names for outcome, names in counts.items()}}


# What a step would do, for check mode's lines (pg_index's action in check mode is the one it would take).
WOULD = {"created": "create the index", "dropped": "drop the index", "rebuilt": "rebuild the index",
         "replaced": "replace the index", "repaired_invalid": "repair the invalid index",
         "constraint_added": "add the constraint to the index",
         "none": "leave the index as it is (already as specified)"}


def _would(row):
    """Check mode: what a real run would do in the row's database. A rehearsal's rollback and reapply were only
    checked against the database as it is (nothing ran, so nothing is there to roll back): say the plan."""
    steps = row.get("steps")
    action = steps["apply"].get("action") if steps else row.get("action")
    then = ", then roll it back and apply it again" if steps else ""
    return f"would {WOULD.get(action or 'none', f'do {action}')}{then} (check mode: nothing ran)"


def indexops_wave_lines(rows, check_mode=False):
    """One console line per database: ``<db> (wave 2): done, created``, ``<db> (wave 2): FAILED: <error>``,
    ``<db> (wave 3): not touched``; a rehearsal's ``<db> (wave 1): done: apply created, rollback dropped, reapply
    created`` or ``<db> (wave 2): FAILED at apply: <error>``. In check mode (nothing ran): what would be done."""
    lines = []
    for row in rows or []:
        head = f"{row['database']} (wave {row['wave']}): "
        if row["outcome"] == "failed":
            lines.append(head + (f"FAILED at {row['step']}: " if row.get("step") else "FAILED: ") + row["error"])
        elif row["outcome"] == "not touched":
            lines.append(head + "not touched")
        elif check_mode:
            lines.append(head + _would(row))
        elif row.get("steps"):
            lines.append(head + f"{row['outcome']}: {indexops_wave_steps(row)}")
        else:
            lines.append(head + f"{row['outcome']}, {row['action'] or 'none'}")
    return lines


# How many failed databases the one-line failure of a wave run names; the report has them all.
FAILED_NAMED = 5

# What a rerun does after a failed wave run, for apply / rollback (False) and for a rehearsal (True): a
# rehearsal's report is the evidence, so a rerun rehearses every database again and measures them all.
RERUN = {False: "Rerunning is safe: databases already done change nothing",
         True: "Rerunning is safe: it rehearses every database again (each ends applied) and measures them all"}


def indexops_wave_host(rows, kind, waves, stopped_after=None, budget=0):
    """The report entry of a host whose change went over its databases in waves: the counts, one row per
    database, and ``error``: None when no database failed, else the one line the run fails with."""
    summary = indexops_wave_summary(rows)
    failed = [row for row in rows or [] if row["outcome"] == "failed"]
    error = None
    if failed:
        named = "; ".join(f"{row['database']}{f' ({step})' if (step := row.get('step')) else ''}: "
                          f"{row['error'].rstrip('.')}" for row in failed[:FAILED_NAMED])
        more = f"; and {len(failed) - FAILED_NAMED} more (see the report)" if len(failed) > FAILED_NAMED else ""
        stop = (f", stopped after wave {stopped_after} of {waves}" if stopped_after and int(stopped_after) < waves
                else "")
        error = (f"{len(failed)} of {len(rows)} database(s) failed (failure budget {budget}){stop}: {named}{more}. "
                 f"Done {summary['counts']['done']}, unchanged {summary['counts']['unchanged']}, "
                 f"not touched {summary['counts']['not touched']}. {RERUN[kind == 'rehearse']}")
    host = {"kind": kind, "waves": waves, "stopped_after": int(stopped_after) if stopped_after else None,
            "failure_budget": budget, "changed": summary["counts"]["done"] > 0, "action": None, "sql": [],
            "valid": not failed and summary["counts"]["not touched"] == 0, "counts": summary["counts"],
            "databases": list(rows or []), "error": error}
    if kind == "rehearse":
        host["measurements"] = indexops_rehearse_measurements(rows)
    return host


def _figures(entry):
    """The measurements of one rehearsed target (a host's entry, or a database's row), None when it failed or
    did not run. Every figure is the measured step's (rehearse.yml), the rollback's and reapply's durations
    their own."""
    if isinstance(entry.get("databases"), list):
        return entry.get("measurements")  # a host rehearsed over its databases: already measured over them
    if entry.get("error") or entry.get("outcome") in ("failed", "not touched") or not entry.get("steps"):
        return None
    steps = entry["steps"]
    return {"duration_s": entry.get("duration_s"), "size_bytes": entry.get("size_bytes"),
            "lock_wait_s": entry.get("lock_wait_s"), "txn_wait_s": entry.get("txn_wait_s") or 0,
            "table_bytes": entry.get("table_bytes"), "table_rows_estimate": entry.get("table_rows_estimate"),
            "rollback_duration_s": steps["rollback"].get("duration_s"),
            "reapply_duration_s": steps["reapply"].get("duration_s"),
            "databases": 1, "database": entry.get("database")}


def indexops_rehearse_measurements(entries):
    """The evidence of a rehearsal over many targets: the figures of the slowest (what production must plan
    for), with ``databases``, how many databases it was measured over, and ``database``, the slowest one
    (None for a host's own database). None when there is no target, or any of them failed or did not run:
    a rehearsal with a failure is no evidence."""
    measured = [_figures(entry) for entry in entries or []]
    if not measured or any(figures is None for figures in measured):
        return None
    slowest = max(measured, key=lambda figures: figures["duration_s"] or 0)
    return {**slowest, "databases": sum(figures["databases"] for figures in measured)}


class FilterModule:
    """indexops fleet filters."""

    def filters(self):
        return {"indexops_fleet_outcome": indexops_fleet_outcome, "indexops_fleet_lines": indexops_fleet_lines,
                "indexops_wave_plan": indexops_wave_plan, "indexops_wave_results": indexops_wave_results,
                "indexops_wave_outcome": indexops_wave_outcome,
                "indexops_wave_summary": indexops_wave_summary, "indexops_wave_lines": indexops_wave_lines,
                "indexops_wave_host": indexops_wave_host, "indexops_wave_steps": indexops_wave_steps,
                "indexops_rehearse_measurements": indexops_rehearse_measurements}
