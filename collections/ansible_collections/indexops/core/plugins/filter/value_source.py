# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``indexops.core.value_source``: where a variable's value came from, for the advice in a refusal.

A bad value typed with ``-e`` is fixed on the command line, one from the inventory in its group_vars;
advice that names the wrong place sends the operator to edit a file that was never the problem.
"""

from __future__ import annotations

from ansible import context
from ansible.parsing.dataloader import DataLoader
from ansible.utils.vars import load_extra_vars

DOCUMENTATION = r"""
name: value_source
short_description: Say whether a variable was given with -e or comes from the inventory
description:
  - Reads this run's C(-e)/C(--extra-vars) (key=value, JSON, YAML or @file) and says V(command line) when
    the variable is among them, else V(inventory).
options:
  _input:
    description: The variable's name.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Refuse a bad lock timeout and say where to fix it
  ansible.builtin.fail:
    msg: >-
      fix it {{ 'on the command line (-e)' if ('indexops_lock_timeout' | indexops.core.value_source) == 'command line'
      else 'in the inventory' }}
"""

RETURN = r"""
_value:
  description: V(command line) or V(inventory).
  type: str
"""


def value_source(name):
    # The CLI arguments of this ansible-playbook run; worker processes inherit them.
    given = load_extra_vars(DataLoader()) if context.CLIARGS.get("extra_vars") else {}
    return "command line" if name in given else "inventory"


class FilterModule:
    """Where a variable's value came from."""

    def filters(self):
        return {"value_source": value_source}
