# indexops stdout callback: the operator's view of a run (ansible.cfg: stdout_callback = indexops).
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt), like the default
# callback it extends.

from __future__ import annotations

DOCUMENTATION = """
    name: indexops
    type: stdout
    short_description: the progress lines, the decisions and the result of an indexops run
    description:
      - The default callback, quieter at verbosity 0. It prints the messages of C(ansible.builtin.debug)
        tasks as plain lines (a list message one line per element), the progress lines of indexops_wait,
        each changed result, each failure once as C(FAILED <host>) followed by its message, and the PLAY RECAP.
      - It hides what tells the operator nothing at verbosity 0 - ok and skipped results, C(included:) lines,
        the banners of tasks and plays that printed nothing, the C([ERROR]) block with a source snippet and
        the JSON of a failed result - and a failure inside a C(block) whose C(rescue) handles it (the
        indexops roles keep such a failure for the report and then fail with a message of their own).
      - A task banner is still printed above the lines of each task that shows something, so the output
        reads as sections; that includes the lines an action plugin prints while it runs (the progress
        lines of indexops_wait), whose banner is printed just before their first line.
      - With C(-v) or more it prints exactly what the default callback prints. C(ANSIBLE_STDOUT_CALLBACK=default)
        selects the default callback itself.
    extends_documentation_fragment:
      - default_callback
      - result_format_callback
    requirements:
      - set as stdout_callback in ansible.cfg (callback_plugins = ./callback_plugins)
"""

import json

from ansible import constants as C
from ansible.playbook.block import Block
from ansible.playbook.task_include import TaskInclude
from ansible.plugins.callback.default import CallbackModule as DefaultCallback

# How much of a crashed module's stderr a failure line carries (the rest is in -v).
STDERR_TAIL_LINES = 5


def _is_rescued(task) -> bool:
    """True when a failure of ``task`` is handled by the rescue section of a block around it."""
    node = task
    while getattr(node, "_parent", None) is not None:
        parent = node._parent
        if isinstance(parent, Block) and parent.rescue:
            if any(getattr(child, "_uuid", None) == node._uuid for child in parent.block):
                return True
        node = parent
    return False


def _lines(value) -> list[str]:
    """A debug message as lines: a list one line per element, a string split at its newlines."""
    if isinstance(value, (list, tuple)):
        return [line for item in value for line in _lines(item)] or [""]
    if isinstance(value, str):
        return value.splitlines() or [""]
    return [json.dumps(value, sort_keys=True, default=str)]


class CallbackModule(DefaultCallback):
    """The default callback; at verbosity 0 it prints only what the operator needs to read."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "indexops"

    def __init__(self):
        super().__init__()
        self._pending_play = None  # a play whose banner waits for the first line printed in it
        self._running_task = None  # the task that runs now (linear strategy), whose banner may be pending
        self._in_show = False
        self._hook_display()

    def _hook_display(self) -> None:
        """Print the running task's banner before any line printed while it runs.

        An action plugin's lines (indexops_wait's progress) are printed by the worker's Display, which
        ansible-playbook forwards to this process's Display singleton while the task runs: the banner
        the default callback would print only with the result must come before them. Only this
        process's Display is hooked (a worker's forwards its lines here).
        """
        display = self._display
        original = display.display

        def display_before_banner(*args, **kwargs):
            if (display._final_q is None and self._running_task is not None and not self._in_show
                    and self._quiet):
                self._show(self._running_task)
            return original(*args, **kwargs)

        display.display = display_before_banner

    # --- quiet or not ---------------------------------------------------------------------------

    @property
    def _quiet(self) -> bool:
        return self._display.verbosity < 1

    def get_option(self, k):
        # Quiet: hide ok and skipped results; the default callback then defers each task banner
        # until the task prints something.
        if k in ("display_ok_hosts", "display_skipped_hosts") and self._quiet:
            return False
        return super().get_option(k)

    def _show(self, task) -> None:
        """Print the pending play banner and ``task``'s banner before its first line."""
        if self._in_show:
            return
        self._in_show = True
        try:
            if self._pending_play is not None:
                play, self._pending_play = self._pending_play, None
                super().v2_playbook_on_play_start(play)
                self._last_task_banner = None
            if task is not None and self._last_task_banner != task._uuid:
                super()._print_task_banner(task)
        finally:
            self._in_show = False

    def _print_task_banner(self, task):
        if not self._quiet:
            return super()._print_task_banner(task)
        self._show(task)  # the play's banner first, if it is still pending
        return None

    # --- plays and tasks --------------------------------------------------------------------------

    def v2_playbook_on_play_start(self, play):
        if not self._quiet:
            return super().v2_playbook_on_play_start(play)
        self._play = play
        self._pending_play = play
        self._running_task = None
        return None

    def v2_playbook_on_task_start(self, task, is_conditional):
        super().v2_playbook_on_task_start(task, is_conditional)
        # Under the free strategies several tasks run at once: no line can be pinned to one of them.
        self._running_task = task if self._last_task_name is not None else None

    def v2_playbook_on_handler_task_start(self, task):
        super().v2_playbook_on_handler_task_start(task)
        self._running_task = task if self._last_task_name is not None else None

    def v2_playbook_on_include(self, included_file):
        if not self._quiet:
            super().v2_playbook_on_include(included_file)

    def v2_playbook_on_no_hosts_matched(self):
        self._show(None)
        super().v2_playbook_on_no_hosts_matched()

    def v2_playbook_on_no_hosts_remaining(self):
        self._show(None)
        super().v2_playbook_on_no_hosts_remaining()

    def v2_playbook_on_stats(self, stats):
        self._pending_play = None
        self._running_task = None
        super().v2_playbook_on_stats(stats)

    # --- results ----------------------------------------------------------------------------------

    def v2_runner_on_ok(self, result):
        if not self._quiet:
            return super().v2_runner_on_ok(result)
        if isinstance(result.task, TaskInclude):
            return None  # an include_role / include_tasks: its tasks speak for themselves
        if result.task.action in C._ACTION_DEBUG and not (result.task.loop and "results" in result.result):
            return self._print_debug(result)
        if result.result.get("changed", False):
            self._show(result.task)
        elif result.result.get("warnings") or result.result.get("deprecations"):
            self._show(result.task)  # the default callback drops a hidden result's warnings
            self._handle_warnings(result.result)
            return None
        return super().v2_runner_on_ok(result)

    def v2_runner_item_on_ok(self, result):
        if self._quiet and result.task.action in C._ACTION_DEBUG:
            return self._print_debug(result)
        if self._quiet and result.result.get("changed", False):
            self._show(result.task)
        return super().v2_runner_item_on_ok(result)

    def _print_debug(self, result):
        """A debug message as plain lines under its task's banner; a ``var`` as the default prints it."""
        self._handle_warnings_and_exception(result)
        if "msg" not in result.result:
            if result.result.get("skipped_reason"):  # debug's own verbosity hid it
                return None
            self._show(result.task)
            self._clean_results(result.result, result.task.action)
            self._display.display(f"ok: [{self.host_label(result)}] => {self._dump_results(result.result)}",
                                  color=C.COLOR_OK)
            return None
        self._show(result.task)
        prefix = "" if result.task.run_once else result.host.get_name() + ": "
        for line in _lines(result.result["msg"]):
            self._display.display(prefix + line)
        return None

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if not self._quiet:
            return super().v2_runner_on_failed(result, ignore_errors)
        if not ignore_errors and _is_rescued(result.task):
            return None  # the rescue keeps it; the role reports it once, in its own words
        self._print_failure(result, "FAILED")
        if ignore_errors:
            self._display.display("...ignoring", color=C.COLOR_SKIP)
        return None

    def v2_runner_item_on_failed(self, result):
        if not self._quiet:
            return super().v2_runner_item_on_failed(result)
        if _is_rescued(result.task) or result.task.ignore_errors:
            return None
        self._print_failure(result, "FAILED", item=self._get_item_label(result.result))
        return None

    def v2_runner_on_unreachable(self, result):
        if not self._quiet:
            return super().v2_runner_on_unreachable(result)
        if not result.task.ignore_unreachable and _is_rescued(result.task):
            return None
        self._print_failure(result, "UNREACHABLE")
        if result.task.ignore_unreachable:
            self._display.display("...ignoring", color=C.COLOR_SKIP)
        return None

    def _print_failure(self, result, word, item=None):
        """``FAILED <host>: <message>`` once, further message lines indented; no JSON, no snippet."""
        self._show(result.task)
        self._handle_warnings(result.result)
        res = result.result
        if res.get("results") and not res.get("msg"):
            return  # a loop: each failed item was printed already
        lines = _lines(res.get("msg") or "failed without a message (run again with -v for the whole result)")
        stderr = (res.get("module_stderr") or res.get("stderr") or "").strip()
        if stderr:
            lines += ["stderr: " + line for line in stderr.splitlines()[-STDERR_TAIL_LINES:]]
        label = self.host_label(result) + (f" (item={item})" if item is not None else "")
        color = C.COLOR_UNREACHABLE if word == "UNREACHABLE" else C.COLOR_ERROR
        stderr_out = self.get_option("display_failed_stderr")
        self._display.display(f"{word} {label}: {lines[0]}", color=color, stderr=stderr_out)
        for line in lines[1:]:
            self._display.display("  " + line, color=color, stderr=stderr_out)
