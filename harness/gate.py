"""The release gate: budgets -> verdicts, from stored results.

Latency is judged on the bootstrap interval of the gated percentile (p90 by default), not on
the point estimate: a cell passes when the whole interval is under its budget, fails when the
whole interval is over it, and is inconclusive when the interval straddles the budget or there
are too few samples; the verdict then says roughly how many more samples would decide it.
Parity must sit within the tolerance of the artifact's precision, accuracy measured on the
target must keep the stated fraction of the PyTorch reference, and (with
``max_cpu_fallback``) no more than that share of the layers may run on the CPU when an
accelerator was asked for.

Exit codes: 0 pass, 1 fail, 3 inconclusive (2 is a usage error).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness.errors import UserError
from harness.parity import ParityResult, from_metrics
from harness.plan import BudgetSettings, DeviceBudget

EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 3}

Budgets = BudgetSettings


@dataclass
class CellVerdict:
    cell_id: int
    cell_key: str
    label: str  # "lite onnx host:host"
    verdict: str  # pass | fail | inconclusive | error
    reasons: list[str] = field(default_factory=list)
    needed_samples: int | None = None  # about this many more samples would decide it
    needed_rounds: int | None = None  # ... or rounds, when rounds differing dominates
    budget_ms: float | None = None


@dataclass
class GateResult:
    run_id: str
    verdict: str
    budgets: BudgetSettings
    cells: list[CellVerdict]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "run_id": self.run_id,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "budgets": asdict(self.budgets),
            "cells": [asdict(c) for c in self.cells],
        }


def parse_device_budgets(items: Sequence[str]) -> dict[str, float]:
    """``DEVICE=MS`` strings (``--device-budget``) -> {device: ms}."""
    out: dict[str, float] = {}
    for item in items:
        dev, _, ms = item.rpartition("=")
        try:
            out[dev] = float(ms)
        except ValueError:
            raise UserError(f"--device-budget {item!r}: expected DEVICE=MS") from None
        if not dev or out[dev] <= 0:
            raise UserError(f"--device-budget {item!r}: expected DEVICE=MS with MS > 0")
    return out


def budgets_from_plan(plan: dict[str, Any] | None) -> BudgetSettings:
    b = dict((plan or {}).get("budgets") or {})
    devices = tuple(DeviceBudget(**d) for d in b.pop("devices", []) or [])
    known = set(BudgetSettings.__dataclass_fields__)
    return BudgetSettings(**{k: v for k, v in b.items() if k in known}, devices=devices)


def with_overrides(
    budgets: BudgetSettings,
    latency_ms: float | None = None,
    percentile: int | None = None,
    accuracy_retention: float | None = None,
    device_budgets: dict[str, float] | None = None,
    known_devices: set[str] | None = None,
    max_cpu_fallback: float | None = None,
    compression_retention: float | None = None,
) -> BudgetSettings:
    """Budgets from flags on top of the plan's. A device budget must name a device the run ran."""
    changes: dict[str, Any] = {}
    if latency_ms is not None:
        changes["latency_ms"] = latency_ms
    if percentile is not None:
        if percentile not in (50, 90):
            raise UserError(
                f"percentile {percentile} cannot be gated; use 50 or 90 (the percentiles with "
                "intervals)"
            )
        changes["percentile"] = percentile
    if accuracy_retention is not None:
        changes["accuracy_retention"] = accuracy_retention
    if compression_retention is not None:
        changes["compression_retention"] = compression_retention
    if max_cpu_fallback is not None:
        changes["max_cpu_fallback"] = max_cpu_fallback
    if device_budgets:
        for dev in device_budgets:
            if known_devices is not None and dev not in known_devices:
                raise UserError(
                    f"budget for device {dev!r}, which this run did not measure; "
                    f"its devices: {', '.join(sorted(known_devices)) or 'none'}"
                )
        extra = tuple(DeviceBudget(d, ms) for d, ms in device_budgets.items())
        changes["devices"] = extra + tuple(
            d for d in budgets.devices if d.device not in device_budgets
        )
    return replace(budgets, **changes)


def samples_to_decide(
    n: int, estimate: float, low: float, high: float, budget: float
) -> int | None:
    """How many more samples would shrink the interval (as 1/sqrt(n)) until it excludes the
    budget; None when the estimate sits on the budget."""
    gap = abs(estimate - budget)
    half = max(estimate - low, high - estimate)
    if gap <= 1e-12 or half <= 0 or n <= 0:
        return None
    needed = math.ceil(n * (half / gap) ** 2 * 1.2)  # 20% margin: intervals are noisy too
    return max(needed - n, 1)


def judge_latency(
    metrics: dict[str, float], budget: float, q: int, min_samples: int
) -> tuple[str, str, int | None, str]:
    """(verdict, reason, how many more samples or rounds would decide it, "samples" or
    "rounds")."""
    est = metrics.get(f"latency_p{q}_ms")
    low = metrics.get(f"latency_p{q}_ci_low_ms")
    high = metrics.get(f"latency_p{q}_ci_high_ms")
    n = int(metrics.get("iterations", 0))
    if est is None or low is None or high is None:
        return "inconclusive", f"no p{q} latency recorded", None, "samples"
    rounds = int(metrics.get("rounds", 1))
    of = f", {rounds} rounds" if rounds > 1 else ""
    span = f"p{q} {est:.2f} ms (95% CI {low:.2f}-{high:.2f}{of})"
    if n < min_samples:
        return (
            "inconclusive",
            f"{span} from only {n} samples (< {min_samples})",
            max(min_samples - n, 1),
            "samples",
        )
    if high <= budget:
        return "pass", f"{span} <= {budget:g} ms", None, "samples"
    if low > budget:
        return "fail", f"{span} over the {budget:g} ms budget", None, "samples"
    if rounds > 1 and metrics.get("latency_round_share", 0.0) > 0.5:
        # rounds differing is most of the interval: more samples per round cannot narrow it
        more, unit = samples_to_decide(rounds, est, low, high, budget), "rounds"
    else:
        more, unit = samples_to_decide(n, est, low, high, budget), "samples"
    hint = (
        f"; about {more} more {unit if more != 1 else unit[:-1]} would decide it"
        if more
        else "; the percentile sits on the budget"
    )
    return "inconclusive", f"{span} straddles the {budget:g} ms budget{hint}", more, unit


def cell_parity(cell: dict[str, Any], metrics: dict[str, float]) -> ParityResult | None:
    """The cell's parity as judged when it was measured (stored in its details), else its
    stored numbers judged for the export's precision (stores from before the judgement
    was kept); None when the cell has no parity."""
    stored = (cell.get("details") or {}).get("parity")
    if stored and stored.get("status") in ("passed", "failed", "pending"):
        return ParityResult.from_dict(stored)
    precision = (cell.get("export_spec") or {}).get("precision", "fp32")
    return from_metrics(metrics, precision)


def judge_cell(
    cell: dict[str, Any], metrics: dict[str, float], budgets: BudgetSettings
) -> CellVerdict:
    label = f"{cell['model_name']} {cell['export_label']} {cell['target']}:{cell['device_name']}"
    v = CellVerdict(cell_id=int(cell["id"]), cell_key=cell["cell_key"], label=label, verdict="pass")
    if cell["status"] != "done":
        reason = cell.get("failure_reason") or cell["status"]
        v.verdict = "error"
        v.reasons.append(f"not measured ({cell.get('failure_kind') or cell['status']}): {reason}")
        return v
    budget = budgets.latency_for(cell["target"], cell["device_name"])
    v.budget_ms = budget
    verdict, reason, more, unit = judge_latency(
        metrics, budget, budgets.percentile, budgets.min_samples
    )
    v.verdict = verdict
    if unit == "rounds":
        v.needed_rounds = more
    else:
        v.needed_samples = more
    v.reasons.append(reason)

    parity = cell_parity(cell, metrics) if budgets.parity else None
    if parity is not None and parity.failures:
        v.verdict = "fail"
        v.reasons.append(
            f"parity ({parity.precision}) outside tolerance: " + ", ".join(parity.failures)
        )
    details = cell.get("details") or {}
    if (
        budgets.parity
        and details.get("parity_required")
        and (parity is None or not parity.measured)
    ):
        v.verdict = "fail"
        why = details.get("parity_error") or (parity.reason if parity else "") or "no result"
        v.reasons.append(f"parity on the device was asked for and not measured: {why}")
    fallback = metrics.get("cpu_fallback")
    if budgets.max_cpu_fallback is not None and fallback is not None:
        if fallback > budgets.max_cpu_fallback:
            asked = (details.get("compute_unit_asked") or "an accelerator").upper()
            v.verdict = "fail"
            v.reasons.append(
                f"{fallback:.0%} of the layers ran on the CPU although {asked} was asked for "
                f"(> {budgets.max_cpu_fallback:.0%} allowed)"
            )
    _retention(v, metrics, "accuracy", budgets.accuracy_retention, "of PyTorch on the target")
    _retention(v, metrics, "compression", budgets.compression_retention, "of its teacher")
    return v


def _retention(v: CellVerdict, metrics: dict[str, float], kind: str, budget, what: str) -> None:
    """A retention budget (``kind`` "accuracy": on the target vs PyTorch; "compression": the
    student vs its teacher) on the stored ratio and its paired interval: fail when the whole
    interval is below the budget, inconclusive when it straddles it. A cell stored before
    retention intervals (accuracy only) is judged on the ratio alone."""
    name = f"{kind}_retention"
    if not budget:
        return
    kept, low, high = (
        metrics.get(name),
        metrics.get(f"{name}_ci_low"),
        metrics.get(f"{name}_ci_high"),
    )
    if kept is None and kind == "accuracy" and "accuracy" in metrics:
        ref = metrics.get("accuracy_reference")
        kept = metrics["accuracy"] / ref if ref else None
        low = high = kept
    if kept is None or kept != kept:
        return
    low = kept if low is None or low != low else low
    high = kept if high is None or high != high else high
    span = f"{kept:.1%} [{low:.1%}, {high:.1%}]" if high > low else f"{kept:.1%}"
    if high < budget:
        v.verdict = "fail"
        v.reasons.append(f"{kind} kept {span} {what} (< {budget:.0%})")
    elif low < budget:
        if v.verdict == "pass":
            v.verdict = "inconclusive"
        v.reasons.append(f"{kind} kept {span} {what}: the interval holds {budget:.0%}")


def judge_run(store, run_id: str, budgets: BudgetSettings | None = None) -> GateResult:
    """Verdicts for every cell of ``run_id`` and for the run."""
    run = store.run(run_id)
    if budgets is None:
        budgets = budgets_from_plan(run.get("plan"))
    cells = store.cells([run_id])
    by_cell: dict[int, dict[str, float]] = {int(c["id"]): {} for c in cells}
    for m in store.metrics(list(by_cell)):
        by_cell[int(m["cell_id"])][m["name"]] = float(m["value"])
    verdicts = [judge_cell(c, by_cell[int(c["id"])], budgets) for c in cells]
    kinds = {v.verdict for v in verdicts}
    missing = int(run.get("total_cells") or 0) - len(cells)
    if "fail" in kinds or "error" in kinds:
        overall = "fail"
    elif "inconclusive" in kinds or not verdicts or missing > 0:
        overall = "inconclusive"
    else:
        overall = "pass"
    return GateResult(run_id=run_id, verdict=overall, budgets=budgets, cells=verdicts)


def render(result: GateResult, missing_cells: int = 0) -> str:
    lines = [
        f"gate {result.verdict.upper()} for run {result.run_id} "
        f"(p{result.budgets.percentile} <= {result.budgets.latency_ms:g} ms"
        + "".join(f", {d.device} <= {d.latency_ms:g} ms" for d in result.budgets.devices)
        + ")"
    ]
    order = {"error": 0, "fail": 1, "inconclusive": 2, "pass": 3}
    for c in sorted(result.cells, key=lambda c: order[c.verdict]):
        lines.append(f"  {c.verdict.upper():12} {c.label}: " + "; ".join(c.reasons))
    if missing_cells:
        lines.append(
            f"  {missing_cells} cell(s) of the plan were never run (resume the run to finish it)"
        )
    return "\n".join(lines)
