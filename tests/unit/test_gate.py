"""gate: kill switch, maintenance window and rehearsal requirement, with one-line refusals."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest

from ansible_collections.indexops.core.plugins.module_utils import gate
from ansible_collections.indexops.core.plugins.module_utils.errors import FIX_INPUT, IndexOpsError
from tests.pg_index_runner import run_module
from tests.unit.casefiles import cases, section

CASES = "gate.yml"
BASE_PARAMS = section(CASES, "base_params")
BASE_REPORT = section(CASES, "base_report")
WINDOW_KEYS = ("open", "opens_at", "closes_at", "remaining_s")


def merged(base, overrides):
    """``overrides`` deep-merged over a copy of ``base``."""
    result = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def write_reports(directory, reports):
    directory.mkdir(parents=True, exist_ok=True)
    for name, overrides in (reports or {}).items():
        text = overrides["raw"] if "raw" in overrides else json.dumps(merged(BASE_REPORT, overrides))
        (directory / name).write_text(text, encoding="utf-8")


def params_for(case, reports_dir):
    return merged({**BASE_PARAMS, "reports_dir": str(reports_dir)}, case.get("params"))


def assert_mentions(text, fragments):
    missing = [fragment for fragment in fragments if fragment.lower() not in text.lower()]
    assert not missing, f"{text!r} does not mention {missing}"


def assert_lines(lines, expected, reports_dir):
    """One list of fragments per line, in order; every line is one line."""
    assert len(lines) == len(expected), lines
    for line, fragments in zip(lines, expected, strict=True):
        assert "\n" not in line
        assert_mentions(line, [fragment.replace("{reports_dir}", str(reports_dir)) for fragment in fragments])


def input_error_of(call):
    with pytest.raises(IndexOpsError) as info:
        call()
    exc = info.value
    assert exc.retry_safe is False and exc.expected, "an input error says what was expected"
    assert exc.msg.endswith(FIX_INPUT)
    return exc.msg


# --------------------------------------------------------------------------- window


@pytest.mark.parametrize("case", cases(CASES, "windows"))
def test_window(case):
    window = gate.parse_window(case["window"])
    now = gate.parse_instant(case["now"], "now")
    state = gate.window_state(window, now)
    for key in WINDOW_KEYS:
        if key in case:
            assert state[key] == case[key], key
    assert state["timezone"] == (case["window"] or {}).get("timezone")


@pytest.mark.parametrize("case", cases(CASES, "windows"))
def test_window_opens_when_it_says(case):
    """A closed window is open at opens_at and still closed a minute before; an open one closes at closes_at."""
    window = gate.parse_window(case["window"])
    state = gate.window_state(window, gate.parse_instant(case["now"], "now"))
    if state["opens_at"]:
        opens = dt.datetime.fromisoformat(state["opens_at"])
        assert gate.window_state(window, opens)["open"]
        assert not gate.window_state(window, opens - dt.timedelta(minutes=1))["open"]
    if state["closes_at"]:
        closes = dt.datetime.fromisoformat(state["closes_at"])
        assert gate.window_state(window, closes - dt.timedelta(seconds=1))["open"]
        assert state["remaining_s"] == pytest.approx((closes - gate.parse_instant(case["now"], "now")).total_seconds())


@pytest.mark.parametrize("case", cases(CASES, "bad_windows"))
def test_bad_window(case):
    assert_mentions(input_error_of(lambda: gate.parse_window(case["window"])), case["says"])


@pytest.mark.parametrize("case", section(CASES, "days_text"), ids=lambda case: case["text"])
def test_days_text(case):
    assert gate.days_text(tuple(case["days"])) == case["text"]


# --------------------------------------------------------------------------- decisions


@pytest.mark.parametrize("case", cases(CASES, "decisions"))
def test_decision(case, tmp_path):
    reports_dir = tmp_path / "reports"
    write_reports(reports_dir / BASE_PARAMS["change_id"], case.get("reports"))
    write_reports(reports_dir / "another-change", case.get("other_change_reports"))
    result = gate.decide(gate.build_policy(params_for(case, reports_dir)))
    expect = case["expect"]
    assert result["go"] is expect["go"]
    assert result["changed"] is False
    assert result["go"] == (not result["reasons"]), "go exactly when no refusal stands"
    if "override" in expect:
        assert result["override"] is expect["override"]
    if "override_reason" in expect:
        assert result["override_reason"] == expect["override_reason"]
    if "reasons" in expect:
        assert_lines(result["reasons"], expect["reasons"], reports_dir)
    for line in result["reasons"]:
        assert line.startswith("refused: ")
        for fragment in expect.get("reasons_not", ()):
            assert fragment not in line
    if "overridden" in expect:
        assert_lines(result["overridden"], expect["overridden"], reports_dir)
    if "rehearsal" in expect:
        if expect["rehearsal"] is None:
            assert result["rehearsal"] is None
        else:
            assert result["rehearsal"] is not None, result["reasons"]
            for key, value in expect["rehearsal"].items():
                assert result["rehearsal"][key] == value, key
    if "rehearsal_file" in expect:
        assert result["rehearsal"]["path"] == str(reports_dir / BASE_PARAMS["change_id"] / expect["rehearsal_file"])
    for key, value in (expect.get("window") or {}).items():
        assert result["window"][key] == value, f"window.{key}"


@pytest.mark.parametrize("case", cases(CASES, "bad_params"))
def test_bad_params(case, tmp_path):
    params = params_for(case, tmp_path)
    assert_mentions(input_error_of(lambda: gate.build_policy(params)), case["says"])


def test_now_defaults_to_the_clock(tmp_path):
    params = {**params_for({}, tmp_path), "now": None}
    before = dt.datetime.now(dt.UTC)
    policy = gate.build_policy(params)
    assert before <= policy.now <= dt.datetime.now(dt.UTC)


def test_missing_reports_dir_is_no_rehearsal(tmp_path):
    result = gate.decide(gate.build_policy(params_for({}, tmp_path / "does-not-exist")))
    assert result["rehearsal"] is None
    assert_mentions(result["reasons"][0], ["none found in"])


# --------------------------------------------------------------------------- the module


def module_args(tmp_path, **overrides):
    args = {key: value for key, value in BASE_PARAMS.items() if value is not None}
    return {**args, "reports_dir": str(tmp_path / "reports"), **overrides}


def test_module_refusal_fails_with_the_reason(tmp_path):
    result = run_module("indexops_gate", module_args(tmp_path))
    assert result["failed"] is True
    assert result["go"] is False
    assert result["msg"] == result["reasons"][0]
    assert result["msg"].startswith("refused: production requires a successful rehearsal")
    assert result["changed"] is False


def test_module_numbers_several_reasons(tmp_path):
    result = run_module("indexops_gate", module_args(tmp_path, enabled=False))
    assert len(result["reasons"]) == 2
    assert result["msg"] == f"(1) {result['reasons'][0]} (2) {result['reasons'][1]}"


def test_module_without_fail_on_refusal_reports_no_go(tmp_path):
    result = run_module("indexops_gate", module_args(tmp_path, fail_on_refusal=False))
    assert "failed" not in result
    assert result["go"] is False and len(result["reasons"]) == 1


def test_module_go_with_rehearsal(tmp_path):
    write_reports(tmp_path / "reports" / BASE_PARAMS["change_id"], {"staging-20250301T100000Z.json": {}})
    window = {"days": ["mon"], "start": "12:00", "end": "14:00", "timezone": "Europe/Berlin"}
    result = run_module("indexops_gate", module_args(tmp_path, maintenance_window=window))
    assert "failed" not in result, result.get("msg")
    assert result["go"] is True and result["reasons"] == []
    assert result["rehearsal"]["duration_s"] == 12.5
    assert result["window"] == {"open": True, "opens_at": None, "closes_at": "2025-03-03T14:00:00+01:00",
                                "remaining_s": 3600.0, "timezone": "Europe/Berlin"}


def test_module_override_is_reported(tmp_path):
    result = run_module("indexops_gate", module_args(tmp_path, override_reason="INC-3: checkout is down"))
    assert result["go"] is True and result["override"] is True
    assert result["override_reason"] == "INC-3: checkout is down"
    assert result["overridden"][0].startswith("overridden by alice (break glass: INC-3: checkout is down): production")


def test_module_unquoted_yaml_time(tmp_path):
    """Ansible turns YAML's 1320 (an unquoted 22:00) into the text '1320'; the message says what happened."""
    window = {"start": 1320, "end": "04:00", "timezone": "UTC"}
    result = run_module("indexops_gate", module_args(tmp_path, maintenance_window=window))
    assert result["failed"] is True
    assert_mentions(result["msg"], ["maintenance_window.start is the number 1320", "quoted", "HH:MM"])


def test_module_rejects_unknown_window_key(tmp_path):
    window = {"start": "22:00", "end": "04:00", "timezone": "UTC", "hours": 6}
    result = run_module("indexops_gate", module_args(tmp_path, maintenance_window=window))
    assert result["failed"] is True
    assert "hours" in result["msg"]
