"""Connection options shared by every indexops module, and the one way to connect."""

from __future__ import annotations

try:
    import psycopg2

    HAS_PSYCOPG2 = True
except ImportError:  # reported by the module through missing_required_lib
    HAS_PSYCOPG2 = False

from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError


def connection_argument_spec():
    """Options every module accepts; unset ones fall back to libpq's PG* variables and .pgpass.

    Documented once, in the doc fragment indexops.core.connection (plugins/doc_fragments/connection.py).
    """
    return {
        "login_host": {"type": "str", "aliases": ["host"]},
        "login_port": {"type": "int", "aliases": ["port"]},
        "login_user": {"type": "str", "aliases": ["user"]},
        "login_password": {"type": "str", "no_log": True},
        "login_unix_socket": {"type": "str"},
        "db": {"type": "str", "aliases": ["database"]},
        "ssl_mode": {"type": "str", "choices": ["allow", "disable", "prefer", "require", "verify-ca", "verify-full"]},
        "ssl_rootcert": {"type": "path", "aliases": ["ca_cert"]},
        "connect_timeout": {"type": "int", "default": 10},
        # A role besides the login role that may own the ledger (see the connection doc fragment).
        "ledger_owner": {"type": "str"},
    }


# module option -> libpq keyword
LIBPQ_KEYWORDS = {
    "login_host": "host",
    "login_port": "port",
    "login_user": "user",
    "login_password": "password",
    "db": "dbname",
    "ssl_mode": "sslmode",
    "ssl_rootcert": "sslrootcert",
    "connect_timeout": "connect_timeout",
}


def connect_kwargs(params, application_name):
    kwargs = {key: params[opt] for opt, key in LIBPQ_KEYWORDS.items() if params.get(opt) not in (None, "")}
    if params.get("login_unix_socket"):
        kwargs["host"] = params["login_unix_socket"]
    # PostgreSQL keeps 63 bytes of application_name; cut on a character boundary.
    kwargs["application_name"] = application_name.encode("utf-8")[:63].decode("utf-8", "ignore")
    return kwargs


def connect(params, application_name):
    """An autocommit connection: CONCURRENTLY statements cannot run inside a transaction."""
    try:
        conn = psycopg2.connect(**connect_kwargs(params, application_name))
    except psycopg2.OperationalError as exc:
        raise IndexOpsError(
            f"could not connect to PostgreSQL: {str(exc).strip()}",
            expected="a reachable server and valid login_* options, PG* variables or .pgpass entry",
            hint="Nothing was changed; running again is safe once the server is reachable.",
            retry_safe=True,
        ) from None
    conn.autocommit = True
    pin_session(conn)
    return conn


# Every module statement resolves names through pg_catalog only. pg_temp is named last on purpose:
# left out, it would be searched first for tables and types, so a temporary object could shadow a
# catalog one. No schema another role may create objects in (public, the table's schema, indexops)
# is on the path, so a function or operator planted there can never be picked for our SQL nor for
# the user's index expressions (which must therefore schema-qualify anything outside pg_catalog).
SEARCH_PATH = "pg_catalog, pg_temp"

# lock_timeout of the read-only sessions (preflight, status): never queue behind a DDL for long, even for
# a catalog read. Here rather than in spec.py, which pulls in pglast, so that pg_index_status stays light.
READ_LOCK_TIMEOUT = "2s"


def pin_session(conn):
    """Session settings every module relies on, set before any other statement."""
    # Fragments are printed from pglast's tree with standard string syntax; a role or database
    # setting standard_conforming_strings=off would let a backslash end a literal early.
    with conn.cursor() as cur:
        cur.execute("SELECT pg_catalog.set_config('standard_conforming_strings', 'on', false)")
        cur.execute("SELECT pg_catalog.set_config('search_path', %s, false)", (SEARCH_PATH,))
