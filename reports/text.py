"""How a report writes one value, the same in every format: a cell's name, a number, a time,
the compute unit, parity, accuracy, a latency with its interval, a p-value, the run's tally."""

from __future__ import annotations

from typing import Any

import pandas as pd


def cell_label(row: Any) -> str:
    """``lite · onnx · host:host``: what a reader calls a cell."""
    return f"{row['model']} · {row['export']} · {row['target']}:{row['device']}"


def missing(v: Any) -> bool:
    return v is None or v != v


def num(v: Any, digits: int = 1) -> str:
    if missing(v):
        return "–"
    return f"{v:,.{digits}f}"


def when(ts: Any) -> str:
    if missing(ts):
        return "–"
    return pd.Timestamp(ts, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")


def compute_text(row: Any) -> str:
    """The primary compute unit and the shares the runtime reported, largest first, and a
    flag when layers fell back to the CPU although an accelerator was asked for."""
    shares = [(u, row[f"share_{u}"]) for u in ("npu", "gpu", "cpu")]
    shares = [(u, v) for u, v in shares if not missing(v) and v > 0]
    unit = row["compute_unit"] or "–"
    text = unit
    if shares:
        parts = ", ".join(f"{u.upper()} {v:.0%}" for u, v in sorted(shares, key=lambda s: -s[1]))
        text = f"{unit} ({parts})"
    fallback = row.get("cpu_fallback")
    if fallback is not None and not missing(fallback) and fallback > 0:
        asked = (row.get("compute_unit_asked") or "an accelerator").upper()
        text += f" ⚠ CPU fallback {fallback:.0%} ({asked} asked)"
    return text


def parity_text(row: Any) -> str:
    """Cosine and top-1 agreement with PyTorch fp32, and the judgement stored with the cell
    (``parity_status``, ``parity_failures``: harness.gate.cell_parity); reports judge nothing."""
    status = row["parity_status"]
    if not status:
        return "–"
    numbers = []
    if not missing(row["parity_cosine"]):
        numbers.append(f"cos {row['parity_cosine']:.5f}")
    if not missing(row["parity_top1"]):
        numbers.append(f"top-1 {row['parity_top1']:.1%}")
    verdict = f"{status}: {row['parity_failures']}" if row["parity_failures"] else status
    return f"{', '.join(numbers)} ({verdict})" if numbers else verdict


def accuracy_text(row: Any) -> str:
    """The data set's metric on the target with its interval; a binary task's sensitivity and
    specificity at the model's threshold."""
    if missing(row["accuracy"]):
        return "–"
    out = f"{row['accuracy']:.3f} {row['accuracy_metric']}".strip()
    if not missing(row["accuracy_ci_low"]):
        out += f" [{row['accuracy_ci_low']:.3f}–{row['accuracy_ci_high']:.3f}]"
    if not missing(row["sensitivity"]):
        out += (
            f"; sens {row['sensitivity']:.3f} [{row['sensitivity_ci_low']:.3f}–"
            f"{row['sensitivity_ci_high']:.3f}], spec {row['specificity']:.3f} "
            f"[{row['specificity_ci_low']:.3f}–{row['specificity_ci_high']:.3f}] "
            f"at {row['decision_threshold']:.3f}"
        )
    return out


def retention_text(row: Any, kind: str) -> str:
    """``kind`` "accuracy" (on the target vs PyTorch of the same model) or "compression" (the
    student vs its teacher): the ratio of the data set's metric with its paired interval, and
    of sensitivity and specificity where the task is binary."""
    v = row[f"{kind}_retention"]
    if missing(v):
        return "–"
    low = row[f"{kind}_retention_ci_low"]
    out = f"{v:.1%}" + (
        "" if missing(low) else f" [{low:.1%}–{row[kind + '_retention_ci_high']:.1%}]"
    )
    ref = row["accuracy_reference" if kind == "accuracy" else "compression_reference"]
    if not missing(ref):
        out += f" of {ref:.3f}"
    sens, spec = row[f"{kind}_sensitivity_retention"], row[f"{kind}_specificity_retention"]
    if not missing(sens):
        out += f"; sens {sens:.1%}, spec {spec:.1%}"
    return out


def latency_text(row: Any, q: int) -> str:
    """The q-th percentile; p90 with its 95% interval."""
    v = row[f"p{q}_ms"]
    if missing(v):
        return "–"
    lo, hi = row.get(f"p{q}_ci_low_ms"), row.get(f"p{q}_ci_high_ms")
    if q == 90 and not missing(lo) and not missing(hi):
        return f"{v:,.1f} ({lo:,.1f}–{hi:,.1f})"
    return f"{v:,.1f}"


def spread_text(row: Any) -> str:
    """``3 rounds: 1.2% / 3.4%``: the rounds, the spread of their medians (between-round CV)
    and the spread inside a round (within-round CV)."""
    rounds, cv = row.get("rounds"), row.get("within_round_cv")
    if missing(rounds) or int(rounds) <= 1:
        return "–" if missing(cv) else f"1 round: – / {cv:.1%}"
    between, within = row.get("between_round_cv"), row.get("within_round_cv")
    b = "–" if missing(between) else f"{between:.1%}"
    w = "–" if missing(within) else f"{within:.1%}"
    return f"{int(rounds)} rounds: {b} / {w}"


def p_text(p: float) -> str:
    return "< 1e-16" if p < 1e-16 else f"= {p:.2g}"


def summary_line(run: dict[str, Any], cells: pd.DataFrame) -> str:
    """``10 of 12 cells done, 1 failed, 1 not finished``."""
    done = int((cells["status"] == "done").sum())
    failed = int((cells["status"] == "failed").sum())
    total = int(run.get("total_cells") or len(cells))
    rest = total - done - failed
    return f"{done} of {total} cells done, {failed} failed" + (
        f", {rest} not finished" if rest > 0 else ""
    )
