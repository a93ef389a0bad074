# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``indexops.core.humanize``: module_utils/humanize.py for templates and role messages.

Reports, summaries and role messages show durations, sizes and times through this filter, so they read
exactly as the modules' messages and the progress lines do (Ansible's ``human_readable`` says MB for MiB).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.indexops.core.plugins.module_utils import humanize as formats

DOCUMENTATION = r"""
name: humanize
short_description: A duration, a size or a UTC time as indexops prints it for people
description:
  - V(duration) (seconds in) gives V(0.4 s), V(36 s), V(3 min 05 s), V(3 h 00 min).
  - V(size) (bytes in) gives binary units, labelled as such, V(812 B), V(16.0 KiB), V(60.2 MiB), V(1.5 GiB).
  - V(time) (ISO 8601 text or epoch seconds in) gives V(2026-12-01 13:12:20 UTC).
  - The same code as the modules' messages and the progress lines (module_utils/humanize.py).
options:
  _input:
    description: The number of seconds, the number of bytes, or the moment.
    type: raw
    required: true
  what:
    description: What the input is (not "kind", which names the kind of a run).
    type: str
    choices: [duration, size, time]
    required: true
  unknown:
    description: The text when the input is null or empty.
    type: str
    default: "-"
"""

EXAMPLES = r"""
- name: Say how long the build took and how big the index is
  ansible.builtin.debug:
    msg: >-
      {{ result.duration_s | indexops.core.humanize('duration') }},
      {{ result.size_bytes | indexops.core.humanize('size') }}
"""

RETURN = r"""
_value:
  description: The text for people.
  type: str
"""

FORMATS = {
    "duration": lambda value, unknown: formats.duration(value, unknown=unknown),
    "size": lambda value, unknown: formats.size(value, unknown=unknown),
    "time": lambda value, unknown: formats.timestamp(value, unknown=unknown),
}


def humanize(value, what, unknown="-"):
    if what not in FORMATS:
        raise AnsibleFilterError(f"indexops.core.humanize: {what!r} is not one of {', '.join(FORMATS)}")
    try:
        return FORMATS[what](value, unknown)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"indexops.core.humanize: {value!r} is not a {what} ({exc})") from None


class FilterModule:
    """Durations, sizes and times for people."""

    def filters(self):
        return {"humanize": humanize}
