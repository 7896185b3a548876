"""Advisory file locks (fcntl) for what several vitbench processes share on one machine: the
export cache, the AI Hub job journal and uploads. Each holder opens the lock file itself, and
flock treats separate opens independently, so threads of one process exclude each other too."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created with its folder) for the duration of the block,
    against other processes and other threads of this one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock; renames keep files whole
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
