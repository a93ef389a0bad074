# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for a change's rollout across servers (the hosts of apply.yml and rollback.yml) in batches.

The rollout is Ansible's own ``serial`` and ``max_fail_percentage``, set per environment as
``indexops_serial`` and ``indexops_max_fail_percentage`` (group_vars/<env>.yml, or ``-e``). Play keywords are
templated before the play's hosts are known, without any host's variables; ansible-core 2.19 does give them
``hostvars`` from the second play of a playbook on (the TaskQueueManager builds it on its first run), and every
indexops playbook's first play is the version check. So the change's play reads the first host's values with
``ansible_play_hosts_all | indexops_rollout(hostvars)``, after playbooks/rollout.yml checked them and that every
server of the run agrees.

- ``indexops_rollout_settings(variables)``: a host's two values as given, or their defaults (``serial: []``, all
  servers in one batch; ``max_fail_percentage: 0``, the first failure stops the rollout).
- ``indexops_rollout_serial(value)`` / ``indexops_rollout_max_fail(value)``: the value as Ansible's keyword
  takes it; a bad value raises, with what was expected.
- ``indexops_rollout(hosts, hostvars)``: ``{serial, max_fail_percentage}`` of the first host, for the play keywords.
- ``indexops_rollout_batches(hosts, serial)``: the batches those hosts run in, as Ansible cuts them.
- ``indexops_rollout_fact(hosts, hostvars, name)``: the fact of the first host that has it: what an earlier
  batch of the same run set (its start, its report's path), which a ``run_once`` fact of this batch is not.
- ``indexops_rollout_report_hosts(hosts, hostvars)``: the report entry of every server of the run, in order; a
  server whose batch did not run (yet) is ``{reached: false}``, one refused by its batch's preflight says so.

Pure data shaping on the control node.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError
from ansible.utils.helpers import pct_to_int

# What an inventory that says nothing gets: every server in one batch, and no tolerance for a failure: the
# behaviour of the plays before they had a rollout.
DEFAULT_SERIAL = ()
DEFAULT_MAX_FAIL = 0
PERCENT = re.compile(r"^\s*(\d+)\s*%\s*$")
WHOLE = re.compile(r"^\s*\d+\s*$")


def indexops_rollout_settings(variables):
    variables = variables or {}
    serial = variables.get("indexops_serial")
    max_fail = variables.get("indexops_max_fail_percentage")
    return {"serial": list(DEFAULT_SERIAL) if serial is None else serial,
            "max_fail_percentage": DEFAULT_MAX_FAIL if max_fail is None else max_fail}


def _number(value):
    """An int from an int or a string of digits (-e key=value gives strings), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and WHOLE.match(value):
        return int(value)
    return None


def _batch(entry):
    number = _number(entry)
    if number is not None:
        return number if number > 0 else None
    match = PERCENT.match(entry) if isinstance(entry, str) else None
    if match and 0 < int(match.group(1)) <= 100:
        return f"{int(match.group(1))}%"
    return None


def indexops_rollout_serial(value):
    """[1, '10%', '100%'] as given, from a list, one size, or the text "1,10%,100%" of -e indexops_serial=..."""
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    batches = [_batch(entry) for entry in value]
    if None in batches:
        raise AnsibleFilterError(f"indexops_serial is {value!r}: expected a list of batch sizes, each a whole number "
                                 "above 0 or a percentage from 1% to 100% of the servers")
    return batches


def indexops_rollout_max_fail(value):
    """0-100, from a number, a string of digits or '30%'."""
    match = PERCENT.match(value) if isinstance(value, str) else None
    number = int(match.group(1)) if match else _number(value)
    if number is None or not 0 <= number <= 100:
        raise AnsibleFilterError(f"indexops_max_fail_percentage is {value!r}: expected a whole number from 0 to 100")
    return number


def indexops_rollout_valid(settings):
    """Whether a host's settings are ones the play keywords take (playbooks/rollout.yml refuses the others)."""
    try:
        indexops_rollout_serial(settings["serial"])
        indexops_rollout_max_fail(settings["max_fail_percentage"])
    except AnsibleFilterError:
        return False
    return True


def indexops_rollout(hosts, hostvars):
    """{serial, max_fail_percentage} for the play keywords: the first host's (all agree: playbooks/rollout.yml)."""
    hosts = list(hosts or [])
    # No hostvars ({}) where no play ran yet: ansible-playbook --syntax-check or --list-hosts. The change's play
    # checks, in its first task, that its batch is one that playbooks/rollout.yml planned.
    settings = indexops_rollout_settings(hostvars[hosts[0]] if hosts and hosts[0] in (hostvars or {}) else {})
    return {"serial": indexops_rollout_serial(settings["serial"]),
            "max_fail_percentage": indexops_rollout_max_fail(settings["max_fail_percentage"])}


def indexops_rollout_batches(hosts, serial):
    """The hosts cut into batches as ansible-core's PlaybookExecutor._get_serialized_batches cuts them: each size
    in turn (a percentage of all the hosts, at least 1), the last one repeated; no size is one batch of all."""
    left = list(hosts or [])
    sizes = list(serial or []) or [-1]
    total, batches, position = len(left), [], 0
    while left:
        size = pct_to_int(sizes[position], total)
        if size <= 0:
            batches.append(left)
            break
        batches.append(left[:size])
        left = left[size:]
        position = min(position + 1, len(sizes) - 1)
    return batches


def indexops_rollout_fact(hosts, hostvars, name):
    for host in hosts or []:
        value = hostvars[host].get(name)
        if value is not None:
            return value
    return None


def _not_reached(preflight):
    """The report entry of a server where the change did not run; refused by its batch's preflight, or not reached."""
    refused = isinstance(preflight, dict) and preflight.get("go") is False
    error = ("no-go before any DDL: " + "; ".join(preflight.get("reasons") or [])) if refused else None
    return {"reached": refused, "changed": False, "action": None, "sql": [], "valid": False, "definition": "",
            "expectations": [], "error": error}


def indexops_rollout_report_hosts(hosts, hostvars):
    entries = {}
    for host in hosts or []:
        variables = hostvars[host]
        entry = variables.get("indexops_report_host")
        entries[host] = entry if entry is not None else _not_reached(variables.get("indexops_preflight_result"))
    return entries


class FilterModule:
    """indexops rollout filters."""

    def filters(self):
        return {"indexops_rollout_settings": indexops_rollout_settings,
                "indexops_rollout_serial": indexops_rollout_serial,
                "indexops_rollout_max_fail": indexops_rollout_max_fail,
                "indexops_rollout_valid": indexops_rollout_valid,
                "indexops_rollout": indexops_rollout,
                "indexops_rollout_batches": indexops_rollout_batches,
                "indexops_rollout_fact": indexops_rollout_fact,
                "indexops_rollout_report_hosts": indexops_rollout_report_hosts}
