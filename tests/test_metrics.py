from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    roc_auc_score,
)

from harness import metrics


@pytest.mark.parametrize("seed", range(5))
def test_binary_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)  # rounding makes ties
    assert metrics.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    logits = np.stack([np.zeros(200), s], axis=1)
    assert metrics.auc(y, logits) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_mean_auc_matches_sklearn_per_label_and_ignores_nan(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (150, 5)).astype(float)
    s = rng.normal(size=(150, 5)) + y
    assert metrics.mean_auc(y, s) == pytest.approx(roc_auc_score(y, s, average="macro"), abs=1e-12)
    y_ign = y.copy()
    y_ign[rng.random(y.shape) < 0.2] = np.nan
    expected = np.mean(
        [
            roc_auc_score(y_ign[~np.isnan(y_ign[:, k]), k], s[~np.isnan(y_ign[:, k]), k])
            for k in range(5)
        ]
    )
    assert metrics.mean_auc(y_ign, s) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_qwk_balanced_accuracy_accuracy_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, 300)
    s = rng.normal(size=(300, 5))
    s[np.arange(300), y] += rng.random(300) * 2
    p = s.argmax(1)
    assert metrics.qwk(y, s) == pytest.approx(
        cohen_kappa_score(y, p, weights="quadratic"), abs=1e-12
    )
    assert metrics.balanced_accuracy(y, s) == pytest.approx(
        balanced_accuracy_score(y, p), abs=1e-12
    )
    assert metrics.accuracy(y, s) == pytest.approx(accuracy_score(y, p), abs=1e-12)


def test_bootstrap_interval_brackets_value_and_narrows_with_more_data():
    rng = np.random.default_rng(0)

    def run(n):
        y = rng.integers(0, 2, n)
        s = rng.normal(size=n) + y
        return metrics.estimate("auc", y, s, n_boot=400)

    small, large = run(100), run(4000)
    for r in (small, large):
        assert r.ci_low <= r.value <= r.ci_high
    assert (large.ci_high - large.ci_low) < (small.ci_high - small.ci_low) / 3
    again = metrics.estimate("auc", *(lambda y: (y, y + 0.1))(np.arange(10) % 2), n_boot=50)
    assert again.value == 1.0 and again.ci_low == 1.0


def test_metric_for_task_kinds():
    assert metrics.metric_for("multilabel", 5) == "mean_auc"
    assert metrics.metric_for("ordinal", 5) == "qwk"
    assert metrics.metric_for("multiclass", 2) == "auc"
    assert metrics.metric_for("multiclass", 3) == "accuracy"
    with pytest.raises(ValueError):
        metrics.estimate("nope", [0, 1], [0.1, 0.2])
