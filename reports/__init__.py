"""Stored results -> tables, pages, plots and trends.

``Report.collect(store, run_id)`` reads one run once (``reports.results``: its cells as a
pandas frame, raw samples, the gate verdict, the history of its plan) and
``Report.render(fmt)`` writes Markdown, HTML, CSV or JSON through the renderer of that format.
``reports.frame`` holds the pandas tables, ``reports.text`` how values are written,
``reports.trends`` the change detection, ``reports.svg`` the plots.
"""

from reports.report import FORMATS, Report, ReportWriter, render_report, write_reports

__all__ = ["FORMATS", "Report", "ReportWriter", "render_report", "write_reports"]
