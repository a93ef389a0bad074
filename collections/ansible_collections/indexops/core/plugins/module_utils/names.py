"""Names: the checks every identifier from the operator passes, and the names indexops gives its own
objects. Plain Python (no pglast), so the read-only modules can use it without the parser."""

from __future__ import annotations

import hashlib
import re

from ansible_collections.indexops.core.plugins.module_utils.errors import input_error

NAMEDATALEN = 63  # bytes: PostgreSQL silently truncates longer identifiers
IDENTIFIER_FORBIDDEN = re.compile(r'["\';\\\x00-\x1f\x7f]|--|/\*|\*/')
REPLACEMENT_SUFFIX = "_indexops_new"


def check_identifier(value, what):
    """A name is at most 63 bytes and free of quotes, separators and comment markers."""
    expected = (f"{what}: 1 to {NAMEDATALEN} bytes, no quotes, semicolons, backslashes, comment markers "
                "or control characters")
    if not isinstance(value, str) or not value:
        raise input_error(f"{what} is empty", expected)
    size = len(value.encode("utf-8"))
    if size > NAMEDATALEN:
        raise input_error(f"{what} {value!r} is {size} bytes long", expected)
    if IDENTIFIER_FORBIDDEN.search(value):
        raise input_error(f"{what} {value!r} contains characters that are not allowed", expected)
    return value


def check_qualified_name(value, what):
    """An object name that may carry a schema: 'name' or 'schema.name'."""
    if not isinstance(value, str):
        raise input_error(f"{what} must be a string", f"{what} as 'name' or 'schema.name'")
    parts = value.split(".")
    if len(parts) > 2:
        raise input_error(f"{what} {value!r} has more than one dot", f"{what} as 'name' or 'schema.name'")
    return tuple(check_identifier(part, what) for part in parts)


def replacement_name(name):
    """The temporary name of the replacement index a replace builds, cut to fit in 63 bytes."""
    room = NAMEDATALEN - len(REPLACEMENT_SUFFIX)
    return name.encode("utf-8")[:room].decode("utf-8", "ignore") + REPLACEMENT_SUFFIX


def partition_index_name(index, partition):
    """The name of index ``index``'s part on partition ``partition`` (a table name): <index>_<partition>,
    or, when that is longer than 63 bytes, as much of it as fits before an underscore and 8 hex digits of
    the md5 of the whole name, so two long names never clip to the same one."""
    full = f"{index}_{partition}"
    if len(full.encode("utf-8")) <= NAMEDATALEN:
        return full
    digest = hashlib.md5(full.encode("utf-8"), usedforsecurity=False).hexdigest()[:8]
    room = NAMEDATALEN - len(digest) - 1
    return full.encode("utf-8")[:room].decode("utf-8", "ignore") + "_" + digest
