"""Rehearsals as the ledger records them: pure grouping and judging, no database.

A rehearsal (playbooks/rehearse.yml) writes three jobs of one change into the target database's
ledger, one after the other: ``rehearse`` (apply), ``rollback`` (its inverse), ``rehearse`` (apply
again). A rebuild has no inverse, so its rehearsal is two ``rehearse`` jobs with action ``rebuilt``.
The flow stops at its first failed step, so a failed or still running job ends a rehearsal.

What counts as a rehearsal here, precisely: in one ledger, among the jobs of one change and one
environment in job order (apply jobs and other changes' jobs are skipped over, not part of it),

- a ``rehearse`` job, then the job right after it: a ``rollback`` job (or, when the first job
  rebuilt the index, another ``rehearse`` job), then the job right after that: a ``rehearse`` job;
- all with the same spec digest; a job of another digest starts over.

It is complete when it has all its jobs, and it succeeded when every job is ``succeeded`` or
``rolled_back`` (the rollback step marks the first apply ``rolled_back``; a later rollback of staging
may mark the last one so: the rehearsal still happened). Its time is the last job's ``finished_at``.
Its measurements are the ``observed`` values of the job that built the index: the first apply, or the
second one when the first found the index already there (action ``none``), as the report does.

The ledger has no run id, so runs are told apart by order alone. One case reads differently from the
reports: a rehearsal stopped after its rollback (the control node died before the second apply),
followed by a new rehearsal, is read as apply, rollback and the new run's first apply. That still
shows the same digest applied, rolled back and applied again, so it counts; the new run's rollback is
then skipped and its second apply is an incomplete run of its own (tests/unit/cases/rehearsals.yml).
"""

from __future__ import annotations

import datetime as dt

KINDS = ("rehearse", "rollback", "apply")
OK_STATES = ("succeeded", "rolled_back")
MEASURED = ("duration_s", "table_bytes", "size_bytes", "table_rows_estimate")


def where_text(params):
    """Where the ledger is, for refusals: 'indexops.jobs in database app on db.staging:5432 as indexops'."""
    host = params.get("login_unix_socket") or params.get("login_host") or "the PGHOST/local socket server"
    port = f":{params['login_port']}" if params.get("login_port") else ""
    user = f" as {params['login_user']}" if params.get("login_user") else ""
    return f"indexops.jobs in database {params.get('db') or '(PGDATABASE)'} on {host}{port}{user}"


def runs(jobs):
    """Split one ledger's jobs of one change (oldest first) into rehearsal runs, per environment."""
    by_environment = {}
    for job in jobs:
        by_environment.setdefault(job.get("environment"), []).append(job)
    found = []
    for sequence in by_environment.values():
        index = 0
        while index < len(sequence):
            if sequence[index].get("kind") != "rehearse":
                index += 1  # an apply, or a rollback outside a rehearsal
                continue
            run = [sequence[index]]
            while (not ended(run) and index + len(run) < len(sequence)
                   and continues(run, sequence[index + len(run)])):
                run.append(sequence[index + len(run)])
            found.append(run)
            index += len(run)
    return found


def continues(run, job):
    """Whether ``job`` is the next step of ``run`` (same digest, the expected kind)."""
    last = run[-1]
    if job.get("spec_digest") != last.get("spec_digest"):
        return False
    if len(run) == 1:
        return job.get("kind") == "rollback" or (job.get("kind") == "rehearse" and last.get("action") == "rebuilt")
    return job.get("kind") == "rehearse"


def complete(run):
    kinds = [job.get("kind") for job in run]
    return kinds == ["rehearse", "rollback", "rehearse"] or (
        kinds == ["rehearse", "rehearse"] and run[0].get("action") == "rebuilt")


def ended(run):
    """A failed or unfinished step stops the flow; a complete run has nothing more to come."""
    return run[-1].get("state") not in OK_STATES or complete(run)


def finished_at(run):
    """The last job's finish as an aware UTC datetime, or None when it has none or it is not a time."""
    value = run[-1].get("finished_at")
    if value is None:
        return None
    try:
        instant = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return instant if instant.tzinfo else instant.replace(tzinfo=dt.UTC)


def verdict(run, digest, environments, max_age_s, now):
    """Why the run does not count (digest, environment, failed, incomplete, age), or None when it does."""
    if run[-1].get("spec_digest") != digest:
        return "digest"
    if run[-1].get("environment") not in environments:
        return "environment"
    if any(job.get("state") == "failed" for job in run):
        return "failed"
    finished = finished_at(run)
    if not complete(run) or any(job.get("state") not in OK_STATES for job in run) or finished is None:
        return "incomplete"
    if (now - finished).total_seconds() > max_age_s:
        return "age"
    return None


def measurements(run):
    """The observed values of the job that built the index (see the module docstring)."""
    first, last = run[0], run[-1]
    observed_first = first.get("observed") or {}
    measured = last if observed_first.get("action") == "none" else first
    observed = measured.get("observed") or {}
    return {key: observed.get(key) for key in MEASURED}


def evidence(run, now, where):
    """The gate's ``rehearsal`` result for a run that counts."""
    finished = finished_at(run)
    return {
        "source": "ledger", "path": None, "where": where, "job_ids": [job.get("job_id") for job in run],
        "environment": run[-1].get("environment"), "finished_at": finished.isoformat(),
        "age_s": (now - finished).total_seconds(), "digest": run[-1].get("spec_digest"),
        "operator": run[-1].get("operator"), **measurements(run),
    }


def newest(jobs, digest, environments, max_age_s, now, where):
    """(the newest rehearsal that counts as evidence or None, {verdict: [environment, ...]} of those that did not)."""
    counted, not_counted = [], {}
    for run in runs(jobs):
        why = verdict(run, digest, environments, max_age_s, now)
        if why:
            not_counted.setdefault(why, []).append(run[-1].get("environment"))
        else:
            counted.append(run)
    if not counted:
        return None, not_counted
    best = max(counted, key=lambda run: (finished_at(run), run[-1].get("job_id") or 0))
    return evidence(best, now, where), not_counted
