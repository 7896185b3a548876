"""The report as data: CSV (the cell table as it is) and JSON (run, gate, cells, changes)."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from reports.results import RunResults

RUN_FIELDS = (
    "id",
    "plan_name",
    "plan_hash",
    "git_commit",
    "started_at",
    "finished_at",
    "status",
    "total_cells",
    "environment",
    "tool_versions",
)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts with None (JSON null) for missing numbers."""
    out = []
    for row in frame.to_dict(orient="records"):
        clean = {}
        for k, v in row.items():
            if isinstance(v, float) and math.isnan(v):
                v = None
            elif hasattr(v, "item"):  # numpy scalars
                v = v.item()
            clean[k] = v
        out.append(clean)
    return out


def render_csv(report: RunResults) -> str:
    return report.cells.to_csv(index=False, lineterminator="\n")


def render_json(report: RunResults) -> str:
    doc = {
        "run": {k: report.run.get(k) for k in RUN_FIELDS},
        "gate": {"verdict": report.verdict, "note": report.gate_note or None},
        "cells": records(report.cells),
        "history": report.history.to_dict() if report.history else None,
    }
    return json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"
