# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of a read-only module that reads many databases of one server in one run, documented once.

Their argument spec is argument_spec() in plugins/module_utils/fleet.py; a module uses both with
``extends_documentation_fragment: [indexops.core.fleet]``.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  databases:
    description:
      - Read these databases of the server, in this order, in one run (O(db) is then only where O(discover) lists
        the databases). Unset, together with O(discover), means the one database O(db), as before.
      - Each database is read on its own connection; one that cannot be read is its own entry, with its error,
        and does not hide the others.
    type: list
    elements: str
  discover:
    description:
      - Also read every database of the server whose name matches one of O(discover.include) and none of
        O(discover.exclude), listed from C(pg_database) over a connection to O(db). Templates and databases
        that do not allow connections (C(datallowconn=false)) are never read.
    type: dict
    suboptions:
      include:
        description: Shell-style patterns (V(tenant_*), V(shop_??)); a database must match one. Case-sensitive.
        type: list
        elements: str
        default: ["*"]
      exclude:
        description: Shell-style patterns; a database matching any of them is left out.
        type: list
        elements: str
        default: []
  max_connections:
    description:
      - With O(databases) or O(discover), how many databases are read at the same time (one connection each).
        Bounds the load on the server and on C(max_connections); at least 1.
    type: int
    default: 4
"""
