"""`vitbench train`, `compress` and `eval` end to end on a tiny fixture, and their bad input."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from harness.cli import main
from harness.model import build_model, count_params, load_checkpoint, save_checkpoint
from tests.support.cli import assert_one_line_error
from tests.support.data_fixtures import make_busi, make_medmnist
from tests.support.models import small_config


def _run(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.output


def _small(num_classes=2, **kw):
    return build_model(
        small_config(
            img_size=16,
            patch_size=4,
            in_chans=1,
            num_classes=num_classes,
            embed_dim=32,
            head_dim=8,
            num_heads=(4, 4),
            mlp_dims=(64, 64),
            **kw,
        )
    )


@pytest.fixture
def toy(tmp_path):
    return make_medmnist(tmp_path / "toy.npz", size=16, n=(96, 32, 32), learnable=True)


def test_train_compress_eval_end_to_end(tmp_path, toy):
    save_checkpoint(_small(), tmp_path / "init")
    code, out = _run(
        "train",
        tmp_path / "init",
        "--data",
        toy,
        "--out",
        tmp_path / "teacher",
        "--epochs",
        5,
        "--batch-size",
        16,
        "--lr",
        3e-3,
        "--quiet",
    )
    assert code == 0, out
    assert "test auc" in out and "95% CI" in out and "test accuracy" in out
    auc = float(out.split("test auc")[1].split()[0])
    assert auc > 0.9
    # the binary model's decision threshold was chosen on val and kept in config.json
    teacher_cfg = load_checkpoint(tmp_path / "teacher").config
    assert teacher_cfg.threshold_rule == "youden" and 0 < teacher_cfg.decision_threshold < 1
    assert "threshold" in out and "on the val split" in out and "test sensitivity" in out
    code, out = _run(
        "compress",
        "--teacher",
        tmp_path / "teacher",
        "--data",
        f"medmnist:{toy}",
        "--out",
        tmp_path / "student",
        "--keep-ratio",
        0.5,
        "--steps",
        2,
        "--epochs-per-step",
        2,
        "--final-epochs",
        1,
        "--batch-size",
        16,
        "--lr",
        2e-3,
        "--quiet",
        "--json",
    )
    assert code == 0, out
    report = json.loads(out)
    teacher_n = count_params(load_checkpoint(tmp_path / "teacher").config)
    student = load_checkpoint(tmp_path / "student")
    assert report["student"]["params"] == count_params(student.config) <= teacher_n // 2
    assert report["student"]["num_heads"] == list(student.config.num_heads)
    assert report["teacher_metric"]["name"] == "auc" and report["retention_pct"] > 80
    assert report["teacher_latency"]["n"] >= 30 and report["param_ratio"] >= 2
    assert (tmp_path / "student.work" / "state.json").is_file()
    # the student's threshold chosen on val too; both operating points and their retention
    assert student.config.threshold_rule == "youden"
    points = report["operating_points"]
    assert points["student"]["operating_point"]["threshold"] == student.config.decision_threshold
    assert points["teacher"]["operating_point"]["threshold"] == teacher_cfg.decision_threshold
    kept = report["operating_point_retention"]["student"]
    assert set(kept) == {"auc", "sensitivity", "specificity"}
    assert all(0 < v["ci_low"] <= v["value"] <= v["ci_high"] for v in kept.values())
    paired = report["student_kept"]
    assert paired["ci_low"] <= report["retention_pct"] / 100 <= paired["ci_high"]
    assert "baseline" not in points and report["baseline_metric"] is None  # only on --baseline
    code, out = _run("eval", tmp_path / "student", "--data", toy)
    assert code == 0, out
    assert "(pytorch)" in out and "auc" in out and "95% CI" in out
    code, out = _run("eval", tmp_path / "student", "--data", toy, "--split", "val", "--json")
    res = json.loads(out)
    assert (
        res["n"] == 32
        and res["split"] == "val"
        and [m["name"] for m in res["metrics"]] == ["auc", "accuracy"]
    )


def test_compress_text_report_lists_blocks(tmp_path, toy):
    save_checkpoint(_small(), tmp_path / "t")
    code, out = _run(
        "compress",
        "--teacher",
        tmp_path / "t",
        "--data",
        toy,
        "--out",
        tmp_path / "s",
        "--target-params",
        "12k",
        "--steps",
        1,
        "--epochs-per-step",
        1,
        "--final-epochs",
        0,
        "--quiet",
    )
    assert code == 0, out
    for fragment in (
        "parameters",
        "fp32 size (MB)",
        "GMACs",
        "host p50 (ms)",
        "test auc",
        "test accuracy",
        "retention:",
        "block",
        "heads",
        "MLP width",
        "operating points on the test split",
        "kept of the teacher (paired 95% intervals):",
    ):
        assert fragment in out, fragment
    assert count_params(load_checkpoint(tmp_path / "s").config) <= 12_000


def test_bad_input_is_one_line(tmp_path, toy):
    save_checkpoint(_small(), tmp_path / "t")
    n = count_params(load_checkpoint(tmp_path / "t").config)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.md").write_text("x")
    assert_one_line_error(
        *_run(
            "compress",
            "--teacher",
            tmp_path / "t",
            "--data",
            tmp_path / "junk",
            "--out",
            tmp_path / "s",
            "--keep-ratio",
            0.5,
        ),
        "not a data set layout",
        "found readme.md",
    )
    assert_one_line_error(
        *_run(
            "compress",
            "--teacher",
            tmp_path / "t",
            "--data",
            toy,
            "--out",
            tmp_path / "s",
            "--target-params",
            f"{n + 1}",
        ),
        "not smaller than the teacher",
    )
    assert_one_line_error(
        *_run(
            "compress",
            "--teacher",
            tmp_path / "t",
            "--data",
            toy,
            "--out",
            tmp_path / "s",
            "--target-params",
            "lots",
        ),
        "is not a count",
    )
    assert_one_line_error(
        *_run("compress", "--teacher", tmp_path / "t", "--data", toy, "--out", tmp_path / "s"),
        "exactly one of --target-params, --keep-ratio or --target-size-mb",
    )
    assert_one_line_error(
        *_run(
            "compress",
            "--teacher",
            tmp_path / "t",
            "--data",
            toy,
            "--out",
            tmp_path / "s",
            "--target-size-mb",
            1.0,
        ),
        "not smaller than the teacher",
    )
    # labels that do not fit the head: BUSI has 3 classes, the teacher 2
    make_busi(tmp_path / "busi")
    assert_one_line_error(
        *_run("eval", tmp_path / "t", "--data", tmp_path / "busi"),
        "3 classes",
        "2 outputs",
        "--num-classes 3",
    )
    assert_one_line_error(
        *_run(
            "compress",
            "--teacher",
            tmp_path / "t",
            "--data",
            tmp_path / "busi",
            "--out",
            tmp_path / "s",
            "--keep-ratio",
            0.5,
        ),
        "3 classes",
    )
    # a teacher of another architecture (a ResNet state dict)
    torch.save(
        {"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(2, 8)},
        tmp_path / "resnet.pth",
    )
    assert_one_line_error(
        *_run(
            "compress",
            "--teacher",
            tmp_path / "resnet.pth",
            "--data",
            toy,
            "--out",
            tmp_path / "s",
            "--keep-ratio",
            0.5,
        ),
        "not a timm VisionTransformer",
    )
    # eval: an artifact needs a target, a checkpoint takes none
    art = tmp_path / "art"
    art.mkdir()
    (art / "model.onnx").write_bytes(b"x")
    (art / "manifest.json").write_text(
        json.dumps({"file": "model.onnx", "format": "onnx", "sha256": "0" * 64})
    )
    assert_one_line_error(*_run("eval", art, "--data", toy), "--target")
    assert_one_line_error(
        *_run("eval", tmp_path / "t", "--data", toy, "--target", "host"), "vitbench export"
    )
    assert_one_line_error(
        *_run("train", tmp_path / "t", "--data", tmp_path / "nowhere", "--out", tmp_path / "o"),
        "does not exist",
    )


def test_train_preset_takes_the_data_sets_head(tmp_path):
    data = make_medmnist(tmp_path / "m.npz", size=32, n=(8, 4, 4))
    code, out = _run(
        "train",
        "tiny",
        "--data",
        data,
        "--out",
        tmp_path / "ck",
        "--img-size",
        32,
        "--in-chans",
        1,
        "--epochs",
        1,
        "--batch-size",
        8,
        "--quiet",
        "--json",
    )
    assert code == 0, out
    cfg = load_checkpoint(tmp_path / "ck").config
    assert (
        cfg.num_classes == 2
        and cfg.in_chans == 1
        and cfg.labels == ("0", "1")
        and cfg.task == "multiclass"
    )


@pytest.mark.slow  # ~40 s: compression, an ONNX export and worker processes
def test_compressed_checkpoint_exports_profiles_and_keeps_accuracy_on_host(tmp_path):
    """A compressed student (uneven heads and MLP widths) exports to ONNX with `vitbench
    export` as any checkpoint, profiles on the host target, and its accuracy measured through
    the host target's infer (ONNX Runtime in a worker process) equals the PyTorch checkpoint's."""
    from harness.artifact import Artifact

    data = make_medmnist(tmp_path / "m.npz", size=16, n=(64, 16, 37), learnable=True)
    save_checkpoint(_small(), tmp_path / "teacher")
    code, out = _run(
        "compress",
        "--teacher",
        tmp_path / "teacher",
        "--data",
        data,
        "--out",
        tmp_path / "student",
        "--keep-ratio",
        0.4,
        "--steps",
        1,
        "--epochs-per-step",
        2,
        "--final-epochs",
        0,
        "--quiet",
    )
    assert code == 0, out
    student = load_checkpoint(tmp_path / "student")
    assert len(set(student.config.mlp_dims)) > 1 or len(set(student.config.num_heads)) > 1
    code, out = _run(
        "export",
        "--model",
        tmp_path / "student",
        "--format",
        "onnx",
        "--out",
        tmp_path / "onnx",
        "--cache",
        tmp_path / "cache",
        "--quiet",
    )
    assert code == 0, out
    art = Artifact.load(tmp_path / "onnx")
    code, out = _run("eval", tmp_path / "student", "--data", data, "--json")
    assert code == 0, out
    ref = json.loads(out)
    code, out = _run("eval", art.folder, "--data", data, "--target", "host", "--json")
    assert code == 0, out
    dev = json.loads(out)
    assert dev["source"] == "host:host" and dev["n"] == ref["n"] == 37
    assert dev["details"]["artifact_sha256"] == art.sha256
    for a, b in zip(dev["metrics"], ref["metrics"], strict=True):
        assert a["name"] == b["name"] and abs(a["value"] - b["value"]) < 1e-6
    code, out = _run("profile", art.folder, "--target", "host", "--quick", "--json")
    assert code == 0, out
    prof = json.loads(out)
    assert prof["stats"]["n"] >= 20 and prof["stats"]["p50"] > 0


def _compress_with_baseline(tmp_path, teacher, toy, *extra):
    return _run(
        "compress",
        "--teacher",
        teacher,
        "--data",
        toy,
        "--out",
        tmp_path / "s",
        "--keep-ratio",
        0.5,
        "--steps",
        1,
        "--epochs-per-step",
        2,
        "--final-epochs",
        2,
        "--batch-size",
        16,
        "--lr",
        3e-3,
        "--baseline",
        "--quiet",
        *extra,
    )


def test_baseline_is_the_students_shape_from_scratch_beside_teacher_and_student(tmp_path, toy):
    """A trained teacher: the baseline has the student's shape, fresh weights, its own
    threshold and operating point; every number the student has, it has; rerunning reuses it."""
    save_checkpoint(_small(), tmp_path / "init")
    code, out = _run(
        "train", tmp_path / "init", "--data", toy, "--out", tmp_path / "t", "--epochs", 6,
        "--batch-size", 16, "--lr", 3e-3, "--quiet",
    )  # fmt: skip
    assert code == 0, out
    code, out = _compress_with_baseline(tmp_path, tmp_path / "t", toy, "--json")
    assert code == 0, out
    report = json.loads(out)
    student = load_checkpoint(tmp_path / "s")
    scratch = load_checkpoint(tmp_path / "s.work" / "baseline")
    assert scratch.config.num_heads == student.config.num_heads
    assert scratch.config.mlp_dims == student.config.mlp_dims
    assert scratch.config.threshold_rule == "youden"  # chosen on val, in its own config.json
    differs = any(
        not torch.equal(a, b)
        for a, b in zip(scratch.state_dict().values(), student.state_dict().values(), strict=True)
    )
    assert differs
    assert report["baseline"]["params"] == report["student"]["params"]
    assert report["baseline_epochs"] == 4  # 1 step x 2 epochs + 2 final
    assert report["baseline_metric"]["name"] == "auc"
    kept = report["baseline_kept"]
    assert kept["ci_low"] <= kept["value"] <= kept["ci_high"]
    assert (
        "accuracy" in report["extra_metrics"] and "baseline" in report["extra_metrics"]["accuracy"]
    )
    points = report["operating_points"]
    assert points["baseline"]["operating_point"]["threshold"] == scratch.config.decision_threshold
    assert set(report["operating_point_retention"]) == {"student", "baseline"}
    # warned exactly when the baseline's interval reaches the teacher's value
    assert len(report["warnings"]) == (kept["ci_high"] >= 1.0)
    # a rerun with the same inputs reuses the baseline instead of training it again
    before = (tmp_path / "s.work" / "baseline" / "model.safetensors").stat().st_mtime_ns
    code, out = _compress_with_baseline(tmp_path, tmp_path / "t", toy)
    assert code == 0, out
    assert (tmp_path / "s.work" / "baseline" / "model.safetensors").stat().st_mtime_ns == before
    assert "from scratch" in out and "baseline " in out


def test_a_teacher_that_cannot_teach_is_called_out(tmp_path, toy):
    """An untrained teacher (chance AUC): its student's shape trained from scratch beats it,
    and compress says so on stderr (text) or in ``warnings`` (--json)."""
    import os
    import subprocess
    import sys

    save_checkpoint(_small(), tmp_path / "weak")
    code, out = _compress_with_baseline(tmp_path, tmp_path / "weak", toy, "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["baseline_kept"]["value"] >= 1.0
    (warning,) = report["warnings"]
    assert "trained from scratch" in warning and "the teacher" in warning
    assert "cannot be expected to help" in warning
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "compress", "--teacher", str(tmp_path / "weak"),
         "--data", str(toy), "--out", str(tmp_path / "s"), "--keep-ratio", "0.5", "--steps", "1",
         "--epochs-per-step", "2", "--final-epochs", "2", "--batch-size", "16", "--lr", "3e-3",
         "--baseline", "--quiet"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "VITBENCH_LOG": str(tmp_path / "log")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith("warning: the student's shape trained from scratch")
    assert "warning:" not in proc.stdout and "from scratch" in proc.stdout
