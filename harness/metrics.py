"""Task metrics, each with a bootstrap 95% interval, chosen by the data set's task.

=====================  =============================================  ===================
metric                 what                                           used for
=====================  =============================================  ===================
``auc``                ROC AUC of the positive class                  binary tasks
``mean_auc``           ROC AUC per label, averaged (NaN labels left   CheXpert, multi-label
                       out per label)
``qwk``                quadratic weighted Cohen's kappa               APTOS (graded)
``balanced_accuracy``  mean recall over the classes present           ISIC 2019
``accuracy``           fraction correct                               BUSI, multi-class
=====================  =============================================  ===================

Every function takes ``y_true`` (class indices, or (N, K) 0/1 with NaN = ignore) and
``scores`` (N, K) model outputs (logits or probabilities: only their order matters for AUC,
their arg-max for the others). Values match scikit-learn's; they are computed here with numpy
so a 2000-resample bootstrap stays fast. The interval is the percentile bootstrap over
images, seeded (the same inputs always give the same interval).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata


@dataclass(frozen=True)
class MetricResult:
    name: str
    value: float
    ci_low: float
    ci_high: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.name} {self.value:.4f} [{self.ci_low:.4f}, {self.ci_high:.4f}]"


def _binary_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney form of ROC AUC with average ranks for ties (equals sklearn's)."""
    pos = y == 1
    n_pos = int(pos.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _positive_scores(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        return s
    if s.shape[1] == 1:
        return s[:, 0]
    return s[:, 1] - s[:, 0] if s.shape[1] == 2 else s[:, 1]


def auc(y_true, scores) -> float:
    """Binary ROC AUC. ``scores`` (N,) for the positive class, or (N, 2) logits."""
    return _binary_auc(np.asarray(y_true).reshape(-1), _positive_scores(scores))


def mean_auc(y_true, scores) -> float:
    """ROC AUC per label, averaged over labels with both classes present; NaN labels are left
    out of their label's AUC (U-Ignore)."""
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    values = []
    for k in range(y.shape[1]):
        keep = ~np.isnan(y[:, k])
        a = _binary_auc(y[keep, k], s[keep, k])
        if not np.isnan(a):
            values.append(a)
    return float(np.mean(values)) if values else float("nan")


def _labels(scores) -> np.ndarray:
    s = np.asarray(scores)
    return s if s.ndim == 1 else np.argmax(s, axis=1)


def accuracy(y_true, scores) -> float:
    return float(np.mean(np.asarray(y_true) == _labels(scores)))


def balanced_accuracy(y_true, scores) -> float:
    y, p = np.asarray(y_true), _labels(scores)
    recalls = [np.mean(p[y == c] == c) for c in np.unique(y)]
    return float(np.mean(recalls))


def qwk(y_true, scores, num_classes: int | None = None) -> float:
    """Quadratic weighted kappa (sklearn's cohen_kappa_score(weights="quadratic"))."""
    y, p = np.asarray(y_true, dtype=np.int64), _labels(scores).astype(np.int64)
    labels = np.unique(np.concatenate([y, p]))
    k = labels.size
    if k < 2:
        return float("nan")
    yi, pi = np.searchsorted(labels, y), np.searchsorted(labels, p)
    observed = np.zeros((k, k))
    np.add.at(observed, (yi, pi), 1)
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    i, j = np.indices((k, k))
    w = (i - j) ** 2
    denom = (w * expected).sum()
    return float(1 - (w * observed).sum() / denom) if denom else float("nan")


METRICS = {
    "auc": auc,
    "mean_auc": mean_auc,
    "qwk": qwk,
    "balanced_accuracy": balanced_accuracy,
    "accuracy": accuracy,
}


def metric_for(task: str, num_classes: int) -> str:
    """The default metric of a task kind: AUC for binary, mean AUC for multi-label, QWK for
    ordinal grades, accuracy otherwise (a data set may name its own, e.g. ISIC's balanced
    accuracy)."""
    if task == "multilabel":
        return "mean_auc"
    if task == "ordinal":
        return "qwk"
    return "auc" if num_classes == 2 else "accuracy"


def estimate(
    name: str, y_true, scores, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> MetricResult:
    """Metric ``name`` with a percentile-bootstrap interval over images (resamples where the
    metric is undefined, e.g. one class only, are left out)."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    fn = METRICS[name]
    y, s = np.asarray(y_true), np.asarray(scores)
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"{y.shape[0]} labels but {s.shape[0]} score rows")
    value = fn(y, s)
    rng = np.random.Generator(np.random.PCG64(seed))
    boot = []
    for _ in range(n_boot):
        idx = rng.integers(0, y.shape[0], y.shape[0])
        v = fn(y[idx], s[idx])
        if not np.isnan(v):
            boot.append(v)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha]) if boot else (float("nan"), float("nan"))
    return MetricResult(name, float(value), float(lo), float(hi), int(y.shape[0]))
