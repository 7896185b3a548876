"""Advisory file locks (fcntl) for what several vitbench processes share on one machine: the
export cache, the AI Hub job journal and uploads. A lock also takes a per-process mutex, so
threads of one process are serialised as well (flock is per open file, not per thread)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

_MUTEXES: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


def _mutex(path: Path) -> threading.Lock:
    with _GUARD:
        return _MUTEXES.setdefault(str(path.resolve()), threading.Lock())


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created with its folder) for the duration of the block,
    against other processes and other threads of this one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _mutex(path), open(path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: threads only; renames keep files whole
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
