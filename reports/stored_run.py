"""One run as read from the store, once: its run row, its cells and their metrics. Every table,
the gate verdict and the history of a report are made from these rows; nothing reads the
run again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError
from harness.gate import GateResult, judge_run
from harness.store import Store


@dataclass(frozen=True)
class StoredRun:
    run: dict[str, Any]
    cell_rows: list[dict[str, Any]]  # Store.cells
    metric_rows: list[dict[str, Any]]  # Store.metrics of those cells

    @property
    def run_id(self) -> str:
        return str(self.run["id"])

    @classmethod
    def load(cls, store: Store, run_id: str | None = None) -> StoredRun:
        """``run_id`` (default: the latest run) in three reads: run, cells, metrics."""
        run = store.run(run_id) if run_id else store.latest_run()
        cells = store.cells([run["id"]])
        metrics = store.metrics([int(c["id"]) for c in cells]) if cells else []
        return cls(run=run, cell_rows=cells, metric_rows=metrics)

    def done_cell_ids(self) -> list[int]:
        return [int(c["id"]) for c in self.cell_rows if c["status"] == "done"]

    def gate_result(self) -> tuple[GateResult | None, str]:
        """The release gate's verdicts with the run's own budgets (harness.gate.judge_run on
        these rows), or None and why the gate could not judge the run."""
        try:
            return judge_run(_RowReader(self), self.run_id), ""
        except UserError as exc:
            return None, f"the gate could not judge this run: {exc}"


class _RowReader:
    """The store's read calls for one run (``run``, ``cells``, ``metrics``) answered from rows
    already read, so that harness.gate judges the run without reading it again."""

    def __init__(self, stored: StoredRun):
        self._stored = stored

    def run(self, run_id: str) -> dict[str, Any]:
        if run_id != self._stored.run_id:
            raise KeyError(f"rows of run {self._stored.run_id!r}, not {run_id!r}")
        return self._stored.run

    def cells(self, run_ids: Sequence[str]) -> list[dict[str, Any]]:
        return [c for c in self._stored.cell_rows if c["run_id"] in run_ids]

    def metrics(self, cell_ids: Sequence[int]) -> list[dict[str, Any]]:
        wanted = {int(c) for c in cell_ids}
        return [m for m in self._stored.metric_rows if int(m["cell_id"]) in wanted]
