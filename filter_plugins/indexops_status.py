# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of playbooks/status.yml: what to ask pg_index_status, and its answers as one table.

Named like the playbook, the role and the module it serves: they are one concept, the status flow
(README, "Names"); the module's Python is status_read.py, so no two files share a name.

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
- ``indexops_status_fail_on_list(fail_on)``: ``indexops_status_fail_on`` as a checked list (a list, a
  comma-separated string or a JSON list in a string); an unknown state is an error.
- ``indexops_status_host_conflicts(hostvars, hosts, sources)``: one line per host whose name is in two
  inventories or in two environment groups (Ansible would merge them into one host).
- ``indexops_status_state_label(row)``: the STATE cell: the row's states, and ``(job lost)`` on a done
  change whose ledger job lost its session.

Pure data shaping on the control node; the database is read only by pg_index_status.
"""

from __future__ import annotations

import json
import time

from ansible.errors import AnsibleFilterError

from ansible_collections.indexops.core.plugins.module_utils import states

COLUMNS = (("change", "CHANGE"), ("index", "INDEX"), ("environment", "ENV"), ("host", "HOST"),
           ("database", "DATABASE"), ("state", "STATE"), ("progress", "PROGRESS"), ("started", "STARTED (UTC)"),
           ("duration", "DURATION"), ("owner", "OWNER"), ("last_error", "LAST ERROR"))
# Console cells are cut to this many characters; the JSON and Markdown reports keep them whole.
CELL_MAX = {"progress": 100, "last_error": 70, "owner": 32, "change": 32, "index": 40, "database": 32}
NONE = states.NONE
# Every state a row can be in: what indexops_status_fail_on accepts.
STATES = states.ROW_STATES
# pg_index_status failed before it could read: the server did not answer (the rest is an error row).
CONNECT_FAILURE = "could not connect to PostgreSQL"


def _split_table(index):
    table = str(index.get("table") or "")
    schema = index.get("schema") or (table.split(".", 1)[0] if "." in table else "public")
    return schema, table.rsplit(".", 1)[-1] if table else None


def indexops_status_requests(loaded, default_db, environment):
    """[{db, owner, change: <pg_index_status changes entry>}] for every change file loaded without error.
    A change file that names its database carries it in ``change.database``: it is read there only."""
    requests = []
    for item in (loaded or {}).get("results", []):
        if item.get("failed") or not item.get("id"):
            continue
        index = item.get("index") or {}
        schema, table = _split_table(index)
        change = {"id": item["id"], "action": item.get("action"), "environment": environment,
                  "index": {"name": index.get("name"), "schema": schema, "table": table}}
        if item.get("database"):
            change["database"] = item["database"]
        requests.append({"db": item.get("database") or default_db, "owner": item.get("owner"), "change": change})
    return requests


def indexops_status_databases(requests, default_db):
    """The databases to read on one host: the inventory's, then any that a change file names."""
    out = [default_db]
    for request in requests or []:
        if request["db"] not in out:
            out.append(request["db"])
    return out


def indexops_fleet_databases(default_db, databases=None, discover=None):
    """The ``databases`` option of a module reading one host: the inventory's indexops_databases, else
    [indexops_db] unless indexops_databases_discover alone selects them. Databases change files name
    are added by the module itself (changes[].database)."""
    if databases:
        return list(databases)
    return [] if discover else [default_db]


def _read_items(reads):
    """The per-database answers of one host: a registered loop (one item per database, the item being its
    name) or one pg_index_status run over many databases (its database_results). A run that failed as a
    whole (e.g. discovery could not connect) is one item, for the host's default database."""
    reads = reads or {}
    if "results" in reads:
        return list(reads["results"])
    if "database_results" in reads:
        return [{**entry, "item": entry.get("database")} for entry in reads["database_results"]]
    if not reads:
        return []
    # A one-database read that worked has its lists; a failed run has only its msg.
    return [{**reads, "item": reads.get("database") or NONE, "failed": "builds" not in reads}]


def _row(host, environment, database, **cells):
    row = {"change": NONE, "index": NONE, "environment": environment, "host": host, "database": database,
           "state": NONE, "states": [], "progress": NONE, "owner": NONE, "last_error": NONE, **states.times(None, None)}
    row.update({key: value for key, value in cells.items() if value is not None})
    if not row["states"]:
        row["states"] = [row["state"]]
    return row


def _one_line(message, default=NONE):
    """A message as one line: a multi-line one (argument validation lists each problem) is joined."""
    lines = [line.strip() for line in str(message or "").strip().splitlines() if line.strip()]
    return " ".join(lines) if lines else default


def _server_said(message):
    """': <the server's FATAL reason>' of a refused connection, which libpq puts after the address (so the
    console's cut LAST ERROR cell would lose it), e.g. ': permission denied for database "t1"'; '' otherwise."""
    _, fatal, reason = message.partition("FATAL:")
    reason = reason.split("DETAIL:")[0].strip().rstrip(".")
    return f": {reason}" if fatal and reason else ""


def _newest_lost_jobs(jobs):
    """The lost jobs that no later job of the same change and environment superseded (the ledger's
    query already leaves those out; this keeps an older module's answer right as well)."""
    jobs = list(jobs or [])
    newest = {}
    for job in jobs:
        key = (job.get("change_id"), job.get("environment"))
        newest[key] = max(newest.get(key, job.get("job_id") or 0), job.get("job_id") or 0)
    return [job for job in jobs if (job.get("job_id") or 0) >= newest[(job.get("change_id"), job.get("environment"))]]


def indexops_status_rows(reads, host, environment, requests):
    """Table rows for one host from its registered pg_index_status loop (one item per database)."""
    owners = {request["change"]["id"]: request.get("owner") for request in requests or []}
    change_ids = set(owners)
    rows = []
    for item in _read_items(reads):
        database = item.get("item")
        # failed_when: false keeps a failed read's msg but sets failed to false: a read that worked
        # always names its database.
        if item.get("failed") or item.get("skipped") or item.get("unreachable") or "database" not in item:
            message = _one_line(item.get("msg"), "could not read the status")
            # Only a target that did not answer is unreachable; bad input or a failed query is an error.
            unreachable = bool(item.get("unreachable")) or message.startswith(CONNECT_FAILURE)
            rows.append(_row(host, environment, database, change="*",
                             state="unreachable" if unreachable else "error",
                             progress=f"database {database} not read{_server_said(message)}", last_error=message))
            continue
        tied = set()
        for entry in item.get("changes") or []:
            index = entry.get("index") or {}
            tied.add((index.get("schema") or "public", index.get("name")))
            # pg_index_status decided the row (module_utils/states.py); the change file's owner fills in
            # for a change with no ledger job.
            row = _row(host, environment, database, **entry["row"])
            row["owner"] = owners.get(entry.get("id")) or NONE if row["owner"] == NONE else row["owner"]
            rows.append(row)
        for build in item.get("builds") or []:
            key = (build.get("index_schema") or "public", build.get("index_name"))
            if key in tied:
                continue
            who = "indexops" if build.get("indexops") else "outside indexops"
            rows.append(_row(host, environment, database, index=f"{key[0]}.{key[1]}" if key[1] else "(hidden)",
                             state="building", progress=states.build_progress(build),
                             **states.times(states.elapsed_start(build, time.time()), build.get("elapsed_s")),
                             owner=f"{who}: {build.get('application_name') or 'unknown client'}"))
        for leftover in item.get("leftovers") or []:
            key = (leftover.get("schema") or "public", leftover.get("name"))
            if key in tied or leftover.get("being_built"):
                continue
            rows.append(_row(host, environment, database, index=f"{key[0]}.{key[1]}", state="invalid",
                             progress=f"leftover ({leftover.get('leftover_type')}) on {leftover.get('table')}, "
                                      "nobody is building it",
                             last_error="drop it with playbooks/cleanup.yml"))
        for job in _newest_lost_jobs(item.get("lost_jobs")):
            # A change of this run shows its own newest job in this environment in its row.
            if job.get("change_id") in change_ids and job.get("environment") in (None, environment):
                continue
            elsewhere = job.get("environment") not in (None, environment)
            progress = f"{job.get('kind')} {job.get('action') or ''}".strip()
            if elsewhere:
                progress += f" (ledger environment {job.get('environment')})"
            rows.append(_row(host, environment, database, change=job.get("change_id"), state="lost",
                             progress=progress,
                             **states.times(job.get("started_at"), None), owner=job.get("owner") or NONE,
                             last_error=states.job_note(job), job_id=job.get("job_id")))
    return rows


def _load_error(item):
    """The message of a change file that did not load (indexops_change says why, a missing file with
    the ids there are)."""
    return _one_line(item.get("msg"), "the change file did not load (no message)")


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
                # failed_when: false sets failed to false on every item: a file that loaded has an id.
                if item.get("failed") or not item.get("id"):
                    name = str(item.get("item") or "").rsplit("/", 1)[-1]
                    rows.append(_row("control node", NONE, NONE, change=name, state="error",
                                     progress="change file not loaded", last_error=_load_error(item)))
    for host in hosts or []:
        facts = hostvars[host] if host in hostvars else {}
        host_rows = facts.get("indexops_status_rows")
        if host_rows is not None:
            rows.extend(host_rows)
            continue
        failure = facts.get("indexops_status_failure")
        if failure is not None:
            unreachable = bool(failure.get("unreachable")) or str(failure.get("msg") or "").startswith(CONNECT_FAILURE)
            rows.append(_row(host, facts.get("indexops_environment") or NONE, NONE, change="*",
                             state="unreachable" if unreachable else "error", progress="target not read",
                             last_error=_one_line(failure.get("msg"), "the status play failed on this target")))
        else:
            rows.append(_row(host, facts.get("indexops_environment") or NONE, NONE, change="*", state="unreachable",
                             last_error="the status play failed on this target before it could read (see above)"))
    return rows


def _names(sources):
    return ", ".join(str(source) for source in sources)


def _source_hosts(source):
    """Host names of one inventory source, parsed on its own (None when it cannot be parsed alone).

    Stays here: Ansible merges same-named hosts before any task sees them, so only parsing each
    source alone shows a host name given in two inventories."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    try:
        inventory = InventoryManager(loader=DataLoader(), sources=[source], parse=True)
        return {host.name for host in inventory.get_hosts(pattern="all")}
    except Exception:  # noqa: BLE001 - the run already parsed it; a source that fails alone is not checked
        return None


def indexops_status_host_conflicts(hostvars, hosts, sources=None):
    """One line per host of ``hosts`` whose name is in two of the inventory ``sources`` or in two
    environment groups: Ansible merges such hosts into one, so their rows would land under one
    environment with one environment's connection."""
    hosts = list(hosts or [])
    problems = []
    by_host = {}
    sources = [source for source in (sources or []) if source]
    if len(sources) > 1:
        for source in sources:
            for name in _source_hosts(source) or ():
                by_host.setdefault(name, []).append(source)
    environments = {hostvars[host].get("indexops_environment") for host in hosts if host in hostvars}
    environments.discard(None)
    for host in hosts:
        facts = hostvars[host] if host in hostvars else {}
        groups = sorted(set(facts.get("group_names") or []) & environments)
        if len(by_host.get(host, [])) > 1:
            problems.append(f"host {host} is in {len(by_host[host])} inventories ({_names(by_host[host])}): "
                            "Ansible merges hosts of the same name, so its rows would land under one environment; "
                            "rename it in all but one inventory (host names must be unique across the inventories "
                            "given). Nothing was read; running again after renaming is safe.")
        elif len(groups) > 1:
            problems.append(f"host {host} is in {len(groups)} environment groups ({', '.join(groups)}) but has one "
                            f"indexops_environment ({facts.get('indexops_environment')}): rename it so that each "
                            "environment has its own host name. Nothing was read; running again after renaming "
                            "is safe.")
    return problems


def _cell(row, key, limit=True):
    text = " ".join(str(row.get(key) if row.get(key) is not None else NONE).split())
    cap = CELL_MAX.get(key)
    if limit and cap and len(text) > cap:
        text = text[:cap - 1] + "…"
    return text


def indexops_status_table(rows):
    """Aligned text lines: a header, a rule, one line per row."""
    rows = [{**row, "state": indexops_status_state_label(row)} for row in rows or []]
    cells = [[title for _, title in COLUMNS]] + [[_cell(row, key) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
             for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def _fail_on_parts(fail_on):
    if fail_on is None:
        return []
    if isinstance(fail_on, str):
        text = fail_on.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list):
                return parsed
            # '[invalid, failed]' (YAML flow style, no quotes): strip the brackets.
            text = text.strip("[]")
        return [part.strip().strip("'\"") for part in text.split(",")]
    if isinstance(fail_on, (list, tuple, set)):
        return list(fail_on)
    raise AnsibleFilterError(
        f"indexops_status_fail_on is a {type(fail_on).__name__} ({fail_on!r}); expected a list of states or a "
        f"comma-separated string of them, from: {', '.join(STATES)}. Nothing was read; fix it and run again.")


def indexops_status_fail_on_problem(fail_on):
    """Why ``indexops_status_fail_on`` is not acceptable, in one line; '' when it is."""
    try:
        parts = [str(part).strip() for part in _fail_on_parts(fail_on)]
    except AnsibleFilterError as exc:
        return str(exc.message)
    unknown = [part for part in parts if part and part not in STATES]
    if unknown:
        return (f"indexops_status_fail_on names unknown state(s) {', '.join(repr(part) for part in unknown)} "
                f"(given: {fail_on!r}); expected states from: {', '.join(STATES)}, as a list or comma-separated. "
                "Nothing was read; fix it and run again.")
    return ""


def indexops_status_fail_on_list(fail_on):
    """indexops_status_fail_on as a list: -e gives 'invalid,failed,lost' (or '["invalid"]'), group_vars
    may give a list. An unknown state is an error naming it and the accepted ones."""
    problem = indexops_status_fail_on_problem(fail_on)
    if problem:
        raise AnsibleFilterError(problem)
    out = []
    for part in _fail_on_parts(fail_on):
        part = str(part).strip()
        if part and part not in out:
            out.append(part)
    return out


def indexops_status_failing(rows, fail_on):
    """Rows whose states include one of ``fail_on`` (a list, or a comma-separated string)."""
    wanted = set(indexops_status_fail_on_list(fail_on))
    return [row for row in rows or [] if wanted & set(row.get("states") or [row.get("state")])]


def indexops_status_state_label(row):
    """The STATE cell (module_utils/states.py's state_label)."""
    return states.state_label(row.get("states") or [row.get("state") or NONE], row.get("job_lost"))


def indexops_status_report_suffix(taken_at_us, token):
    """The report file name's stem after 'status-': UTC to the millisecond plus a short token, e.g.
    '20261201T131220.512Z-3fa9', so that two runs in the same second never overwrite each other."""
    stamp = str(taken_at_us)
    main, _, fraction = stamp.partition(".")
    main = main.replace("-", "").replace(":", "").rstrip("Z")
    millis = (fraction.rstrip("Z") + "000")[:3]
    return f"{main}.{millis}Z-{str(token)[:4]}"


class FilterModule:
    """indexops status filters."""

    def filters(self):
        return {
            "indexops_status_requests": indexops_status_requests,
            "indexops_status_databases": indexops_status_databases,
            "indexops_fleet_databases": indexops_fleet_databases,
            "indexops_status_rows": indexops_status_rows,
            "indexops_status_table": indexops_status_table,
            "indexops_status_failing": indexops_status_failing,
            "indexops_status_fail_on_list": indexops_status_fail_on_list,
            "indexops_status_collect": indexops_status_collect,
            "indexops_status_fail_on_problem": indexops_status_fail_on_problem,
            "indexops_status_host_conflicts": indexops_status_host_conflicts,
            "indexops_status_state_label": indexops_status_state_label,
            "indexops_status_report_suffix": indexops_status_report_suffix,
        }
