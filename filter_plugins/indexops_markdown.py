# Copyright: indexops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that put text from change files and from the database into the Markdown reports as text.

Owners, reasons, operators, override reasons, errors, definitions and the queries of blocking
sessions come from people and from the database: a ``|`` or a newline would end a table cell or
row, a backtick would end a code span, and ``*``, ``[``, ``<`` or a leading ``#`` would turn into
formatting, links or HTML. Every such value goes through one of these filters:

- ``indexops_md_text``: one line of plain text; every character Markdown could read as structure
  or formatting is backslash-escaped, so it renders exactly as written (in table cells too).
- ``indexops_md_code``: one line as an inline code span whose fence is longer than any run of
  backticks inside it; ``table=true`` also escapes ``|`` (GitHub-flavoured tables split on it even
  inside code spans, and accept ``\\|`` there).
- ``indexops_md_fence``: the backtick fence for a fenced code block holding the given lines: longer
  than any backtick run inside them, so a statement cannot close the block early.
"""

from __future__ import annotations

import re

# CommonMark backslash-escapes any ASCII punctuation; these are the characters that can start or end
# formatting, links, HTML, tables or entities ('_' is judged by _escaped).
TEXT_SPECIALS = "\\`*[]<>|~#&!"
# A line that starts like a list item, a block quote, a heading underline or an ordered list item.
BLOCK_START = re.compile(r"^(\s*)([-+=>]|\d+[.)])")
BACKTICKS = re.compile(r"`+")


def _one_line(value, none=""):
    return " ".join(str(none if value is None else value).split())


def _escaped(text, at):
    """Whether text[at] needs a backslash. An underscore inside a word (index_name) cannot start or end
    emphasis, so it stays as it is and names stay readable; everywhere else it is escaped."""
    char = text[at]
    if char == "_":
        inside_word = 0 < at < len(text) - 1 and text[at - 1].isalnum() and text[at + 1].isalnum()
        return not inside_word
    return char in TEXT_SPECIALS


def indexops_md_text(value, none=""):
    """``value`` as one line of Markdown text that renders as written (``none`` stands for None)."""
    line = _one_line(value, none)
    text = "".join("\\" + char if _escaped(line, at) else char for at, char in enumerate(line))
    # The escape goes before the punctuation: "\\- item", "1\\. item" (a backslash before a digit is literal).
    return BLOCK_START.sub(lambda match: match.group(1) + match.group(2)[:-1] + "\\" + match.group(2)[-1], text,
                           count=1)


def _longest_backtick_run(text):
    return max((len(run) for run in BACKTICKS.findall(text)), default=0)


def indexops_md_code(value, table=False):
    """``value`` as one inline code span that no backtick inside it can close."""
    text = _one_line(value)
    fence = "`" * (_longest_backtick_run(text) + 1)
    if text.startswith("`") or text.endswith("`"):
        text = f" {text} "  # CommonMark strips one space on each side, so the fence stays apart
    if table:
        text = text.replace("|", "\\|")
    return f"{fence}{text}{fence}"


def indexops_md_fence(lines):
    """A fence for a fenced code block around ``lines`` (a string or a list of strings)."""
    text = lines if isinstance(lines, str) else "\n".join(str(line) for line in lines or [])
    return "`" * max(3, _longest_backtick_run(text) + 1)


class FilterModule:
    """indexops Markdown filters."""

    def filters(self):
        return {
            "indexops_md_text": indexops_md_text,
            "indexops_md_code": indexops_md_code,
            "indexops_md_fence": indexops_md_fence,
        }
