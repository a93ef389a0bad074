"""Throw-away LOGIN roles for tests that run a module as a less privileged role.

Roles are cluster-wide, so each gets a unique name (indexops_t_role_<hex>) and is dropped when the
``Roles`` block ends, after its ownerships and grants in the test database are undone.
"""

from __future__ import annotations

import contextlib
import uuid

import psycopg2
from psycopg2 import sql

ROLE_PREFIX = "indexops_t_role_"


class Roles:
    """``with Roles(db) as roles: name, params = roles.make("GRANT pg_monitor TO {role}")``."""

    def __init__(self, db):
        self.db = db
        self.created = []

    def __enter__(self):
        return self

    def make(self, *grants, login=True, **names):
        """A new role; ``grants`` are SQL templates in which {role}, {db} and each of ``names``
        become identifiers. Returns (name, module connection params logging in as it)."""
        name = f"{ROLE_PREFIX}{uuid.uuid4().hex[:8]}"
        password = uuid.uuid4().hex
        if login:
            self.db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(name)), (password,))
        else:
            self.db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
        self.created.append(name)
        identifiers = {key: sql.Identifier(value) for key, value in {**names, "role": name, "db": self.db.name}.items()}
        for grant in grants:
            self.db.execute(sql.SQL(grant).format(**identifiers))
        return name, {**self.db.params, "login_user": name, "login_password": password}

    def __exit__(self, *exc):
        for name in reversed(self.created):
            ident = sql.Identifier(name)
            self.db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))
            with contextlib.suppress(psycopg2.Error):
                self.db.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(ident))
                self.db.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            self.db.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident))
        return False
