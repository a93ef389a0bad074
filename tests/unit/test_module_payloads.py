"""What each module carries to the target: the module_utils files its imports reach (Ansible ships
exactly those in the module's payload). Read from the source with ast, without importing anything."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "ansible_collections.indexops.core.plugins.module_utils"
UTILS = ROOT / "collections" / "ansible_collections" / "indexops" / "core" / "plugins" / "module_utils"


def imports_of(path):
    """(module_utils files, other top-level packages) imported by one file."""
    utils, packages = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PACKAGE:
                utils |= {alias.name for alias in node.names}
            elif node.module.startswith(PACKAGE + "."):
                utils.add(node.module[len(PACKAGE) + 1:].split(".")[0])
            else:
                packages.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            packages |= {alias.name.split(".")[0] for alias in node.names}
    return utils, packages


def payload(module):
    """Every module_utils file ``module`` reaches, and every outside package those files import."""
    utils, packages = imports_of(ROOT / "library" / f"{module}.py")
    todo, seen = list(utils), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        more, outside = imports_of(UTILS / f"{name}.py")
        todo += more
        packages |= outside
    return seen, packages


@pytest.mark.parametrize(("module", "absent_utils", "absent_packages"), [
    ("pg_index", {"changefile", "preflight", "status", "gate"}, {"yaml"}),
    ("pg_index_status", {"changefile", "fragments", "spec", "compare", "plan"}, {"pglast", "yaml"}),
])
def test_a_module_carries_only_the_code_it_needs(module, absent_utils, absent_packages):
    utils, packages = payload(module)
    assert utils, f"{module} imports no module_utils at all: the reader above is broken"
    assert not utils & absent_utils, sorted(utils & absent_utils)
    assert not packages & absent_packages, sorted(packages & absent_packages)


def test_the_reader_sees_a_module_that_does_need_pglast():
    """The check above could pass by reading nothing: pg_index does reach pglast, through fragments."""
    utils, packages = payload("pg_index")
    assert {"fragments", "plan", "session"} <= utils and "pglast" in packages
