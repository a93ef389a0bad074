"""humanize: THE formatter for people, and the filter indexops.core.humanize that gives it to templates."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.indexops.core.plugins.filter.humanize import humanize as humanize_filter

from ansible_collections.indexops.core.plugins.module_utils import humanize
from tests.unit.casefiles import section

CASES = "humanize.yml"


@pytest.mark.parametrize("case", section(CASES, "durations"), ids=lambda case: f"{case['seconds']}->{case['text']}")
def test_duration(case):
    assert humanize.duration(case["seconds"]) == case["text"]
    if case["seconds"] is not None:
        assert humanize_filter(case["seconds"], "duration") == case["text"]


@pytest.mark.parametrize("case", section(CASES, "sizes"), ids=lambda case: f"{case['bytes']}->{case['text']}")
def test_size(case):
    assert humanize.size(case["bytes"]) == case["text"]
    if case["bytes"] is not None:
        assert humanize_filter(case["bytes"], "size") == case["text"]


@pytest.mark.parametrize("case", section(CASES, "times"), ids=lambda case: case["text"])
def test_time(case):
    assert humanize_filter(case["value"], "time") == case["text"]


def test_filter_names_what_it_cannot_read():
    with pytest.raises(AnsibleFilterError, match="'lots' is not a size"):
        humanize_filter("lots", "size")
    with pytest.raises(AnsibleFilterError, match="'weight' is not one of duration, size, time"):
        humanize_filter(1, "weight")
