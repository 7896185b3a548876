"""The spool: finished cells kept on local disk until the store has committed them.

One append-only JSON-lines file per running shard (``<run>.<i>of<n>.<pid>-<id>.jsonl`` in the
spool folder, ``vitbench-out/spool`` by default). A finished cell is appended and fsynced
before the store sees it; when the store commits it, a ``committed`` line is appended. A
file whose cells are all committed is removed when its shard ends. The file is locked
(flock) while its shard lives, so the next ``vitbench run`` of that run knows a file it can
lock belongs to a shard that is gone and replays the cells it left (every store write is
idempotent, so a cell committed just before a kill is only written again, never doubled).
A torn last line (a kill in the middle of a write) is skipped: that cell was not finished.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from harness.store.database import CellOutcome, CellRecord


@dataclass(frozen=True)
class SpooledCell:
    entry: str
    run_id: str
    record: CellRecord
    outcome: CellOutcome


def _safe(run_id: str) -> str:
    """A file-name part for a run id (any text a user gives --run-id)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)[:120] or "run"


class Spool:
    """The spool file of one running shard (created on first use)."""

    def __init__(self, folder: str | Path, run_id: str, shard: tuple[int, int] = (1, 1)):
        self.folder = Path(folder)
        self.run_id = run_id
        i, n = shard
        self.path = (
            self.folder / f"{_safe(run_id)}.{i}of{n}.{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        )
        self._file: IO[str] | None = None
        self._pending: dict[str, SpooledCell] = {}
        self._lock = threading.Lock()  # cells of several targets finish at once

    def _open(self) -> IO[str]:
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the shard's life
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        return self._file

    def _append(self, obj: dict[str, Any]) -> None:
        with self._lock:
            _append_line(self._open(), obj)

    def add(self, run_id: str, record: CellRecord, outcome: CellOutcome) -> SpooledCell:
        """Keep a finished cell on disk (fsynced) before anything else sees it."""
        cell = SpooledCell(uuid.uuid4().hex, run_id, record, outcome)
        self._append(
            {
                "put": cell.entry,
                "run_id": run_id,
                "record": asdict(record),
                "outcome": outcome.to_dict(),
            }
        )
        self._pending[cell.entry] = cell
        return cell

    def committed(self, cell: SpooledCell) -> None:
        """The store has committed ``cell``: it may leave the spool. (If the mark cannot be
        written, a replay writes the cell once more: the store keeps it once.)"""
        with self._lock:
            self._pending.pop(cell.entry, None)
        try:
            self._append({"committed": cell.entry})
        except OSError:
            pass

    def pending(self) -> list[SpooledCell]:
        with self._lock:
            return list(self._pending.values())

    def close(self) -> None:
        """End of the shard: the file goes if nothing in it waits for the store."""
        if self._file is None:
            return
        if not self._pending:
            self.path.unlink(missing_ok=True)
        self._file.close()  # releases the lock
        self._file = None
        _remove_if_empty(self.folder)


def _append_line(handle: IO[str], obj: dict[str, Any]) -> None:
    """One JSON line, on disk (fsynced) before this returns."""
    handle.write(json.dumps(obj, default=str) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def read_spool(path: Path) -> list[SpooledCell]:
    """The cells of a spool file not marked committed, oldest first."""
    puts: dict[str, SpooledCell] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                obj = json.loads(line)
                if "committed" in obj:
                    puts.pop(obj["committed"], None)
                    continue
                puts[obj["put"]] = SpooledCell(
                    obj["put"],
                    obj["run_id"],
                    CellRecord(**obj["record"]),
                    CellOutcome.from_dict(obj["outcome"]),
                )
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line: that cell never finished writing
    return list(puts.values())


class Orphan:
    """A spool file of a shard that is gone, locked by us while we replay it."""

    def __init__(self, path: Path, handle: IO[str]):
        self.path, self._handle = path, handle
        self.cells = read_spool(path)

    def committed(self, cell: SpooledCell) -> None:
        _append_line(self._handle, {"committed": cell.entry})
        self.cells = [c for c in self.cells if c.entry != cell.entry]

    def close(self) -> None:
        """Release it; once all its cells are in the store, it goes, and with it the local
        copy its shard's reports were written from (``<file>.db``)."""
        if not self.cells:
            for stale in (self.path, *self.path.parent.glob(f"{self.path.stem}.db*")):
                stale.unlink(missing_ok=True)
        self._handle.close()


def orphans(folder: str | Path, run_id: str) -> list[Orphan]:
    """The spool files of ``run_id`` whose shard is gone (their lock is free), each locked
    for the caller; files of shards still running are left alone."""
    found: list[Orphan] = []
    folder = Path(folder)
    if not folder.is_dir():
        return found
    name = re.compile(re.escape(_safe(run_id)) + r"\.\d+of\d+\.\d+-[0-9a-f]+\.jsonl")
    for path in sorted(p for p in folder.iterdir() if name.fullmatch(p.name)):
        handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept locked while replayed
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()  # its shard is still running
            continue
        found.append(Orphan(path, handle))
    return found
