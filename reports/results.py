"""The results of one run, read from the store once: what every report format shows.

    from harness.store import open_store
    from reports.results import RunResults
    results = RunResults.collect(open_store("vitbench-results.db"))   # the latest run
    results.cells                      # pandas, one row per cell (metrics as columns)
    results.gate.verdict               # the release gate, judged once with the run's budgets
    results.history.latest_changes()   # what got slower or faster in this run

The renderers (reports/markdown.py, html.py, data.py) each take this object; none of them
reads the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.gate import GateResult
from harness.store import Store
from reports.frame import run_table
from reports.stored_run import StoredRun
from reports.trends import History, detect_changes

HISTORY_RUNS = 30


@dataclass(frozen=True)
class RunResults:
    run: dict[str, Any]
    cells: pd.DataFrame  # reports.frame.run_table: one row per cell, with verdicts
    samples: dict[int, list[float]]  # raw latencies of finished cells (empty unless asked for)
    history: History | None  # None when the plan has no earlier run in the window
    gate: GateResult | None  # None when the gate could not judge the run ...
    gate_note: str = ""  # ... and why

    @property
    def run_id(self) -> str:
        return str(self.run["id"])

    @property
    def verdict(self) -> str | None:
        """The run's gate verdict (pass / fail / inconclusive), None without one."""
        return self.gate.verdict if self.gate else None

    @classmethod
    def collect(
        cls,
        store: Store,
        run_id: str | None = None,
        history_runs: int = HISTORY_RUNS,
        samples: bool = True,
    ) -> RunResults:
        """Everything a report shows about ``run_id`` (default: the latest run), with trends
        over up to ``history_runs`` runs of its plan (0: none). The run is read once (run,
        cells, metrics, and its raw samples when ``samples``); the history reads only the
        earlier runs and the samples it still lacks."""
        stored = StoredRun.load(store, run_id)
        gate, note = stored.gate_result()
        done = stored.done_cell_ids()
        raw = store.samples(done) if samples and done else {}
        history = None
        if history_runs > 1:
            found = detect_changes(
                store, stored.run_id, last_n=history_runs, current=stored, samples=raw
            )
            history = found if len(found.run_ids) > 1 else None
        return cls(
            run=stored.run,
            cells=run_table(stored, gate),
            samples=raw,
            history=history,
            gate=gate,
            gate_note=note,
        )
