"""Run library/pg_index.py in-process, exactly as Ansible would, and return its JSON result.

The module's argument spec, check mode and diff mode all apply; only the transport differs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path

from ansible.module_utils import _internal
from ansible.module_utils.common import warnings as module_warnings
from ansible.module_utils.testing import patch_module_args

LIBRARY = Path(__file__).resolve().parent.parent / "library"


def load_module(name):
    spec = importlib.util.spec_from_file_location(f"indexops_library_{name}", LIBRARY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def as_target_process():
    """Make this process look like a target host's module process, as Ansible runs modules.

    Importing controller code (a filter plugin's test does) flips ansible's private
    ``is_controller`` flag, after which module.warn() prints instead of returning ``warnings``;
    warnings of earlier in-process runs would also leak into this one. Both are reset here.
    """
    saved = _internal.is_controller
    _internal.is_controller = False
    module_warnings._global_warnings.clear()
    module_warnings._global_deprecations.clear()
    try:
        yield
    finally:
        _internal.is_controller = saved


def run_module(name, args, *, check_mode=False, diff=False):
    """Call ``main()`` of library/<name>.py with ``args``; returns the result dict.

    A failed run returns ``failed: true`` and ``msg`` like Ansible shows it, instead of raising.
    """
    module = load_module(name)
    payload = {**args, "_ansible_check_mode": check_mode, "_ansible_diff": diff}
    out = io.StringIO()
    with as_target_process(), patch_module_args(payload), contextlib.redirect_stdout(out):
        try:
            module.main()
        except SystemExit:
            pass
    return json.loads(out.getvalue())


def run_pg_index(db, check_mode=False, diff=False, **args):
    """pg_index against the test database ``db`` (the conftest fixture)."""
    return run_module("pg_index", {**db.params, **args}, check_mode=check_mode, diff=diff)
