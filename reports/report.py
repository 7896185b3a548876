"""A report: a run's results (reports/results.py) rendered in one of the formats, and the
report writer ``vitbench run`` calls once a run is stored.

    from harness.store import open_store
    from reports import Report
    report = Report.collect(open_store("vitbench-results.db"))   # the latest run
    open("report.html", "w").write(report.render("html"))
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from harness.errors import UserError
from harness.reporting import Reporter
from harness.store import Store
from reports.data import render_csv, render_json
from reports.html import render_html
from reports.markdown import render_markdown
from reports.results import HISTORY_RUNS, RunResults

RENDERERS: dict[str, Callable[[RunResults], str]] = {
    "md": render_markdown,
    "html": render_html,
    "csv": render_csv,
    "json": render_json,
}
FORMATS = tuple(RENDERERS)
SAMPLE_FORMATS = ("html",)  # the formats that plot raw samples


def check_format(fmt: str) -> None:
    if fmt not in RENDERERS:
        raise UserError(f"unknown report format {fmt!r}; use one of: {', '.join(FORMATS)}")


class Report(RunResults):
    """A run's results with the renderers at hand."""

    def render(self, fmt: str) -> str:
        check_format(fmt)
        return RENDERERS[fmt](self)


def render_report(
    store: Store, run_id: str | None = None, fmt: str = "md", history_runs: int = HISTORY_RUNS
) -> str:
    """The report of ``run_id`` (default: the latest run) as text in ``fmt``."""
    check_format(fmt)
    return Report.collect(store, run_id, history_runs, samples=fmt in SAMPLE_FORMATS).render(fmt)


def write_reports(
    store: Store,
    run_id: str,
    out_dir: str | Path,
    history_runs: int = HISTORY_RUNS,
    formats: tuple[str, ...] = ("md", "html"),
) -> list[Path]:
    """Write the run's reports as ``OUT_DIR/RUN_ID.md`` and ``.html`` (what `vitbench run`
    leaves behind) from one reading of the run; returns their paths."""
    for fmt in formats:
        check_format(fmt)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wants_samples = any(fmt in SAMPLE_FORMATS for fmt in formats)
    report = Report.collect(store, run_id, history_runs, samples=wants_samples)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", report.run_id)
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        path.write_text(report.render(fmt), encoding="utf-8")
        paths.append(path)
    return paths


class ReportWriter(Reporter):
    """The built-in report writer (entry point ``vitbench.reporters: reports``): what
    ``vitbench run`` leaves behind, Markdown and HTML."""

    name = "reports"

    def write(self, store: Store, run_id: str, out_dir: str | Path) -> list[Path]:
        return write_reports(store, run_id, out_dir)
