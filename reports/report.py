"""A report: one run's table, its raw samples where a page plots them, and the history of its
plan, collected once from the store and rendered in any format.

    from harness.store import open_store
    from reports import Report
    report = Report.collect(open_store("vitbench-results.db"))   # the latest run
    report.cells                      # pandas, one row per cell
    report.history.latest_changes()   # what got slower or faster in this run
    open("report.html", "w").write(report.render("html"))
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import UserError
from harness.store import Store
from reports.frame import run_frame
from reports.trends import History, detect_changes

FORMATS = ("md", "html", "csv", "json")
HISTORY_RUNS = 30


@dataclass
class Report:
    run: dict[str, Any]
    cells: pd.DataFrame  # reports.frame.run_frame
    samples: dict[int, list[float]]  # raw latencies of finished cells (empty unless asked for)
    history: History | None  # None when the plan has no earlier run in the window

    @property
    def run_id(self) -> str:
        return str(self.run["id"])

    @property
    def gate(self) -> str | None:
        return self.cells.attrs.get("gate")

    @classmethod
    def collect(cls, store: Store, run_id: str | None = None, history_runs: int = HISTORY_RUNS,
                samples: bool = True) -> Report:
        """Everything a report shows about ``run_id`` (default: the latest run), with trends
        over up to ``history_runs`` runs of its plan (0: none)."""
        run = store.run(run_id) if run_id else store.latest_run()
        cells = run_frame(store, run["id"])
        done = [int(c) for c, s in zip(cells["cell_id"], cells["status"], strict=True) if s == "done"]
        raw = store.samples(done) if samples and done else {}
        history = None
        if history_runs > 1:
            found = detect_changes(store, run["id"], last_n=history_runs)
            history = found if len(found.run_ids) > 1 else None
        return cls(run=run, cells=cells, samples=raw, history=history)

    def render(self, fmt: str) -> str:
        check_format(fmt)
        if fmt == "md":
            from reports.markdown import render_markdown

            return render_markdown(self)
        if fmt == "html":
            from reports.html import render_html

            return render_html(self)
        from reports.data import render_csv, render_json

        return render_csv(self) if fmt == "csv" else render_json(self)


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"unknown report format {fmt!r}; use one of: {', '.join(FORMATS)}")


def render_report(store: Store, run_id: str | None = None, fmt: str = "md",
                  history_runs: int = HISTORY_RUNS) -> str:
    """The report of ``run_id`` (default: the latest run) as text in ``fmt``."""
    check_format(fmt)
    return Report.collect(store, run_id, history_runs, samples=fmt == "html").render(fmt)


def write_reports(store: Store, run_id: str, out_dir: str | Path, history_runs: int = HISTORY_RUNS,
                  formats: tuple[str, ...] = ("md", "html")) -> list[Path]:
    """Write the run's reports as ``OUT_DIR/RUN_ID.md`` and ``.html`` (what `vitbench run`
    leaves behind); returns their paths."""
    for fmt in formats:
        check_format(fmt)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report.collect(store, run_id, history_runs, samples="html" in formats)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", report.run_id)
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        path.write_text(report.render(fmt), encoding="utf-8")
        paths.append(path)
    return paths
