"""Teacher, student (and from-scratch baseline) at their clinical operating points: a binary
task's AUC, sensitivity and specificity on the test split, each model at its own decision
threshold chosen on the validation split, with intervals, and what each keeps of the teacher
with paired intervals (:mod:`harness.retention`)."""

from __future__ import annotations

from typing import Any

from harness import operating_point as op
from harness.accuracy import EvalResult, model_accuracy
from harness.inference import predict, tensors
from harness.retention import paired_retention

SHOWN = ("auc", "sensitivity", "specificity")


def with_threshold(model: Any, val: Any, target_sensitivity: float | None = None) -> Any:
    """``model`` with a decision threshold: its own, else one chosen on ``val`` here (Youden's
    J, or the highest reaching ``target_sensitivity``), set in its config only (nothing is
    written to its folder)."""
    if model.config.decision_threshold is not None:
        return model
    scores = predict(model, tensors(val, model.config.img_size, model.config.in_chans))
    c = op.choose_threshold(val.labels, scores, target_sensitivity=target_sensitivity)
    model.config = model.config.replace(decision_threshold=c.threshold, threshold_rule=c.rule)
    return model


def operating_points(
    models: dict[str, Any], splits: dict, target_sensitivity: float | None = None
) -> dict:
    """``models`` (the first is the reference: the teacher) on the test split, each at its
    decision threshold (see :func:`with_threshold`), and every other model's retention of the
    reference's AUC, sensitivity and specificity with a paired bootstrap interval; {} for a
    task that is not binary. ``lines`` holds the printed form."""
    val, test = splits["val"], splits["test"]
    if not op.is_binary(test.task, test.num_classes):
        return {}
    results: dict[str, EvalResult] = {
        who: model_accuracy(with_threshold(m, val, target_sensitivity), test)
        for who, m in models.items()
    }
    reference, *others = results
    kept = {
        who: {
            r.name: {"value": r.value, "ci_low": r.ci_low, "ci_high": r.ci_high}
            for r in paired_retention(results[who], results[reference])
        }
        for who in others
    }
    return {
        "operating_points": {who: r.to_dict() for who, r in results.items()},
        "operating_point_retention": kept,
        "lines": _lines(results, kept, reference),
    }


def _lines(results: dict[str, EvalResult], kept: dict, reference: str) -> list[str]:
    lines = ["", "operating points on the test split (95% stratified bootstrap intervals):"]
    for who, r in results.items():
        point = r.operating_point
        lines.append(
            f"  {who:9} threshold {point.threshold:.4f} ({r.threshold_rule}): "
            + "  ".join(
                f"{n} {point[n].value:.4f} [{point[n].ci_low:.4f}, {point[n].ci_high:.4f}]"
                for n in SHOWN
            )
        )
    lines.append(f"kept of the {reference} (paired 95% intervals):")
    for who, ratios in kept.items():
        lines.append(
            f"  {who:9} "
            + "  ".join(
                f"{n} {v['value']:.1%} [{v['ci_low']:.1%}, {v['ci_high']:.1%}]"
                for n, v in ratios.items()
            )
        )
    return lines


__all__ = ["operating_points", "with_threshold"]
