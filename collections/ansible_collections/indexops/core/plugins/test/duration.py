# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja test ``is indexops.core.duration``: PostgreSQL duration text, read by spec.py's one parser."""

from __future__ import annotations

from ansible_collections.indexops.core.plugins.module_utils.errors import IndexOpsError
from ansible_collections.indexops.core.plugins.module_utils.spec import duration_seconds

DOCUMENTATION = r"""
name: duration
short_description: Whether a value is PostgreSQL duration text as pg_index accepts it
description:
  - V(500ms), V(1s), V(2min), V(1h), V(7d) or a bare number of milliseconds; parsed by the same code as
    pg_index's C(lock_timeout), so a policy value this test accepts is one the module accepts.
options:
  _input:
    description: The value to check.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Refuse a lock timeout that is not a duration
  ansible.builtin.assert:
    that: indexops_lock_timeout is indexops.core.duration
"""

RETURN = r"""
_value:
  description: V(true) when the value is a duration.
  type: bool
"""


def is_duration(value):
    try:
        duration_seconds(value, "value")
    except IndexOpsError:
        return False
    return True


class TestModule:
    def tests(self):
        return {"duration": is_duration}
