"""Clinical operating points: threshold choice on validation, sensitivity / specificity / PPV /
NPV with intervals, the threshold in config.json, and `vitbench eval --choose-threshold`."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.metrics import confusion_matrix, recall_score, roc_auc_score, roc_curve

from harness import operating_point as op
from harness.accuracy import model_accuracy
from harness.cli import main
from harness.compress.prune import prune
from harness.data import load_dataset
from harness.errors import ConfigError, UserError
from harness.inference import predict, tensors
from harness.model import build_model, load_checkpoint, save_checkpoint
from harness.model.checkpoint import write_threshold
from tests.support.data_fixtures import make_medmnist
from tests.support.models import small_config


def _binary(seed, n, shift=1.0):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 == 0).astype(int)  # a third positive
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + shift * (2 * y - 1))))
    return y, p


def test_youden_finds_the_known_optimum():
    # neg 0.1 0.2 0.3 0.6, pos 0.5 0.7 0.8 0.9 0.95: J is 0.75 at 0.45, 0.8 at 0.65 (best)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.8, 0.9, 0.95])
    c = op.choose_threshold(y, p)
    assert c.threshold == pytest.approx(0.65) and c.rule == "youden"
    assert (c.sensitivity, c.specificity) == (pytest.approx(0.8), 1.0)
    assert c.youden_j == pytest.approx(0.8)
    for seed in range(3):  # the best J equals the ROC curve's
        y, p = _binary(seed, 300)
        fpr, tpr, _ = roc_curve(y, p)
        c = op.choose_threshold(y, p)
        assert c.youden_j == pytest.approx(np.max(tpr - fpr), abs=1e-12)
        assert 0 < c.threshold < 1 and not np.isin(c.threshold, p)  # never on a score


def test_target_sensitivity_is_reached_with_the_highest_threshold():
    y, p = _binary(1, 400, shift=0.6)
    c = op.choose_threshold(y, p, target_sensitivity=0.95)
    assert c.rule == "sensitivity>=0.95" and c.sensitivity >= 0.95
    pt = op.operating_point(y, p, c.threshold, n_boot=10)
    assert pt["sensitivity"].value == pytest.approx(c.sensitivity)
    assert pt["specificity"].value == pytest.approx(c.specificity)
    higher = np.sort(p[p > c.threshold])[0]  # the next score up misses the target
    assert op.operating_point(y, p, higher + 1e-9, n_boot=1)["sensitivity"].value < 0.95
    youden = op.choose_threshold(y, p)
    assert c.threshold <= youden.threshold and c.sensitivity >= youden.sensitivity


def test_confusion_matrix_matches_sklearn_and_a_score_on_the_threshold_is_positive():
    y, p = _binary(2, 200)
    p = np.round(p, 2)  # ties
    t = float(np.median(p))  # exactly on some scores
    pt = op.operating_point(y, p, t, n_boot=20)
    tn, fp, fn, tp = confusion_matrix(y, (p >= t).astype(int)).ravel()
    assert (pt.tp, pt.fp, pt.tn, pt.fn) == (tp, fp, tn, fn)
    assert pt["sensitivity"].value == pytest.approx(tp / (tp + fn))
    assert pt["ppv"].value == pytest.approx(tp / (tp + fp))
    assert pt["npv"].value == pytest.approx(tn / (tn + fn))
    assert pt["auc"].value == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    on = op.operating_point([1, 0, 0], [0.5, 0.5, 0.2], 0.5, n_boot=5)
    assert (on.tp, on.fp, on.tn, on.fn) == (1, 1, 1, 0)


def test_logits_become_the_softmax_positive_probability():
    logits = np.random.default_rng(0).normal(size=(50, 2)) * 3
    expected = torch.softmax(torch.from_numpy(logits), 1)[:, 1].numpy()
    np.testing.assert_allclose(op.positive_probability(logits), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="probabilities"):
        op.positive_probability(np.array([-1.0, 2.0]))


def test_intervals_contain_the_estimates_narrow_with_n_and_are_seeded():
    small = op.operating_point(*_binary(3, 90), 0.5, n_boot=400)
    large = op.operating_point(*_binary(3, 9000), 0.5, n_boot=400)
    for pt in (small, large):
        for r in pt.results:
            assert r.ci_low <= r.value <= r.ci_high, r
    for name in ("sensitivity", "specificity", "ppv", "npv", "auc"):
        w_small = small[name].ci_high - small[name].ci_low
        w_large = large[name].ci_high - large[name].ci_low
        assert w_large < w_small / 4, name
    again = op.operating_point(*_binary(3, 90), 0.5, n_boot=400)
    assert again.results == small.results
    assert op.operating_point(*_binary(3, 90), 0.5, n_boot=400, seed=1).results != small.results


def test_undefined_quantities_are_nan_with_a_reason():
    no_pos = op.operating_point([0, 0, 0, 0], [0.1, 0.6, 0.3, 0.2], 0.5, n_boot=50)
    assert math.isnan(no_pos["sensitivity"].value) and math.isnan(no_pos["auc"].value)
    assert math.isnan(no_pos["sensitivity"].ci_low)
    assert no_pos["specificity"].value == 0.75 and no_pos["ppv"].value == 0.0
    assert no_pos.undefined["sensitivity"] == "no positive cases in the split"
    no_neg = op.operating_point([1, 1], [0.2, 0.9], 0.5, n_boot=50)
    assert math.isnan(no_neg["specificity"].value) and "negative" in no_neg.undefined["specificity"]
    none_called = op.operating_point([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], 0.99, n_boot=50)
    assert (
        math.isnan(none_called["ppv"].value) and "called positive" in none_called.undefined["ppv"]
    )
    assert none_called["npv"].value == 0.5
    with pytest.raises(UserError, match="no positive cases"):
        op.choose_threshold([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(UserError, match="no threshold reaches"):
        op.choose_threshold([0, 1], [0.0, 0.0], target_sensitivity=0.5)


def test_per_class_recall_and_per_label_auc_match_sklearn():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 120)
    s = rng.normal(size=(120, 4))  # class 3 never occurs
    s[np.arange(120), y] += 1
    res, undefined = op.per_class_recall(y, s, ("a", "b", "c", "d"), n_boot=100)
    expected = recall_score(y, s.argmax(1), labels=[0, 1, 2], average=None, zero_division=0)
    np.testing.assert_allclose([r.value for r in res[:3]], expected, rtol=1e-12)
    assert [r.name for r in res] == ["recall[a]", "recall[b]", "recall[c]", "recall[d]"]
    assert math.isnan(res[3].value) and "recall[d]" in undefined
    assert all(r.ci_low <= r.value <= r.ci_high for r in res[:3])
    ym = rng.integers(0, 2, (80, 3)).astype(float)
    sm = rng.normal(size=(80, 3)) + ym
    ym[:, 2] = 0  # one class only
    res, undefined = op.per_label_auc(ym, sm, n_boot=50)
    for k in range(2):
        assert res[k].value == pytest.approx(roc_auc_score(ym[:, k], sm[:, k]), abs=1e-12)
    assert math.isnan(res[2].value) and list(undefined) == ["auc[2]"]


def _binary_model(**kw):
    cfg = small_config(img_size=16, patch_size=4, in_chans=1, num_classes=2, **kw)
    return build_model(cfg)


def test_threshold_lives_in_config_json_and_a_checkpoint_without_one_warns(tmp_path):
    save_checkpoint(_binary_model(), tmp_path / "ck")
    assert "decision_threshold" not in (tmp_path / "ck" / "config.json").read_text()
    net = load_checkpoint(tmp_path / "ck")  # loads as before
    with pytest.warns(op.NoThresholdWarning, match="using 0.5 — `vitbench eval --choose"):
        assert op.threshold_of(net.config) == (0.5, "default")
    toy = make_medmnist(tmp_path / "toy.npz", size=16, n=(4, 6, 8))
    ds = load_dataset(toy, split="test")
    with pytest.warns(op.NoThresholdWarning) as caught:
        res = model_accuracy(net, ds, n_boot=20, warn_no_threshold=True)
    assert len(caught) == 1 and res.operating_point.threshold == 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model_accuracy(net, ds, n_boot=20)  # library callers are not warned by default
    write_threshold(tmp_path / "ck", 0.3, "youden")
    back = load_checkpoint(tmp_path / "ck")
    assert (back.config.decision_threshold, back.config.threshold_rule) == (0.3, "youden")
    assert op.threshold_of(back.config) == (0.3, "youden")
    assert model_accuracy(back, ds, n_boot=20).operating_point.threshold == 0.3
    pruned = prune(back, [[0]] * back.config.depth, [[0]] * back.config.depth)
    assert pruned.config.decision_threshold is None  # a pruned model needs its own
    with pytest.raises(ConfigError, match=r"in \(0, 1\)"):
        small_config(num_classes=2, decision_threshold=1.0, threshold_rule="youden")
    with pytest.raises(ConfigError, match="binary"):
        small_config(num_classes=5, decision_threshold=0.4, threshold_rule="youden")


def _eval(*args):
    res = CliRunner().invoke(main, ["eval", *map(str, args)])
    assert res.exit_code == 0, res.output
    return res.output


def test_eval_chooses_a_threshold_on_val_writes_it_and_applies_it(tmp_path):
    toy = make_medmnist(tmp_path / "toy.npz", size=16, n=(8, 40, 30), learnable=True)
    torch.manual_seed(0)
    save_checkpoint(_binary_model(), tmp_path / "ck")
    before = _eval(tmp_path / "ck", "--data", toy)
    assert before.count("warning: no decision threshold in config.json; using 0.5") == 1
    assert "threshold 0.5000 (default)" in before
    quiet = json.loads(_eval(tmp_path / "ck", "--data", toy, "--json"))  # stdout stays JSON
    assert quiet["warnings"] == [op.NO_THRESHOLD] and quiet["operating_point"]["threshold"] == 0.5
    out = _eval(tmp_path / "ck", "--data", toy, "--choose-threshold")
    assert "warning" not in out
    assert "chose threshold" in out and "(youden)" in out and "config.json" in out
    assert "sensitivity" in out and "npv" in out and "95% CI" in out
    net = load_checkpoint(tmp_path / "ck")
    val = load_dataset(toy, split="val")
    scores = predict(net, tensors(val, 16, 1))
    expected = op.choose_threshold(val.labels, scores)
    assert net.config.decision_threshold == pytest.approx(expected.threshold)
    res = json.loads(_eval(tmp_path / "ck", "--data", toy, "--json"))
    assert [m["name"] for m in res["metrics"]] == ["auc", "accuracy"]  # as before
    point = res["operating_point"]
    assert point["threshold"] == net.config.decision_threshold and point["rule"] == "youden"
    test = load_dataset(toy, split="test")
    with torch.no_grad():
        prob = torch.softmax(net(torch.from_numpy(test.inputs(16, 1))), 1)[:, 1].numpy()
    tn, fp, fn, tp = confusion_matrix(test.labels, prob >= point["threshold"]).ravel()
    assert point["confusion"] == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    screen = json.loads(
        _eval(
            tmp_path / "ck",
            "--data",
            toy,
            "--choose-threshold",
            "--target-sensitivity",
            "0.95",
            "--json",
        )
    )
    assert screen["threshold_choice"]["rule"] == "sensitivity>=0.95"
    assert screen["threshold_choice"]["sensitivity"] >= 0.95
    assert load_checkpoint(tmp_path / "ck").config.threshold_rule == "sensitivity>=0.95"


def test_eval_breaks_a_multiclass_task_down_per_class(tmp_path):
    toy = tmp_path / "mc.npz"
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 6), ("test", 12)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 16, 16), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 3).reshape(n, 1).astype(np.uint8)
    np.savez(toy, **arrays)
    save_checkpoint(
        build_model(small_config(img_size=16, patch_size=4, in_chans=1, num_classes=3)),
        tmp_path / "ck",
    )
    res = json.loads(_eval(tmp_path / "ck", "--data", toy, "--json"))
    names = [r["name"] for r in res["breakdown"]]
    assert names == ["recall[0]", "recall[1]", "recall[2]", "balanced_accuracy"]
    assert "operating_point" not in res
    result = CliRunner().invoke(
        main, ["eval", str(tmp_path / "ck"), "--data", str(toy), "--choose-threshold"]
    )
    assert result.exit_code == 2 and "applies to binary tasks" in result.output


def test_threshold_chosen_on_val_gives_pytorchs_confusion_matrix_through_the_host_target(tmp_path):
    """Chosen on val in PyTorch, carried in the artifact manifest, applied on the host
    target's ONNX run: the same confusion matrix on test as PyTorch's."""
    from tests.support.artifacts import exported, small_model

    toy = make_medmnist(tmp_path / "toy.npz", size=16, n=(4, 40, 40), learnable=True)
    cfg = small_config(img_size=16, patch_size=4, in_chans=1, num_classes=2)
    val, test = load_dataset(toy, split="val"), load_dataset(toy, split="test")
    choice = op.choose_threshold(val.labels, predict(small_model(cfg), tensors(val, 16, 1)))
    cfg = cfg.replace(decision_threshold=choice.threshold, threshold_rule=choice.rule)
    art = exported(tmp_path / "onnx", "onnx", cfg=cfg)
    assert art.manifest["model"]["config"]["decision_threshold"] == choice.threshold
    ref = model_accuracy(small_model(cfg), test, n_boot=50).operating_point
    dev = json.loads(_eval(art.folder, "--data", toy, "--target", "host", "--json"))
    assert dev["source"].startswith("host:")
    assert dev["operating_point"]["threshold"] == ref.threshold == choice.threshold
    assert dev["operating_point"]["confusion"] == {
        "tp": ref.tp,
        "fp": ref.fp,
        "tn": ref.tn,
        "fn": ref.fn,
    }
    assert 0 < ref.tp + ref.fp < len(test)  # the threshold splits the test set
