"""The safety options of one pg_index run, and the servers it refuses outright."""

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError, input_error
from ansible_collections.indexops.core.plugins.module_utils.spec import duration_seconds

MIN_SERVER = 140000
# PostgreSQL 14.0-14.3 could corrupt indexes built or rebuilt CONCURRENTLY (fixed in 14.4).
CONCURRENT_BROKEN = range(140000, 140004)
NULLS_NOT_DISTINCT_SINCE = 150000


@dataclass
class Safety:
    """The safety options of one run, already validated."""

    concurrently: bool = True
    lock_timeout: str = "1s"
    lock_retries: int = 5
    retry_delay_s: float = 0.5
    retry_max_delay_s: float = 30.0
    statement_timeout: str | None = None
    build_wait_timeout: str | None = None
    on_invalid: str = "rebuild"
    on_mismatch: str = "fail"
    maintenance_work_mem: str | None = None
    max_parallel_maintenance_workers: int | None = None
    analyze: bool = False
    wait: bool = False
    wait_timeout_s: float = 600.0
    job_lock_timeout_s: float = 30.0

    @property
    def lock_timeout_s(self):
        return duration_seconds(self.lock_timeout, "lock_timeout")

    @property
    def build_wait_timeout_s(self):
        if self.build_wait_timeout is None:
            return None
        return duration_seconds(self.build_wait_timeout, "build_wait_timeout")

    def session_settings(self):
        """GUCs set on every connection that runs DDL."""
        settings = {"lock_timeout": self.lock_timeout, "statement_timeout": self.statement_timeout or "0"}
        if self.maintenance_work_mem:
            settings["maintenance_work_mem"] = self.maintenance_work_mem
        if self.max_parallel_maintenance_workers is not None:
            settings["max_parallel_maintenance_workers"] = str(self.max_parallel_maintenance_workers)
        return settings


def guard_server(version, *, concurrent, nulls_not_distinct=False, standby=False):
    """Refuse servers that are too old, known to corrupt concurrent builds, or read-only replicas."""
    if standby:
        raise IndexOpsError(
            "the server is a hot standby (a read-only replica in recovery): no index can be created or dropped on it",
            expected="the primary server of the cluster (indexes reach the standbys through replication)",
            hint="Nothing was changed; point login_host (indexops_login_host) at the primary and run again.")
    if version < MIN_SERVER:
        raise IndexOpsError(f"the server runs PostgreSQL {version}, older than 14",
                            expected="PostgreSQL 14.4 or newer", hint="Nothing was changed.")
    if concurrent and version in CONCURRENT_BROKEN:
        raise IndexOpsError(
            f"the server runs PostgreSQL {version}; 14.0-14.3 can silently corrupt indexes built CONCURRENTLY",
            expected="PostgreSQL 14.4 or newer (upgrade the minor version first)", hint="Nothing was changed.")
    if nulls_not_distinct and version < NULLS_NOT_DISTINCT_SINCE:
        raise input_error(f"nulls_not_distinct needs PostgreSQL 15 or newer; the server runs {version}",
                          "nulls_not_distinct: false on PostgreSQL 14")
