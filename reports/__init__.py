"""Stored results -> tables, pages, plots and trends.

``Report.collect(store, run_id)`` gathers one run (its cells as a pandas frame, raw samples,
the history of its plan) and ``Report.render(fmt)`` writes Markdown, HTML, CSV or JSON.
``reports.frame`` holds the pandas tables, ``reports.trends`` the change detection,
``reports.svg`` the plots.
"""

from reports.report import FORMATS, Report, render_report, write_reports

__all__ = ["FORMATS", "Report", "render_report", "write_reports"]
