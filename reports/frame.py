"""Stored results as pandas tables: one row per cell of a run, per run of a plan, per cell of
a plan's history.

Everything a report shows comes from these frames, so the Markdown table, the HTML page, the
CSV and the JSON agree. Columns are plain numbers with the unit in the name (``p90_ms``,
``peak_memory_mb``); missing numbers are NaN, never a made-up zero.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from harness.gate import GateResult, cell_parity
from harness.store import Store, StoreError
from reports.stored_run import StoredRun

# metric name in the store -> column in the frame
METRIC_COLUMNS = {
    "latency_p50_ms": "p50_ms",
    "latency_p90_ms": "p90_ms",
    "latency_p99_ms": "p99_ms",
    "latency_mean_ms": "mean_ms",
    "latency_std_ms": "std_ms",
    "latency_cv": "cv",
    "latency_p50_ci_low_ms": "p50_ci_low_ms",
    "latency_p50_ci_high_ms": "p50_ci_high_ms",
    "latency_p90_ci_low_ms": "p90_ci_low_ms",
    "latency_p90_ci_high_ms": "p90_ci_high_ms",
    "latency_drift": "drift",
    "latency_outliers": "outliers",
    "iterations": "iterations",
    "rounds": "rounds",
    "latency_between_round_cv": "between_round_cv",
    "latency_within_round_cv": "within_round_cv",
    "latency_round_share": "round_share",
    "load_cold_ms": "load_cold_ms",
    "load_warm_ms": "load_warm_ms",
    "first_inference_ms": "first_inference_ms",
    "peak_memory_mb": "peak_memory_mb",
    "planned_memory_mb": "planned_memory_mb",
    "compute_share_npu": "share_npu",
    "compute_share_gpu": "share_gpu",
    "compute_share_cpu": "share_cpu",
    "cpu_fallback": "cpu_fallback",
    "parity_max_abs": "parity_max_abs",
    "parity_cosine": "parity_cosine",
    "parity_top1": "parity_top1",
    "accuracy": "accuracy",
    "accuracy_ci_low": "accuracy_ci_low",
    "accuracy_ci_high": "accuracy_ci_high",
    "accuracy_reference": "accuracy_reference",
    # a binary task's operating point; retention on the target (accuracy_*) and of the
    # teacher (compression_*), each with its paired interval (harness.retention)
    "decision_threshold": "decision_threshold",
    "sensitivity": "sensitivity",
    "sensitivity_ci_low": "sensitivity_ci_low",
    "sensitivity_ci_high": "sensitivity_ci_high",
    "specificity": "specificity",
    "specificity_ci_low": "specificity_ci_low",
    "specificity_ci_high": "specificity_ci_high",
    "ppv": "ppv",
    "ppv_ci_low": "ppv_ci_low",
    "ppv_ci_high": "ppv_ci_high",
    "npv": "npv",
    "npv_ci_low": "npv_ci_low",
    "npv_ci_high": "npv_ci_high",
    "accuracy_retention": "accuracy_retention",
    "accuracy_retention_ci_low": "accuracy_retention_ci_low",
    "accuracy_retention_ci_high": "accuracy_retention_ci_high",
    "accuracy_sensitivity_retention": "accuracy_sensitivity_retention",
    "accuracy_sensitivity_retention_ci_low": "accuracy_sensitivity_retention_ci_low",
    "accuracy_sensitivity_retention_ci_high": "accuracy_sensitivity_retention_ci_high",
    "accuracy_specificity_retention": "accuracy_specificity_retention",
    "accuracy_specificity_retention_ci_low": "accuracy_specificity_retention_ci_low",
    "accuracy_specificity_retention_ci_high": "accuracy_specificity_retention_ci_high",
    "compression_retention": "compression_retention",
    "compression_retention_ci_low": "compression_retention_ci_low",
    "compression_retention_ci_high": "compression_retention_ci_high",
    "compression_sensitivity_retention": "compression_sensitivity_retention",
    "compression_sensitivity_retention_ci_low": "compression_sensitivity_retention_ci_low",
    "compression_sensitivity_retention_ci_high": "compression_sensitivity_retention_ci_high",
    "compression_specificity_retention": "compression_specificity_retention",
    "compression_specificity_retention_ci_low": "compression_specificity_retention_ci_low",
    "compression_specificity_retention_ci_high": "compression_specificity_retention_ci_high",
    "compression_reference": "compression_reference",
}
SHARE_COLUMNS = ("share_npu", "share_gpu", "share_cpu")
IDENTITY_COLUMNS = [
    "run_id",
    "cell_id",
    "cell_key",
    "model",
    "model_hash",
    "export",
    "precision",
    "target",
    "device",
    "chipset",
    "os",
    "runtime",
    "compute_unit",
    "compute_unit_asked",
    "artifact_sha256",
    "status",
    "failure_kind",
    "failure_reason",
    "attempts",
]
# the stored parity judgement (harness.gate.cell_parity): passed / failed, and what failed
PARITY_COLUMNS = ["parity_status", "parity_failures"]
CELL_FRAME_COLUMNS = (
    IDENTITY_COLUMNS
    + list(METRIC_COLUMNS.values())
    + PARITY_COLUMNS
    + ["accuracy_metric", "warnings"]
)
RUN_FRAME_COLUMNS = (
    IDENTITY_COLUMNS
    + list(METRIC_COLUMNS.values())
    + PARITY_COLUMNS
    + ["accuracy_metric", "verdict", "verdict_reasons", "warnings"]
)


def _metric_table(metric_rows: list[dict[str, Any]]) -> dict[int, dict[str, tuple[float, str]]]:
    out: dict[int, dict[str, tuple[float, str]]] = {}
    for m in metric_rows:
        out.setdefault(int(m["cell_id"]), {})[m["name"]] = (float(m["value"]), m["unit"])
    return out


def _cell_row(c: dict[str, Any], m: dict[str, tuple[float, str]]) -> dict[str, Any]:
    spec = c.get("export_spec") or {}
    details = c.get("details") or {}
    row: dict[str, Any] = {
        "run_id": c["run_id"],
        "cell_id": int(c["id"]),
        "cell_key": c["cell_key"],
        "model": c["model_name"],
        "model_hash": c["model_hash"],
        "export": c["export_label"],
        "precision": spec.get("precision") or "",
        "target": c["target"],
        "device": c["device_name"],
        "chipset": c["device_chipset"],
        "os": c["device_os"],
        "runtime": c["runtime"] or "",
        "compute_unit": c["compute_unit"] or "",
        "compute_unit_asked": details.get("compute_unit_asked") or "",
        "artifact_sha256": c["artifact_sha256"] or "",
        "status": c["status"],
        "failure_kind": c["failure_kind"] or "",
        "failure_reason": c["failure_reason"] or "",
        "attempts": int(c["attempts"]),
    }
    for name, col in METRIC_COLUMNS.items():
        row[col] = m[name][0] if name in m else math.nan
    if c["status"] == "done" and "rounds" not in m:  # stored before rounds: one round
        row["rounds"], row["within_round_cv"] = 1.0, row["cv"]
    # the judgement made when the cell was measured, never a re-check here
    parity = cell_parity(c, {name: value for name, (value, _) in m.items()})
    row["parity_status"] = parity.status if parity else ""
    row["parity_failures"] = ("; ".join(parity.failures) or parity.reason) if parity else ""
    row["accuracy_metric"] = m["accuracy"][1] if "accuracy" in m else ""
    ref = row["accuracy_reference"]
    if "accuracy_retention" not in m:  # stored before retention was: the plain ratio
        kept = row["accuracy"] / ref if ref and ref == ref and ref > 0 else math.nan
        row["accuracy_retention"] = kept
    row["warnings"] = "; ".join(str(w) for w in details.get("warnings") or [])
    return row


def rows_frame(cell_rows: list[dict[str, Any]], metric_rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Stored cells with their metrics as columns (no verdicts), from rows already read."""
    metrics = _metric_table(metric_rows)
    rows = [_cell_row(c, metrics.get(int(c["id"]), {})) for c in cell_rows]
    return pd.DataFrame(rows, columns=CELL_FRAME_COLUMNS)


def cells_frame(store: Store, run_ids: list[str]) -> pd.DataFrame:
    """Every cell of ``run_ids`` with its metrics as columns (no verdicts): two reads."""
    cells = store.cells(run_ids)
    metrics = store.metrics([int(c["id"]) for c in cells]) if cells else []
    return rows_frame(cells, metrics)


def run_table(stored: StoredRun, gate: GateResult | None) -> pd.DataFrame:
    """One row per cell of the run (model x export x target x device): latency percentiles
    and the p90 interval, load times, first inference, peak memory, compute unit and shares,
    parity with its stored judgement, accuracy with its reference and retention, status and
    failure, and the gate's verdict on the cell (empty when ``gate`` is None)."""
    frame = rows_frame(stored.cell_rows, stored.metric_rows)
    by_cell = (
        {int(c.cell_id): (c.verdict, "; ".join(c.reasons)) for c in gate.cells} if gate else {}
    )
    frame["verdict"] = [by_cell.get(int(c), ("", ""))[0] for c in frame["cell_id"]]
    frame["verdict_reasons"] = [by_cell.get(int(c), ("", ""))[1] for c in frame["cell_id"]]
    frame = frame[RUN_FRAME_COLUMNS]
    order = ["model", "export", "target", "device"]
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


def run_frame(store: Store, run_id: str) -> pd.DataFrame:
    """:func:`run_table` of ``run_id``, judged by the gate with the run's budgets."""
    stored = StoredRun.load(store, run_id)
    return run_table(stored, stored.gate_result()[0])


def plan_runs(
    store: Store, plan_name: str, until: float | None = None, last_n: int = 30
) -> list[dict[str, Any]]:
    """The last ``last_n`` runs of a plan (started no later than ``until``), oldest first."""
    runs = store.runs(plan_name=plan_name, limit=10_000)
    if until is not None:
        runs = [r for r in runs if r["started_at"] <= until]
    runs = sorted(runs, key=lambda r: (r["started_at"], r["id"]))
    return runs[-last_n:] if last_n > 0 else []


def history_frame(
    store: Store,
    plan_name: str,
    last_n: int = 30,
    until_run: str | None = None,
    current: StoredRun | None = None,
) -> pd.DataFrame:
    """Cells of the last ``last_n`` runs of a plan, one row per (run, cell), with the run's
    start time, commit and position (``run_index``, 0 = oldest), oldest run first. Only cells
    that finished are kept: a failed night is a gap in a trend, not a zero.

    ``current``, a run already read, ends the window (instead of ``until_run``) and its rows
    are used as they are: only the earlier runs are read."""
    if current is not None:
        until: float | None = current.run["started_at"]
    else:
        until = store.run(until_run)["started_at"] if until_run else None
    runs = plan_runs(store, plan_name, until, last_n)
    if not runs:
        raise StoreError(f"no runs of plan {plan_name!r} in the store; `vitbench runs` lists them")
    have = current.run_id if current is not None else None
    others = [r["id"] for r in runs if r["id"] != have]
    cells = store.cells(others) if others else []
    metrics = store.metrics([int(c["id"]) for c in cells]) if cells else []
    if have is not None and any(r["id"] == have for r in runs):
        cells, metrics = cells + current.cell_rows, metrics + current.metric_rows
    frame = rows_frame(cells, metrics)
    info = pd.DataFrame(
        {
            "run_id": [r["id"] for r in runs],
            "run_index": range(len(runs)),
            "started_at": [r["started_at"] for r in runs],
            "git_commit": [r["git_commit"] for r in runs],
        }
    )
    frame = frame[frame["status"] == "done"].merge(info, on="run_id", how="left")
    return frame.sort_values(["run_index", "cell_key"], kind="stable").reset_index(drop=True)


def runs_frame(store: Store, plan_name: str | None = None, limit: int = 50) -> pd.DataFrame:
    """The runs in the store, newest first: id, plan, commit, started, status, and how many
    cells are done, failed and planned."""
    runs = store.runs(plan_name=plan_name, limit=limit)
    counts: dict[str, dict[str, int]] = {r["id"]: {"done": 0, "failed": 0} for r in runs}
    for c in store.cells([r["id"] for r in runs]):
        if c["status"] in ("done", "failed"):
            counts[c["run_id"]][c["status"]] += 1
    rows = [
        {
            "id": r["id"],
            "plan": r["plan_name"],
            "commit": r["git_commit"],
            "started_at": pd.Timestamp(r["started_at"], unit="s", tz="UTC").strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "status": r["status"],
            "cells_done": counts[r["id"]]["done"],
            "cells_failed": counts[r["id"]]["failed"],
            "cells_total": int(r["total_cells"]),
        }
        for r in runs
    ]
    return pd.DataFrame(
        rows,
        columns=[
            "id",
            "plan",
            "commit",
            "started_at",
            "status",
            "cells_done",
            "cells_failed",
            "cells_total",
        ],
    )
