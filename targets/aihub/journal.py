"""Where AI Hub job ids are kept the moment they exist, so that a run that dies (or times
out waiting) picks its jobs up again instead of resubmitting them.

A small JSON file of ``{cell key: {stage: id}}``. The results store (issue 5) will take this
over; it only needs :meth:`JobJournal.get` and :meth:`JobJournal.put`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.locks import file_lock


def default_cache_dir() -> Path:
    return Path(os.environ.get("VITBENCH_CACHE") or Path.home() / ".cache" / "vitbench")


class JobJournal:
    """Job (and uploaded model) ids by cell key and stage, written through to ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        # every process sharing the file (shards, two runs) re-reads and writes it under one
        # lock, so no job id another one recorded is lost
        self._lock_path = self.path.with_name(f".{self.path.name}.lock")

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError):
            return {}  # a torn file from another era: start again rather than fail the run
        return data if isinstance(data, dict) else {}

    def get(self, key: str, stage: str) -> str | None:
        return self._read().get(key, {}).get(stage)  # the file is replaced whole: no lock

    def put(self, key: str, stage: str, value: str) -> None:
        """Record ``value`` now (atomically: a kill mid-write leaves the old file)."""
        self._update(key, stage, value)

    def drop(self, key: str, stage: str) -> None:
        self._update(key, stage, None)

    def _update(self, key: str, stage: str, value: str | None) -> None:
        with file_lock(self._lock_path):
            data = self._read()  # re-read: another process may have added its own cells
            entry = data.setdefault(key, {})
            if value is None:
                entry.pop(stage, None)
            else:
                entry[stage] = value
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)
