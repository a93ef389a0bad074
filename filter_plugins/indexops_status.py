# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of playbooks/status.yml: what to ask pg_index_status, and its answers as one table.

- ``indexops_status_requests(loaded, default_db, environment)``: the change files loaded by
  indexops_change (a registered loop) as pg_index_status ``changes`` entries, with the database each
  is read from.
- ``indexops_status_rows(reads, host, environment, requests)``: one row per change on this host, plus
  builds, leftovers and lost ledger jobs that belong to no change file, plus one ``unreachable`` row
  per database that could not be read.
- ``indexops_status_table(rows)``: the rows as aligned text lines, for the console.
- ``indexops_status_collect(hostvars, hosts)``: every host's rows, plus rows for change files that did
  not load and for targets whose play failed before reading.
- ``indexops_status_failing(rows, fail_on)``: the rows whose states include one of ``fail_on``.

Pure data shaping on the control node; the database is read only by pg_index_status.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

COLUMNS = (("change", "CHANGE"), ("index", "INDEX"), ("environment", "ENV"), ("host", "HOST"),
           ("state", "STATE"), ("progress", "PROGRESS"), ("started", "STARTED (UTC)"),
           ("duration", "DURATION"), ("owner", "OWNER"), ("last_error", "LAST ERROR"))
# Console cells are cut to this many characters; the JSON and Markdown reports keep them whole.
CELL_MAX = {"progress": 100, "last_error": 70, "owner": 32, "change": 32, "index": 40}
NONE = "-"


def _duration(seconds):
    if seconds is None:
        return NONE
    seconds = int(round(float(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _timestamp(text):
    """Ledger timestamps ('2026-12-01 13:12:20.5+00') as 'YYYY-mm-dd HH:MM:SS' UTC."""
    if not text:
        return NONE
    try:
        value = datetime.fromisoformat(str(text).replace(" ", "T"))
    except ValueError:
        return str(text)
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _started_from_elapsed(elapsed_s):
    if elapsed_s is None:
        return NONE
    return (datetime.now(UTC) - timedelta(seconds=float(elapsed_s))).strftime("%Y-%m-%d %H:%M:%S")


def _split_table(index):
    table = str(index.get("table") or "")
    schema = index.get("schema") or (table.split(".", 1)[0] if "." in table else "public")
    return schema, table.rsplit(".", 1)[-1] if table else None


def indexops_status_requests(loaded, default_db, environment):
    """[{db, owner, change: <pg_index_status changes entry>}] for every change file loaded without error."""
    requests = []
    for item in (loaded or {}).get("results", []):
        if item.get("failed") or not item.get("id"):
            continue
        index = item.get("index") or {}
        schema, table = _split_table(index)
        requests.append({
            "db": item.get("database") or default_db,
            "owner": item.get("owner"),
            "change": {"id": item["id"], "action": item.get("action"), "environment": environment,
                       "index": {"name": index.get("name"), "schema": schema, "table": table}},
        })
    return requests


def indexops_status_databases(requests, default_db):
    """The databases to read on one host: the inventory's, then any that a change file names."""
    out = [default_db]
    for request in requests or []:
        if request["db"] not in out:
            out.append(request["db"])
    return out


def _waits(build):
    parts = []
    for blocker in build.get("waiting_on") or []:
        age = f" {_duration(blocker.get('xact_age_s'))}" if blocker.get("xact_age_s") is not None else ""
        parts.append(f"pid {blocker.get('pid')} ({blocker.get('state') or '?'}{age})")
    if not parts and build.get("waiting"):
        parts.append("another session")
    return f"; waits on {', '.join(parts)}" if parts else ""


def _build_progress(build):
    percent = build.get("percent")
    percent = f"{float(percent):.1f}%" if percent is not None else "?%"
    phase = build.get("phase") or "phase hidden"
    eta = f", ETA {_duration(build.get('eta_s'))}" if build.get("eta_s") is not None else ""
    return f"{percent} {phase}, pid {build.get('pid')}{eta}{_waits(build)}"


def _row(host, environment, database, **cells):
    row = {"change": NONE, "index": NONE, "environment": environment, "host": host, "database": database,
           "state": NONE, "states": [], "progress": NONE, "started": NONE, "duration": NONE, "owner": NONE,
           "last_error": NONE}
    row.update({key: value for key, value in cells.items() if value is not None})
    if not row["states"]:
        row["states"] = [row["state"]]
    return row


def _job_error(job):
    if not job:
        return None
    if job.get("lost"):
        note = (f"job {job.get('job_id')} lost: recorded as running, but its session (pid {job.get('backend_pid')}) "
                "is gone")
        return f"{note}; {job['last_error']}" if job.get("last_error") else note
    return job.get("last_error")


def _change_row(host, environment, database, entry, owner):
    index = entry.get("index") or {}
    index_state = entry.get("index_state") or {}
    build, job = entry.get("build"), entry.get("job")
    state = entry.get("state") or NONE
    states = [state]
    if job and job.get("lost") and "lost" not in states:
        states.append("lost")
    if index_state.get("state") == "invalid" and not build and "invalid" not in states:
        states.append("invalid")
    if build:
        progress = _build_progress(build)
        started = _timestamp(job.get("started_at")) if job and job.get("state") == "running" else \
            _started_from_elapsed(build.get("elapsed_s"))
        duration = _duration(build.get("elapsed_s"))
    else:
        progress = f"index {index_state.get('state') or 'unknown'}"
        if index_state.get("state") == "invalid":
            progress += " (leftover: nobody is building it)"
        started = _timestamp(job.get("started_at")) if job else NONE
        duration = _duration(job.get("duration_s")) if job else NONE
    return _row(host, environment, database, change=entry.get("id"),
                index=f"{index.get('schema') or 'public'}.{index.get('name')}", state=state, states=states,
                progress=progress, started=started, duration=duration,
                owner=(job or {}).get("owner") or owner or NONE, last_error=_job_error(job) or NONE,
                job_id=(job or {}).get("job_id"))


def indexops_status_rows(reads, host, environment, requests):
    """Table rows for one host from its registered pg_index_status loop (one item per database)."""
    owners = {request["change"]["id"]: request.get("owner") for request in requests or []}
    change_ids = set(owners)
    rows = []
    for item in (reads or {}).get("results", []):
        database = item.get("item")
        # failed_when: false keeps a failed read's msg but sets failed to false: a read that worked
        # always names its database.
        if item.get("failed") or item.get("skipped") or "database" not in item:
            message = str(item.get("msg") or "could not read the status").strip().splitlines()
            rows.append(_row(host, environment, database, change="*", state="unreachable",
                             progress=f"database {database} not read", last_error=message[0] if message else NONE))
            continue
        tied = set()
        for entry in item.get("changes") or []:
            index = entry.get("index") or {}
            tied.add((index.get("schema") or "public", index.get("name")))
            rows.append(_change_row(host, environment, database, entry, owners.get(entry.get("id"))))
        for build in item.get("builds") or []:
            key = (build.get("index_schema") or "public", build.get("index_name"))
            if key in tied:
                continue
            who = "indexops" if build.get("indexops") else "outside indexops"
            rows.append(_row(host, environment, database, index=f"{key[0]}.{key[1]}" if key[1] else "(hidden)",
                             state="building", progress=_build_progress(build),
                             started=_started_from_elapsed(build.get("elapsed_s")),
                             duration=_duration(build.get("elapsed_s")),
                             owner=f"{who}: {build.get('application_name') or 'unknown client'}"))
        for leftover in item.get("leftovers") or []:
            key = (leftover.get("schema") or "public", leftover.get("name"))
            if key in tied or leftover.get("being_built"):
                continue
            rows.append(_row(host, environment, database, index=f"{key[0]}.{key[1]}", state="invalid",
                             progress=f"leftover ({leftover.get('kind')}) on {leftover.get('table')}, "
                                      "nobody is building it",
                             last_error="drop it with playbooks/cleanup.yml"))
        for job in item.get("lost_jobs") or []:
            if job.get("change_id") in change_ids:
                continue
            rows.append(_row(host, environment, database, change=job.get("change_id"), state="lost",
                             progress=f"{job.get('kind')} {job.get('action') or ''}".strip(),
                             started=_timestamp(job.get("started_at")), owner=job.get("owner") or NONE,
                             last_error=_job_error(job), job_id=job.get("job_id")))
    return rows


def indexops_status_collect(hostvars, hosts):
    """Every row of the status: each change file that did not load, then each target's rows; a target
    whose play failed before it could read anything gets one row saying so."""
    rows, files_done = [], False
    for host in hosts or []:
        facts = hostvars[host] if host in hostvars else {}
        loaded = facts.get("indexops_status_loaded")
        if loaded and not files_done:
            files_done = True
            for item in loaded.get("results", []):
                if item.get("failed"):
                    name = str(item.get("item") or "").rsplit("/", 1)[-1]
                    message = str(item.get("msg") or "").strip().splitlines()
                    rows.append(_row("control node", NONE, NONE, change=name, state="error",
                                     progress="change file not loaded", last_error=message[0] if message else NONE))
    for host in hosts or []:
        facts = hostvars[host] if host in hostvars else {}
        host_rows = facts.get("indexops_status_rows")
        if host_rows is None:
            rows.append(_row(host, facts.get("indexops_environment") or NONE, NONE, change="*", state="unreachable",
                             last_error="the status play failed on this target before it could read (see above)"))
        else:
            rows.extend(host_rows)
    return rows


def _cell(row, key, limit=True):
    text = " ".join(str(row.get(key) if row.get(key) is not None else NONE).split())
    cap = CELL_MAX.get(key)
    if limit and cap and len(text) > cap:
        text = text[:cap - 1] + "…"
    return text


def indexops_status_table(rows):
    """Aligned text lines: a header, a rule, one line per row."""
    cells = [[title for _, title in COLUMNS]] + [[_cell(row, key) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
             for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def indexops_status_markdown_cell(value):
    """A table cell for Markdown: one line, pipes escaped."""
    return " ".join(str(value if value is not None else NONE).split()).replace("|", "\\|")


def indexops_status_fail_on_list(fail_on):
    """indexops_status_fail_on as a list: -e gives 'invalid,failed,lost', group_vars may give a list."""
    if isinstance(fail_on, str):
        return [part.strip() for part in fail_on.split(",") if part.strip()]
    return [str(part).strip() for part in fail_on or [] if str(part).strip()]


def indexops_status_failing(rows, fail_on):
    """Rows whose states include one of ``fail_on`` (a list, or a comma-separated string)."""
    wanted = set(indexops_status_fail_on_list(fail_on))
    return [row for row in rows or [] if wanted & set(row.get("states") or [row.get("state")])]


class FilterModule:
    """indexops status filters."""

    def filters(self):
        return {
            "indexops_status_requests": indexops_status_requests,
            "indexops_status_databases": indexops_status_databases,
            "indexops_status_rows": indexops_status_rows,
            "indexops_status_table": indexops_status_table,
            "indexops_status_markdown_cell": indexops_status_markdown_cell,
            "indexops_status_failing": indexops_status_failing,
            "indexops_status_fail_on_list": indexops_status_fail_on_list,
            "indexops_status_collect": indexops_status_collect,
        }
