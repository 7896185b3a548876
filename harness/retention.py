"""Retention: how much of a reference's diagnostic performance a model keeps on the same
images, as a ratio with a paired bootstrap interval.

Two kinds, both per cell of a plan: deployment fidelity (the artifact on its target against
PyTorch fp32 of the same model) and what compression cost (the student in PyTorch against its
teacher in PyTorch). Both sides are scored on the same images, so each bootstrap resample
draws one set of image indices (stratified by class for a single-label task) and takes the
ratio of the two metrics on it: the interval holds the sampling noise of the split once, not
twice, as two independent intervals would. For a binary task the ratio is given for the data
set's metric and for sensitivity and specificity at each side's own decision threshold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness import metrics
from harness import operating_point as op


@dataclass(frozen=True)
class Retention:
    name: str  # the metric kept: the data set's ("auc"), "sensitivity", "specificity"
    value: float  # ours / the reference's
    ci_low: float
    ci_high: float


def _measures(
    metric: str, binary: bool, y: np.ndarray, s: np.ndarray, threshold: float
) -> list[float]:
    values = [metrics.METRICS[metric](y, s)]
    if binary:
        yb, p = y.reshape(-1) == 1, op.positive_probability(s)
        pos, neg = p[yb], p[~yb]
        values.append(float((pos >= threshold).mean()) if pos.size else float("nan"))
        values.append(float((neg < threshold).mean()) if neg.size else float("nan"))
    return values


def retention(
    y_true,
    scores,
    reference_scores,
    metric: str,
    binary: bool,
    threshold: float = op.DEFAULT_THRESHOLD,
    reference_threshold: float = op.DEFAULT_THRESHOLD,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[Retention]:
    """``scores`` against ``reference_scores`` on the images labelled ``y_true``: the data
    set's ``metric`` and, for a ``binary`` task, sensitivity and specificity at each side's
    threshold; each ratio with a paired percentile-bootstrap interval (resamples where either
    side is undefined or zero are left out)."""
    y, a, b = np.asarray(y_true), np.asarray(scores), np.asarray(reference_scores)
    if not (y.shape[0] == a.shape[0] == b.shape[0]):
        raise ValueError(
            f"{y.shape[0]} labels but {a.shape[0]} and {b.shape[0]} score rows: retention "
            "needs both sides scored on the same images"
        )
    names = [metric] + (["sensitivity", "specificity"] if binary else [])

    def ratios(idx: np.ndarray) -> np.ndarray:
        ours = np.asarray(_measures(metric, binary, y[idx], a[idx], threshold))
        ref = np.asarray(_measures(metric, binary, y[idx], b[idx], reference_threshold))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(ref > 0, ours / np.where(ref > 0, ref, 1.0), np.nan)

    point = ratios(np.arange(y.shape[0]))
    rng = np.random.Generator(np.random.PCG64(seed))
    strata = [np.flatnonzero(y == k) for k in np.unique(y)] if y.ndim == 1 else [np.arange(len(y))]
    boot = np.array(
        [
            ratios(np.concatenate([g[rng.integers(0, g.size, g.size)] for g in strata]))
            for _ in range(n_boot)
        ]
    ).reshape(n_boot, len(names))
    alpha = (1 - confidence) / 2
    out = []
    for k, name in enumerate(names):
        col = boot[:, k][np.isfinite(boot[:, k])]
        lo, hi = np.quantile(col, [alpha, 1 - alpha]) if col.size else (np.nan, np.nan)
        out.append(Retention(name, float(point[k]), float(lo), float(hi)))
    return out


def retention_rows(prefix: str, kept: list[Retention]) -> list[tuple[str, float, str]]:
    """Metric rows of a retention: ``{prefix}retention`` for the data set's metric,
    ``{prefix}sensitivity_retention`` / ``..specificity..`` for a binary task, each with its
    ``_ci_low`` / ``_ci_high``."""
    rows = []
    for i, r in enumerate(kept):
        name = f"{prefix}retention" if i == 0 else f"{prefix}{r.name}_retention"
        rows += [(name, r.value, "ratio"), (f"{name}_ci_low", r.ci_low, "ratio")]
        rows.append((f"{name}_ci_high", r.ci_high, "ratio"))
    return rows


def paired_retention(ours, reference, n_boot: int = 1000) -> list[Retention]:
    """Retention of one EvalResult against another on the same images (each at its own
    decision threshold)."""
    point, ref_point = ours.operating_point, reference.operating_point
    return retention(
        reference.labels,
        ours.scores,
        reference.scores,
        ours.results[0].name,
        point is not None,
        point.threshold if point is not None else op.DEFAULT_THRESHOLD,
        ref_point.threshold if ref_point is not None else op.DEFAULT_THRESHOLD,
        n_boot,
    )


def accuracy_rows(on_target, reference, n_boot: int = 1000) -> list[tuple[str, float, str]]:
    """A cell's accuracy metric rows: the data set's metric on the target with its interval,
    the PyTorch reference's, the operating point (threshold, sensitivity, specificity, PPV,
    NPV with intervals) of a binary task, and the deployment retention (``accuracy_retention``
    ...: on the target against PyTorch fp32 of the same model)."""
    main, ref_main = on_target.results[0], reference.results[0]
    rows = [
        ("accuracy", main.value, main.name),
        ("accuracy_ci_low", main.ci_low, main.name),
        ("accuracy_ci_high", main.ci_high, main.name),
        ("accuracy_reference", ref_main.value, main.name),
        ("accuracy_n", float(on_target.n), "count"),
    ]
    point = on_target.operating_point
    if point is not None:
        rows.append(("decision_threshold", point.threshold, "probability"))
        for r in point.results:
            if r.name != "auc":
                rows += [(r.name, r.value, "fraction"), (f"{r.name}_ci_low", r.ci_low, "fraction")]
                rows.append((f"{r.name}_ci_high", r.ci_high, "fraction"))
    return rows + retention_rows("accuracy_", paired_retention(on_target, reference, n_boot))


def compression_rows(student, teacher, n_boot: int = 1000) -> list[tuple[str, float, str]]:
    """What compression cost, on the same images in PyTorch: ``compression_retention`` (the
    student's metric over the teacher's, with the sensitivity and specificity ones of a binary
    task) and ``compression_reference`` (the teacher's metric)."""
    main = teacher.results[0]
    rows = [("compression_reference", main.value, main.name)]
    return rows + retention_rows("compression_", paired_retention(student, teacher, n_boot))
