"""A server carrying many databases, for the tests of the fleet options (databases, discover).

``Fleet(db, count)`` copies the test database ``db`` (after the caller filled it) into ``count``
databases named ``<db>_01`` ... ``<db>_NN`` with CREATE DATABASE ... TEMPLATE, and drops them all at
the end, so every name of a fleet starts with its own test database's unique name: discovery by the
pattern ``<db>_*`` finds this test's databases and nobody else's.
"""

from __future__ import annotations

import contextlib

from psycopg2 import sql


class Fleet:
    def __init__(self, db, count):
        self.db = db
        self.count = count
        self.names = [f"{db.name}_{i:02d}" for i in range(1, count + 1)]
        self.extra = []

    @property
    def pattern(self):
        return f"{self.db.name}_*"

    def __enter__(self):
        for name in self.names:
            self.create(name)
        return self

    def create(self, name, template=None):
        # CREATE DATABASE ... TEMPLATE needs the template without sessions.
        self.db.close()
        with contextlib.closing(self.db.server.connect()) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template or self.db.name)))
        if name not in self.names:
            self.extra.append(name)
        return name

    def admin(self, statement, *identifiers):
        """One statement on the maintenance database, with ``identifiers`` as {} placeholders."""
        with contextlib.closing(self.db.server.connect()) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL(statement).format(*(sql.Identifier(name) for name in identifiers)))

    def connect(self, name):
        return self.db.server.connect(name)

    def run(self, name, statement, params=None):
        with contextlib.closing(self.connect(name)) as conn, conn.cursor() as cur:
            cur.execute(statement, params)

    def __exit__(self, *exc):
        for name in self.names + self.extra:
            # A template or a database that refuses connections cannot be dropped as it is.
            self.admin("ALTER DATABASE {} WITH IS_TEMPLATE false ALLOW_CONNECTIONS true", name)
            with contextlib.closing(self.db.server.connect()) as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        return False
