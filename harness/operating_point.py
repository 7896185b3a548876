"""Clinical operating points: a binary classifier's decision threshold, chosen on the
validation split, and what the model achieves at it.

Scores are the **positive-class probability**: a binary model's (N, 2) logits become
``softmax(logits)[:, 1]`` (equal to ``sigmoid(l1 - l0)``, the same order as
:func:`harness.metrics._positive_scores`, so AUC is unchanged); an (N,) or (N, 1) array is
taken as probabilities already and must lie in [0, 1]. A case is called positive when its
probability is **>= threshold** (a score exactly on the threshold is positive).

:func:`choose_threshold` picks a threshold on one split: Youden's J (sensitivity +
specificity - 1, largest; ties go to the highest threshold, the more specific one) or the
highest threshold whose sensitivity reaches a target (screening). Candidates are the midpoints
between adjacent distinct scores (and one below the lowest, one above the highest), so a
threshold never sits exactly on a validation score and the float32 outputs of an exported
artifact fall on the same side as PyTorch's.

:func:`operating_point` reports sensitivity, specificity, PPV, NPV and AUC with **stratified**
percentile-bootstrap 95% intervals (positives and negatives resampled separately, so each
resample keeps the split's prevalence and every resample has both classes), and the confusion
matrix. A quantity the split cannot define (sensitivity with no positives, PPV with no case
called positive) is NaN, with its reason in ``undefined``; nothing raises.
:func:`per_class_recall` and :func:`per_label_auc` are the multi-class and multi-label
counterparts (plain bootstrap over images).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness import metrics
from harness.errors import UserError, VitbenchWarning
from harness.metrics import MetricResult

DEFAULT_THRESHOLD = 0.5
NO_THRESHOLD = (
    "no decision threshold in config.json; using 0.5 — `vitbench eval --choose-threshold` "
    "picks one on the validation split"
)


class NoThresholdWarning(VitbenchWarning):
    """A binary model without a decision threshold: 0.5 is used."""


def positive_probability(scores) -> np.ndarray:
    """The positive-class probability of binary outputs ((N, 2) logits or (N,) probabilities)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 2 and s.shape[1] == 2:
        d = s[:, 1] - s[:, 0]
        return 1.0 / (1.0 + np.exp(-d))
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 1:
        raise ValueError(f"binary scores must be (N,), (N, 1) or (N, 2); got {s.shape}")
    if s.size and (np.nanmin(s) < 0 or np.nanmax(s) > 1):
        raise ValueError("(N,) scores must be probabilities in [0, 1]; pass (N, 2) logits")
    return s


def _counts(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray):
    """tp, fp, tn, fn at each threshold (positive: p >= t)."""
    pos, neg = np.sort(p[y == 1]), np.sort(p[y == 0])
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    return tp, fp, neg.size - fp, pos.size - tp


def _binary_labels(y_true) -> np.ndarray:
    y = np.asarray(y_true).reshape(-1)
    if not np.isin(y, (0, 1)).all():
        raise ValueError("binary labels must be 0 or 1")
    return y.astype(np.int64)


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    rule: str  # "youden" or "sensitivity>=0.95"
    sensitivity: float  # achieved on the split it was chosen on
    specificity: float
    youden_j: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __str__(self) -> str:
        return (
            f"threshold {self.threshold:.4f} ({self.rule}): sensitivity {self.sensitivity:.4f}, "
            f"specificity {self.specificity:.4f} (n={self.n})"
        )


def choose_threshold(
    y_true, scores, rule: str = "youden", target_sensitivity: float | None = None
) -> ThresholdChoice:
    """A decision threshold in (0, 1) on this split: Youden's J, or (``target_sensitivity``)
    the highest threshold whose sensitivity is at least the target. A split without both
    classes cannot define one: :class:`UserError`."""
    y, p = _binary_labels(y_true), positive_probability(scores)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        missing = "positive" if n_pos == 0 else "negative"
        raise UserError(
            f"cannot choose a decision threshold: the split has no {missing} cases "
            f"({y.size} images)"
        )
    u = np.unique(p)
    cand = np.concatenate([[u[0] / 2], (u[:-1] + u[1:]) / 2, [(u[-1] + 1) / 2]])
    cand = cand[(cand > 0) & (cand < 1)]
    if cand.size == 0:
        raise UserError("cannot choose a decision threshold: every score is 0 or 1")
    cand = cand[::-1]  # highest first: ties below go to the more specific threshold
    tp, _fp, tn, _fn = _counts(y, p, cand)
    sens, spec = tp / n_pos, tn / n_neg
    if target_sensitivity is not None:
        if not 0 < target_sensitivity <= 1:
            raise UserError(f"--target-sensitivity {target_sensitivity} must be in (0, 1]")
        ok = np.flatnonzero(sens >= target_sensitivity - 1e-12)
        if ok.size == 0:
            raise UserError(f"no threshold reaches sensitivity {target_sensitivity} on this split")
        i = int(ok[0])
        rule = f"sensitivity>={target_sensitivity:g}"
    elif rule == "youden":
        i = int(np.argmax(sens + spec - 1))
    else:
        raise ValueError(f"unknown threshold rule {rule!r}; known: youden, target_sensitivity")
    return ThresholdChoice(
        float(cand[i]), rule, float(sens[i]), float(spec[i]), float(sens[i] + spec[i] - 1), y.size
    )


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    results: list[MetricResult]  # sensitivity, specificity, ppv, npv, auc
    undefined: dict[str, str] = field(default_factory=dict)  # name -> why it is NaN

    def __getitem__(self, name: str) -> MetricResult:
        return next(r for r in self.results if r.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "confusion": {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn},
            "metrics": [r.to_dict() for r in self.results],
            "undefined": dict(self.undefined),
            "interval": "stratified percentile bootstrap",
        }


def _ratio(num, den) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _interval(values, confidence: float) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    a = (1 - confidence) / 2
    lo, hi = np.quantile(v, [a, 1 - a])
    return float(lo), float(hi)


def operating_point(
    y_true, scores, threshold: float, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
) -> OperatingPoint:
    """Sensitivity, specificity, PPV, NPV and AUC at ``threshold`` (positive: p >= threshold),
    each with a stratified percentile-bootstrap interval, and the confusion matrix."""
    y, p = _binary_labels(y_true), positive_probability(scores)
    if y.size != p.size:
        raise ValueError(f"{y.size} labels but {p.size} scores")
    pos, neg = p[y == 1], p[y == 0]
    tp, fp = int((pos >= threshold).sum()), int((neg >= threshold).sum())
    tn, fn = neg.size - fp, pos.size - tp
    point = {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "auc": metrics.auc(y, p),
    }
    undefined = {}
    if pos.size == 0:
        undefined["sensitivity"] = undefined["auc"] = "no positive cases in the split"
    if neg.size == 0:
        undefined["specificity"] = undefined["auc"] = "no negative cases in the split"
    if tp + fp == 0:
        undefined["ppv"] = f"no case called positive at threshold {threshold:g}"
    if tn + fn == 0:
        undefined["npv"] = f"no case called negative at threshold {threshold:g}"
    rng = np.random.Generator(np.random.PCG64(seed))
    bi_pos = rng.integers(0, pos.size, (n_boot, pos.size)) if pos.size else None
    bi_neg = rng.integers(0, neg.size, (n_boot, neg.size)) if neg.size else None
    btp = (pos[bi_pos] >= threshold).sum(1) if pos.size else np.zeros(n_boot)
    bfp = (neg[bi_neg] >= threshold).sum(1) if neg.size else np.zeros(n_boot)
    btn, bfn = neg.size - bfp, pos.size - btp
    boot = {
        "sensitivity": _ratio(btp, btp + bfn),
        "specificity": _ratio(btn, btn + bfp),
        "ppv": _ratio(btp, btp + bfp),
        "npv": _ratio(btn, btn + bfn),
    }
    if pos.size and neg.size:
        yb = np.concatenate([np.ones(pos.size, np.int64), np.zeros(neg.size, np.int64)])
        boot["auc"] = [
            metrics.auc(yb, np.concatenate([pos[bi_pos[b]], neg[bi_neg[b]]])) for b in range(n_boot)
        ]
    else:
        boot["auc"] = []
    results = [
        MetricResult(name, float(point[name]), *_interval(boot[name], confidence), int(y.size))
        for name in ("sensitivity", "specificity", "ppv", "npv", "auc")
    ]
    return OperatingPoint(float(threshold), tp, fp, tn, fn, results, undefined)


def _bootstrap(fn, y: np.ndarray, s: np.ndarray, n_boot: int, seed: int, confidence: float):
    rng = np.random.Generator(np.random.PCG64(seed))
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, y.shape[0], y.shape[0])
        boots.append(fn(y[idx], s[idx]))
    b = np.asarray(boots, dtype=np.float64).reshape(n_boot, -1)
    return [_interval(b[:, k], confidence) for k in range(b.shape[1])]


def _recalls(y: np.ndarray, s: np.ndarray, k: int) -> np.ndarray:
    pred = np.argmax(s, axis=1)
    return np.array([np.mean(pred[y == c] == c) if (y == c).any() else np.nan for c in range(k)])


def per_class_recall(
    y_true, scores, classes=(), n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[list[MetricResult], dict[str, str]]:
    """Recall of each class (arg-max prediction) as ``recall[CLASS]``, plain bootstrap
    intervals; a class absent from the split is NaN (its reason in the dict)."""
    y, s = np.asarray(y_true).reshape(-1).astype(np.int64), np.asarray(scores, np.float64)
    k = s.shape[1]
    names = list(classes) or [str(c) for c in range(k)]
    value = _recalls(y, s, k)
    ci = _bootstrap(lambda a, b: _recalls(a, b, k), y, s, n_boot, seed, confidence)
    out = [
        MetricResult(f"recall[{names[c]}]", float(value[c]), *ci[c], int((y == c).sum()))
        for c in range(k)
    ]
    undefined = {r.name: "no cases of this class in the split" for r in out if r.n == 0}
    return out, undefined


def _label_aucs(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    out = []
    for k in range(y.shape[1]):
        keep = ~np.isnan(y[:, k])
        out.append(metrics.auc(y[keep, k], s[keep, k]))
    return np.array(out)


def per_label_auc(
    y_true, scores, labels=(), n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[list[MetricResult], dict[str, str]]:
    """ROC AUC of each label as ``auc[LABEL]`` (NaN labels left out, as in ``mean_auc``), plain
    bootstrap intervals; a label with one class only in the split is NaN."""
    y, s = np.asarray(y_true, np.float64), np.asarray(scores, np.float64)
    names = list(labels) or [str(k) for k in range(y.shape[1])]
    value = _label_aucs(y, s)
    ci = _bootstrap(_label_aucs, y, s, n_boot, seed, confidence)
    out = [
        MetricResult(f"auc[{names[k]}]", float(value[k]), *ci[k], int((~np.isnan(y[:, k])).sum()))
        for k in range(y.shape[1])
    ]
    undefined = {
        r.name: "the split has one class only for this label" for r in out if np.isnan(r.value)
    }
    return out, undefined


def is_binary(task: str, num_classes: int) -> bool:
    return task != "multilabel" and num_classes == 2


def threshold_of(config: Any, warn: bool = True) -> tuple[float, str]:
    """The decision threshold and its rule from a model config (a :class:`ViTConfig` or its
    dict, as in an artifact manifest); without one, 0.5 and (``warn``) one
    :class:`NoThresholdWarning`."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    t = get("decision_threshold")
    if t is not None:
        return float(t), str(get("threshold_rule") or "")
    if warn:
        warnings.warn(NO_THRESHOLD, NoThresholdWarning, stacklevel=2)
    return DEFAULT_THRESHOLD, "default"
