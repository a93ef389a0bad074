"""Read a change's jobs from the rehearsal environment's ledger, for the production gate.

Only reads: the session is read-only, its search_path pinned (connection.pin_session), and the ledger
is verified to be ours (ledger.verify) before the table is touched, because reading a table runs
code its owner chose (see ledger.py). What the rows mean is decided in rehearsals.py, without a database.
"""

from __future__ import annotations

from ansible_collections.indexops.core.plugins.module_utils import ledger
from ansible_collections.indexops.core.plugins.module_utils.catalog import fetch_all
from ansible_collections.indexops.core.plugins.module_utils.connection import connect
from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError
from ansible_collections.indexops.core.plugins.module_utils.rehearsals import KINDS

# The newest jobs of the change, enough for many rehearsals; older ones cannot be recent anyway.
JOB_LIMIT = 500

CHANGE_JOBS = """
SELECT j.job_id, j.kind, j.action, j.environment, j.state, j.spec_digest, j.operator,
       to_char(j.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') AS finished_at,
       j.observed
FROM indexops.jobs j
WHERE j.change_id = %(change_id)s AND j.kind = ANY(%(kinds)s)
ORDER BY j.job_id DESC
LIMIT %(limit)s
"""

LEDGER_OWNER_OPTION = "ledger_owner of rehearsal_ledger (indexops_rehearsal_ledger.ledger_owner in group_vars)"

READ_ONLY = "SELECT pg_catalog.set_config('default_transaction_read_only', 'on', false)"


def read_jobs(params, change_id, application_name):
    """Every job of ``change_id`` (kinds rehearse, rollback, apply) in the ledger ``params`` connects
    to, oldest first; [] when there is no ledger. Raises IndexOpsError when the ledger is not ours
    or this role may not read it."""
    conn = connect(params, application_name)
    try:
        with conn.cursor() as cur:
            cur.execute(READ_ONLY)  # nothing this session runs may write, whatever the role could do
        facts = ledger.inspect(conn, params.get("ledger_owner"))  # what ledger.verify checks, with our option name
        problem = ledger.refusal(facts)
        if problem:
            raise ledger.untrusted_error(problem, facts, LEDGER_OWNER_OPTION)
        access = ledger.read_access(conn)
        if not access["exists"]:
            return []
        if not access["readable"]:
            raise IndexOpsError(
                f"role {params.get('login_user') or '(PGUSER)'} may not read the rehearsal ledger indexops.jobs",
                expected="USAGE on schema indexops and SELECT on indexops.jobs for the role the gate reads it as",
                hint="Nothing was changed. Have a DBA run GRANT USAGE ON SCHEMA indexops TO <role>; "
                     "GRANT SELECT ON indexops.jobs TO <role>; then run again.")
        rows = fetch_all(conn, CHANGE_JOBS, {"change_id": change_id, "kinds": list(KINDS), "limit": JOB_LIMIT})
    finally:
        conn.close()
    return rows[::-1]
