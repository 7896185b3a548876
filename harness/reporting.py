"""The report-writer contract: what ``vitbench run`` calls once a run is stored, found
through the ``vitbench.reporters`` entry point (the built-in one is ``reports``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from harness.store import Store


class Reporter:
    name: str = ""

    def write(self, store: Store, run_id: str, out_dir: str | Path) -> list[Path]:
        """Write this run's reports into ``out_dir``; the paths written."""
        raise NotImplementedError(f"reporter {self.name!r} writes nothing")
