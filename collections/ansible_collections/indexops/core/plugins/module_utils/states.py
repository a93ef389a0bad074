"""The states of a change and of an index, the transitions between them, and the words for them.

The one place that decides what state a change is in (from its index, its build and its ledger jobs)
and what a person reads about it: the status table's row, the wait plugin's progress line, the
attach and job-died messages. pg_index_status computes all of it on the target and returns it; the
controller-side plugins (action_plugins/indexops_wait.py, filter_plugins/indexops_status.py) only
add the host and print. Pure functions over the module's return shapes; no database.

Change states, in the order an operator must act on them:

- building: a session builds the index (for a replace, its replacement) or its latest job still runs;
- lost: the latest job is running in the ledger, its session is gone, and the server did not finish;
- rolled_back, failed: what the latest job says went wrong (or was undone);
- done, mismatch: the index is where the change wants it (mismatch: not with the recorded definition);
- invalid, pending: what the catalog shows when no job says more.

A row of the status table can also be unreachable or error: the database could not be read.
"""

from __future__ import annotations

from ansible_collections.indexops.core.plugins.module_utils.humanize import duration, iso, timestamp

CHANGE_STATES = ("pending", "building", "done", "mismatch", "invalid", "failed", "lost", "rolled_back")
# A status row whose database was not read: the server did not answer (unreachable), or the read failed.
READ_STATES = ("unreachable", "error")
ROW_STATES = CHANGE_STATES + READ_STATES
INDEX_STATES = ("absent", "building", "valid", "invalid")
# Jobs whose definition_after says what the index should look like once the change is done.
APPLYING_KINDS = ("apply", "rehearse")
NONE = "-"


# ---------------------------------------------------------------------- index

def index_state(exists, valid, building):
    """absent / building / valid / invalid."""
    if not exists:
        return "absent"
    if building:
        return "building"
    return "valid" if valid else "invalid"


# ---------------------------------------------------------------------- change

def reached(action, index):
    """Whether the index is in the state the change wants (before looking at definitions)."""
    if action == "drop":
        return not index["exists"]
    return index["exists"] and index["valid"]


def latest_applied_definition(jobs):
    """definition_after of the newest succeeded apply/rehearse job, or None."""
    done = [job for job in jobs if job["state"] == "succeeded" and job["kind"] in APPLYING_KINDS
            and job.get("definition_after")]
    return done[-1]["definition_after"] if done else None


def change_state(action, index, jobs, build=None):
    """One of CHANGE_STATES (see the module docstring and pg_index_status's RETURN for each).

    ``build`` is the build working on the change (for replace: the build of its replacement
    index); None uses the index's own. A lost job whose index the server finished anyway is done
    (the job keeps ``lost: true``); a failed job stays failed even when it left a valid index.
    """
    job = jobs[-1] if jobs else None
    if (build or index["build"]) is not None or (job and job["state"] == "running" and not job["lost"]):
        return "building"
    if job and job["state"] == "running":
        return "done" if lost_job_finished(action, index, jobs) else "lost"
    if job and (job["state"] == "rolled_back" or (job["kind"] == "rollback" and job["state"] == "succeeded")):
        return "rolled_back"
    if job and job["state"] == "failed":
        return "failed"
    if reached(action, index):
        return done_or_mismatch(action, index, jobs)
    return "invalid" if index["exists"] and not index["valid"] else "pending"


def lost_job_finished(action, index, jobs):
    """Whether the server finished what a lost job started (its session ended, e.g. when async
    stopped pg_index at its time limit, yet the CONCURRENTLY build ran to its end).

    A rebuild cannot tell (the old index stays valid while REINDEX runs); a replace is finished only
    once the index no longer has the definition the job set out to replace.
    """
    job = jobs[-1]
    if action == "rebuild" or job["kind"] == "rollback" or not reached(action, index):
        return False
    if action == "replace" and (not index["definition"] or index["definition"] == job.get("definition_before")):
        return False
    return done_or_mismatch(action, index, jobs) == "done"


def done_or_mismatch(action, index, jobs):
    if action == "drop":
        return "done"
    if action == "rebuild" and not any(job["state"] == "succeeded" and job["kind"] in APPLYING_KINDS for job in jobs):
        return "pending"  # a valid index says nothing about whether it was rebuilt
    wanted = latest_applied_definition(jobs)
    if wanted and index["definition"] and index["definition"] != wanted:
        return "mismatch"
    return "done"


def change_states(state, index, build, job):
    """Every state a change row is in, its own first: a lost job that did not end as done adds
    lost, an invalid index nobody builds adds invalid (a failed apply that left one, say)."""
    states = [state]
    if job and job.get("lost") and state != "done" and "lost" not in states:
        states.append("lost")
    if index.get("state") == "invalid" and not build and "invalid" not in states:
        states.append("invalid")
    return states


def ended(entry):
    """Whether a change followed by attaching is over: a progress row comes and goes between the
    statements of a job (lock retry backoff, ANALYZE, verification, cleanup of a failed build), so
    only the change's state says so."""
    return entry is not None and entry.get("state") != "building"


def state_label(states, job_lost):
    """The STATE cell: the states, plus '(job lost)' on a change that is done although its ledger
    job lost its session (the server finished the build after the controller-side job died)."""
    label = ", ".join(str(state) for state in states)
    return label + " (job lost)" if job_lost and "lost" not in states else label


# ---------------------------------------------------------------------- words

def index_label(index):
    return f"{index.get('schema') or 'public'}.{index.get('name')}"


def waits_on(build, queries=False):
    """'; waits on pid 42 (idle in transaction 35s)' for each session the build waits on, with the
    start of each one's query when ``queries``."""
    parts = []
    for blocker in build.get("waiting_on") or []:
        age = f" {duration(blocker.get('xact_age_s'))}" if blocker.get("xact_age_s") is not None else ""
        text = f"pid {blocker.get('pid')} ({blocker.get('state') or '?'}{age})"
        query = " ".join(str(blocker.get("query") or "").split())[:80] if queries else ""
        parts.append(f"{text}: {query}" if query else text)
    if not parts and build.get("waiting"):
        parts.append("another session")
    return f"; waits on {', '.join(parts)}" if parts else ""


def percent_text(build):
    percent = build.get("percent")
    return f"{float(percent):.1f}%" if percent is not None else "?%"


def attempt_text(job):
    """', attempt 2/5' while a running job tries a statement again after a lock timeout: a retry
    restarts the build, so its percent and elapsed time start over."""
    job = job or {}
    if job.get("state") != "running" or (job.get("attempt") or 1) < 2:
        return ""
    return f", attempt {job['attempt']}/{job.get('attempts_max') or '?'}"


def partition_text(job):
    """', partition 3/8 (public.orders_2026_03)' while a running job builds an index on a partitioned
    table one partition at a time: the percent, phase and ETA are then that partition's."""
    job = job or {}
    if job.get("state") != "running" or not job.get("partitions"):
        return ""
    return f", partition {job.get('partition')}/{job['partitions']} ({job.get('partition_name') or '?'})"


def build_progress(build, job=None):
    """The PROGRESS cell of a build: percent, phase, pid, partition, attempt, ETA and what it waits on."""
    eta = f", ETA {duration(build.get('eta_s'))}" if build.get("eta_s") is not None else ""
    return (f"{percent_text(build)} {build.get('phase') or 'phase hidden'}, pid {build.get('pid')}"
            f"{partition_text(job)}{attempt_text(job)}{eta}{waits_on(build)}")


def progress_line(entry):
    """The wait plugin's line for a change (without the host): state, percent, phase, elapsed, ETA,
    the sessions the build waits on and their queries."""
    name = index_label(entry.get("index") or {})
    build, job, state = entry.get("build"), entry.get("job") or {}, entry.get("state") or "?"
    if build:
        return (f"{name} {state} {percent_text(build)} {build.get('phase') or 'phase hidden from this role'}, "
                f"pid {build.get('pid')}{partition_text(job)}{attempt_text(job)}, "
                f"running {duration(build.get('elapsed_s'))}, "
                f"ETA {duration(build.get('eta_s'))}{waits_on(build, queries=True)}")
    if state == "building":
        return (f"{name} building, job {job.get('job_id')} running with no build in progress right now "
                f"(waiting for a lock or a retry, starting, ANALYZE, verification or cleanup)"
                f"{partition_text(job)}{attempt_text(job)}")
    tail = f" (job {job.get('job_id')} {job.get('state')}{', lost' if job.get('lost') else ''})" if job else ""
    return f"{name} {state}, no build running{tail}"


def job_note(job, state=None):
    """The LAST ERROR cell: what happened to a lost job and what that means now, then its error."""
    if not job:
        return None
    if job.get("client_lost"):
        note = (f"job {job.get('job_id')} lost: its pg_index process is gone (its client session, pid "
                f"{job.get('client_pid')}, ended)")
        if state == "building":
            note += "; the server goes on with the build, shown here until it ends"
        elif state == "done":
            note += "; the index finished valid and as specified: nothing to do"
    elif job.get("lost"):
        note = (f"job {job.get('job_id')} lost: recorded as running, but its session (pid {job.get('backend_pid')}) "
                "is gone")
        if state == "done":
            note += "; the index finished valid and as specified: nothing to do"
    else:
        return job.get("last_error")
    return f"{note}; {job['last_error']}" if job.get("last_error") else note


def started_by(job):
    """'indexops job 7, started by alice at 2026-12-01 13:12:20 UTC'."""
    who = job.get("operator") if job.get("operator") not in (None, "", "unknown") else "an unknown operator"
    return f"indexops job {job.get('job_id')}, started by {who} at {timestamp(job.get('started_at'), unknown='?')}"


def made_by(jobs):
    """The job that made the index what it is: the latest one, unless it succeeded finding nothing to
    do (a rerun), then the latest that did something. Its start and duration are the change's."""
    doing = [job for job in jobs if not (job["state"] == "succeeded" and job.get("action") in (None, "none"))]
    if jobs and doing and doing[-1] is not jobs[-1]:
        return doing[-1]
    return jobs[-1] if jobs else None


def change_row(entry, now_s):
    """The status table's cells for one change status (an entry of pg_index_status's changes; no host,
    environment or database: the controller adds those). ``now_s`` dates a build from its elapsed time."""
    index_state_ = entry.get("index_state") or {}
    build, job, state = entry.get("build"), entry.get("job"), entry.get("state") or NONE
    maker = entry.get("made_by") or job
    if build:
        progress = build_progress(build, job)
        running = job and job.get("state") == "running"
        began, seconds = job.get("started_at") if running else elapsed_start(build, now_s), build.get("elapsed_s")
    else:
        progress = f"index {index_state_.get('state') or 'unknown'}"
        if index_state_.get("state") == "invalid":
            progress += " (leftover: nobody is building it)"
        progress += attempt_text(job)
        began, seconds = (maker or {}).get("started_at"), (maker or {}).get("duration_s")
    return {"change": entry.get("id"), "index": index_label(entry.get("index") or {}), "state": state,
            "states": change_states(state, index_state_, build, job), "progress": progress,
            **times(began, seconds), "owner": (job or {}).get("owner") or NONE,
            "last_error": job_note(job, state) or NONE, "job_id": (job or {}).get("job_id"),
            "job_lost": bool(job and job.get("lost"))}


def times(began, seconds):
    """The row's start and duration twice: for people (started, duration) and for machines
    (started_at in ISO 8601 with its zone, duration_s in seconds)."""
    return {"started": timestamp(began, zone=False), "duration": duration(seconds, unknown=NONE),
            "started_at": iso(began), "duration_s": None if seconds is None else round(float(seconds), 3)}


def elapsed_start(build, now_s):
    """When a build started, from its elapsed seconds, as epoch seconds (None when unknown)."""
    elapsed = build.get("elapsed_s")
    return None if elapsed is None else now_s - float(elapsed)


def attach_line(change_id, entry, waits):
    """What a run says when it finds the change already being built and attaches to it."""
    build, job = entry.get("build"), entry.get("job") or {}
    if build:
        what = f"by pid {build.get('pid')} ({build.get('index_name') or '?'})"
    else:
        what = "(no build in progress right now: waiting for a lock or a retry, starting, ANALYZE or verification)"
    if job.get("state") == "running":
        whose = started_by(job)
    else:
        whose = (build or {}).get("application_name") or "another client"
    tail = "" if waits else " (not waiting)"
    return (f"change {change_id}: {index_label(entry.get('index') or {})} is already being built {what} ({whose}); "
            f"attaching to it instead of starting a second build{tail}")


def attached_job_end(change_id, host, first, last):
    """The failure message when the job a run attached to (``first``: the entry it attached to) ended
    failed or lost (``last``: the last entry read); '' when it did not."""
    job, final = (first or {}).get("job") or {}, (last or {}).get("job") or {}
    if job.get("state") != "running" or final.get("job_id") != job.get("job_id"):
        return ""
    if final.get("state") == "failed":
        what = f"failed: {final.get('last_error') or 'no error recorded'}"
    elif (last or {}).get("state") == "lost":
        what = f"was lost: its session (pid {final.get('backend_pid') or '?'}) ended before it recorded its end"
    else:
        return ""
    index = (last.get("index_state") or {}).get("state") or "unknown"
    return (f"the job of change {change_id} that this run attached to on {host} ({started_by(job)}) {what}. "
            f"The index is now {index}. This run started nothing. What to do: see playbooks/status.yml "
            f"-e change={change_id} and fix the cause above; running apply again is safe (nobody builds any more: "
            "it repairs an invalid leftover and builds again).")


def index_now(entry):
    """What the index is now, after its job died, and what to run: for the job-died message."""
    index = entry.get("index_state") or {}
    build = entry.get("build")
    if build:
        return (f"still being built by the server (pid {build.get('pid')}, {build.get('phase') or 'phase hidden'}): "
                "the build goes on without the job; follow it with playbooks/status.yml, then run apply again to "
                "verify and record it")
    if index.get("state") == "valid":
        return "valid (the server finished without the job): run apply again to verify and record it in the ledger"
    if index.get("state") == "invalid":
        return ("INVALID and nobody builds it (the build was interrupted): run apply again to repair it, or "
                "playbooks/cleanup.yml to drop it")
    return f"{index.get('state') or 'unknown'}: run apply again"


def job_died(jid, host, entry):
    """The message of a run whose background job is gone: what died, and what the index is now."""
    job = entry.get("job") or {}
    return (f"the background job {jid} on {host} died: its pg_index process is gone (ledger job "
            f"{job.get('job_id')}: its client session, pid {job.get('client_pid')}, ended) before it recorded an "
            f"end, so nothing more will come from it. The index is now {index_now(entry)}.")


def client_gone(entry):
    """Whether the change's running job lost its client session (the pg_index process died)."""
    job = (entry or {}).get("job") or {}
    return job.get("state") == "running" and bool(job.get("client_lost"))
