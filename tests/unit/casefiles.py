"""Load table-driven test cases from tests/unit/cases/*.yml (community.general style).

Each case is a mapping with an ``id`` (the pytest id); ``xfail: <reason>`` marks a case that
documents a known defect (strict, so the case fails loudly once the defect is fixed).
A mapping ``{repeat: <text>, times: <n>}`` anywhere in a case stands for ``text * n``, so that
long identifiers stay readable in YAML.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CASES_DIR = Path(__file__).resolve().parent / "cases"


def expand(value):
    """Replace every ``{repeat: text, times: n}`` mapping by ``text * n``, recursively."""
    if isinstance(value, dict):
        if set(value) == {"repeat", "times"}:
            return str(value["repeat"]) * int(value["times"])
        return {key: expand(item) for key, item in value.items()}
    if isinstance(value, list):
        return [expand(item) for item in value]
    return value


def load(filename):
    with open(CASES_DIR / filename, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def section(filename, name):
    """The raw (expanded) list or mapping stored under ``name`` in ``filename``."""
    return expand(load(filename)[name])


def cases(filename, name):
    """pytest.param objects for parametrize, one per case, with the case's id."""
    params = []
    ids = set()
    for case in section(filename, name):
        case_id = case["id"]
        if case_id in ids:
            raise ValueError(f"{filename}:{name}: duplicate case id {case_id!r}")
        ids.add(case_id)
        marks = [pytest.mark.xfail(reason=case["xfail"], strict=True)] if case.get("xfail") else []
        params.append(pytest.param(case, id=case_id, marks=marks))
    return params
