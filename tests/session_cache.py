"""Work done once per test session and shared by every xdist worker of it.

``SessionCache.once(name, build)`` returns a folder that ``build`` filled: the first process
to ask builds it (into a scratch folder, renamed into place when complete) while the others
wait on a file lock, then all read the same files. A failed build leaves nothing behind, so
the next test that asks builds again and reports the error itself.

The cache lives in the session's base temporary folder: the one pytest gives the run (or, under
xdist, the folder above the workers' own), so it starts empty every run and is removed as pytest
removes old temporary folders.
"""

from __future__ import annotations

import fcntl
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class SessionCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def once(self, name: str, build: Callable[[Path], object]) -> Path:
        """The folder ``name`` (``a/b`` nests), built by ``build(folder)`` on first use."""
        if not _NAME.match(name):
            raise ValueError(f"not a cache name: {name!r}")
        folder = self.root / name
        if folder.is_dir():  # built (folders appear only when complete)
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _locked(folder.with_name(f"{folder.name}.lock")):
            if not folder.is_dir():
                scratch = folder.with_name(f"{folder.name}.partial")
                shutil.rmtree(scratch, ignore_errors=True)
                scratch.mkdir()
                build(scratch)
                scratch.rename(folder)
        return folder


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes, released when the block ends (or they die)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
