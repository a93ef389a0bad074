# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection options every indexops module takes, documented once.

Their argument spec is connection_argument_spec() in plugins/module_utils/connection.py; a module uses
both with ``extends_documentation_fragment: [indexops.core.connection]``.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description: Host of the server; unset uses C(PGHOST) or the local socket.
    type: str
    aliases: [host]
  login_port:
    description: Port of the server; unset uses C(PGPORT) or 5432.
    type: int
    aliases: [port]
  login_user:
    description: Role to connect as; unset uses C(PGUSER) or the OS user.
    type: str
    aliases: [user]
  login_password:
    description: Password; prefer C(.pgpass) or ansible-vault. Never logged or returned.
    type: str
  login_unix_socket:
    description: Directory of the server's Unix socket.
    type: str
  db:
    description:
      - Database to connect to; unset uses C(PGDATABASE).
      - For M(pg_index_preflight), the change's C(database) replaces it.
    type: str
    aliases: [database]
  ssl_mode:
    description: libpq C(sslmode).
    type: str
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  ssl_rootcert:
    description:
      - File with the certificate(s) of the CA that signed the server's certificate (libpq C(sslrootcert)).
      - With O(ssl_mode=verify-full) libpq checks the server's certificate against it and the host name
        against the certificate, so a man in the middle cannot read the password or the SQL.
      - Unset uses C(PGSSLROOTCERT) or C(~/.postgresql/root.crt).
    type: path
    aliases: [ca_cert]
  ledger_owner:
    description:
      - A role, besides the login role, that may own schema C(indexops) and everything in it (the ledger),
        for teams whose ledger belongs to one shared role.
      - Before it reads or writes the ledger, the module checks in pg_catalog that the schema, the table
        C(indexops.jobs), its index and every other object in that schema are owned by the login role or by
        this role, and that the table is a plain table with no trigger, rule, row-level security policy or
        inheritance, whose defaults, constraints, indexes and column types use only pg_catalog, and that no
        other role holds CREATE on the schema or TRIGGER on the table (it could add code later). Anything
        else is refused (M(pg_index) before any DDL, M(pg_index_preflight) in its C(privileges) check,
        M(pg_index_status) reads no ledger and warns), because a ledger another role controls would run that role's
        code with this login's rights.
      - Membership in a role is deliberately not enough; name the role here.
    type: str
  connect_timeout:
    description: Seconds to wait for the connection.
    type: int
    default: 10
"""
