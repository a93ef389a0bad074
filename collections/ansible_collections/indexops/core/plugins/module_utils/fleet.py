"""Many databases of one server in one module run: which databases, and reading them a few at a time.

A host is a server that may carry many databases (a database per tenant is common). Paying Ansible's
per-host cost once per database is what made status over 50 databases 4.7 x slower than over one, so the
read-only modules (pg_index_status, pg_index_preflight) take the databases of a server in one run:

- ``databases``: names given as they are (the inventory's indexops_databases);
- ``discover``: every database of the server whose name matches one of ``include`` and none of
  ``exclude`` (shell-style patterns), read from pg_database; templates and databases that do not allow
  connections are never candidates;
- plus each database a change file names (that change is read there only).

Each database is read on its own connection, at most ``max_connections`` at a time; a database that
cannot be read becomes its own entry, with its error, and never hides the others.
"""

from __future__ import annotations

import fnmatch
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError, input_error

# Templates are copied from, not worked on; a database that refuses connections cannot be read.
DISCOVER_SQL = ("SELECT datname FROM pg_catalog.pg_database WHERE NOT datistemplate AND datallowconn "
                "ORDER BY datname")
DEFAULT_MAX_CONNECTIONS = 4
# PostgreSQL keeps names of at most 63 bytes (NAMEDATALEN - 1).
MAX_NAME_BYTES = 63


def argument_spec():
    """The options of a module that reads many databases; documented in the doc fragment indexops.core.fleet."""
    return {
        "databases": {"type": "list", "elements": "str"},
        "discover": {"type": "dict", "options": {
            "include": {"type": "list", "elements": "str", "default": ["*"]},
            "exclude": {"type": "list", "elements": "str", "default": []},
        }},
        "max_connections": {"type": "int", "default": DEFAULT_MAX_CONNECTIONS},
    }


def wanted(params):
    """Whether the module was asked for many databases (else its one-database path runs, as before)."""
    return params.get("databases") is not None or params.get("discover") is not None


def check_name(name, what):
    if not isinstance(name, str) or not name.strip():
        raise input_error(f"{what} has an empty database name", "the name of a database of the server")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise input_error(f"{what}: database name {name!r} is longer than {MAX_NAME_BYTES} bytes",
                          "a database name PostgreSQL can hold")
    return name


def check_options(params):
    """Bad fleet options fail before anything connects."""
    for name in params.get("databases") or []:
        check_name(name, "databases")
    if params.get("max_connections") is not None and params["max_connections"] < 1:
        raise input_error(f"max_connections is {params['max_connections']}",
                          "at least 1 connection at a time")
    discover = params.get("discover")
    if discover is not None:
        for key in ("include", "exclude"):
            if any(not isinstance(pattern, str) or not pattern for pattern in discover.get(key) or []):
                raise input_error(f"discover.{key} holds an empty pattern",
                                  "shell-style patterns of database names, e.g. tenant_*")


def matches(name, patterns):
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns or [])


def select(names, include, exclude):
    """The names matching one of ``include`` and none of ``exclude``, in their order."""
    return [name for name in names if matches(name, include) and not matches(name, exclude)]


def merge(*groups):
    """The names of every group, each once, in order of first appearance."""
    out = []
    for group in groups:
        out.extend(name for name in group or [] if name not in out)
    return out


def discover(conn, include, exclude):
    """The server's databases that match the patterns (never a template, never one refusing connections)."""
    with conn.cursor() as cur:
        cur.execute(DISCOVER_SQL)
        return select([row[0] for row in cur.fetchall()], include, exclude)


def discovery_error(exc):
    why = exc.msg if isinstance(exc, IndexOpsError) else str(exc).strip()
    return IndexOpsError(
        f"listing the databases of the server (for discover) failed: {why}",
        expected="a connection to the database named by db (the one discovery reads pg_database from)",
        hint="Nothing was read or changed; running again is safe once that database answers.", retry_safe=True)


def failed_entry(database, exc):
    """One database's entry when it could not be read: its name, its error, whether a retry is safe."""
    if isinstance(exc, IndexOpsError):
        return {"database": database, "failed": True, "msg": exc.msg, "retry_safe": exc.retry_safe}
    return {"database": database, "failed": True, "retry_safe": False,
            "msg": f"reading database {database} failed unexpectedly: {exc}. Nothing was changed."}


def each(databases, read_one, max_connections):
    """``read_one(database)`` for every database, at most ``max_connections`` at a time (threads: each
    waits on its own connection), in the order given. A database whose read raises becomes a failed
    entry; the others are still read."""

    def one(database):
        try:
            return {"database": database, "failed": False, **read_one(database)}
        except Exception as exc:  # noqa: BLE001 - one database's failure is its own entry, never the run's
            return failed_entry(database, exc)

    if not databases:
        return []
    with ThreadPoolExecutor(max_workers=min(max_connections, len(databases))) as pool:
        return list(pool.map(one, databases))


def summary(entries):
    """How many databases were read and how many failed, and which."""
    failed = [entry["database"] for entry in entries if entry["failed"]]
    return {"databases_read": len(entries) - len(failed), "databases_failed": failed}


def databases_of(params, connect_to, named=()):
    """The databases to read: those given, then those discovered (connecting to O(db) to list them),
    then those change files name; each once. ``connect_to(database)`` opens a connection."""
    discovered = []
    options = params.get("discover")
    if options is not None:
        try:
            conn = connect_to(params.get("db"))
        except IndexOpsError as exc:
            raise discovery_error(exc) from None
        try:
            discovered = discover(conn, options.get("include") or [], options.get("exclude") or [])
        except Exception as exc:  # noqa: BLE001 - psycopg2 is not imported here; any failure reads the same
            raise discovery_error(exc) from None
        finally:
            conn.close()
    return merge(params.get("databases"), discovered, named)


def prefixed_warnings(entries):
    """Every entry's warnings (taken out of it), each saying which database it is about."""
    out = []
    for entry in entries:
        out.extend(f"database {entry['database']}: {warning}" for warning in entry.pop("warnings", None) or [])
    return out


def nothing_selected_warning(params):
    return ("no database was selected: databases is empty and discover matched no database that allows "
            f"connections (include {(params.get('discover') or {}).get('include')}, exclude "
            f"{(params.get('discover') or {}).get('exclude')}). Nothing was read.")
