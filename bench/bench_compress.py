"""Compression on real chest X-rays: teacher vs student, and what each pillar contributes.

Data: ../shared/data/pneumoniamnist_balanced.npz (PneumoniaMNIST, 28x28 grey, normal vs
pneumonia; pass another MedMNIST .npz with --data). At the data set's own resolution a small
ViT-like teacher (width 192, depth 6, 6 heads of 32, MLP 768, patch 7) is trained, then
compressed to at most 1/8 of its parameters by iterative head + FFN pruning with recovery.
Printed, all measured in this one run on this machine:

* teacher, student and from-scratch baseline (the student's shape trained with the task loss
  only for the same epochs, as `vitbench compress --baseline`) test AUC and accuracy with
  bootstrap 95% intervals, AUC retention with its paired interval, parameter ratio, host
  latency ratio (PyTorch eager, batch 1, p50), and the warning when the baseline reaches the
  teacher;
* the three at their clinical operating points: each model's decision threshold chosen on the
  validation split (Youden's J), then AUC, sensitivity and specificity on the test split with
  stratified bootstrap intervals, and what student and baseline keep of the teacher (paired
  intervals);
* the ablation, each to the same parameter budget and epochs: logit KD + attention alignment
  (the full recipe), logit KD only, pruning without distillation (task loss only), and the
  baseline.

    python bench/bench_compress.py            # ~5-10 minutes on 2 CPU cores
    python bench/bench_compress.py --quick    # a smoke run (1-2 minutes)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.compress import (  # noqa: E402
    CompressSettings,
    DistillSettings,
    TrainSettings,
    baseline_epochs,
    compress,
    compression_report,
    fit,
    operating_points,
    score,
    tensors,
    train_baseline,
)
from harness.data import load_dataset  # noqa: E402
from harness.model import build_model, count_params, describe  # noqa: E402
from harness.model.config import ViTConfig  # noqa: E402


def _default_data() -> Path:
    """../shared/data/ beside the clone (looked for in each folder above it)."""
    for parent in Path(__file__).resolve().parents[1:]:
        candidate = parent / "shared" / "data" / "pneumoniamnist_balanced.npz"
        if candidate.is_file():
            return candidate
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist_balanced.npz"


DEFAULT_DATA = _default_data()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--quick", action="store_true", help="fewer epochs: a smoke run")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1 is fastest on a shared 2-core machine)",
    )
    ap.add_argument("--teacher-epochs", type=int, default=None)
    ap.add_argument(
        "--no-baseline", action="store_true", help="skip the from-scratch baseline (on by default)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_start = time.time()
    data = f"medmnist:{args.data}"
    splits = {s: load_dataset(data, split=s) for s in ("train", "val", "test")}
    train_ds = splits["train"]
    cfg = ViTConfig(
        img_size=28,
        patch_size=7,
        in_chans=1,
        num_classes=train_ds.num_classes,
        embed_dim=192,
        head_dim=32,
        num_heads=(6,) * 6,
        mlp_dims=(768,) * 6,
        name="pneumonia-teacher",
        task=train_ds.task,
        seed=0,
    )
    train, val, test = (
        tensors(splits[s], cfg.img_size, cfg.in_chans) for s in ("train", "val", "test")
    )
    print(
        f"data: {args.data} (train {len(train)}, val {len(val)}, test {len(test)}; "
        f"{train_ds.classes}; metric {train_ds.metric})"
    )
    d = describe(cfg)
    print(
        f"teacher shape: {cfg.img_size}x{cfg.img_size}x{cfg.in_chans}, patch {cfg.patch_size} "
        f"({cfg.num_tokens} tokens), width {cfg.embed_dim}, depth {cfg.depth}, "
        f"heads {cfg.num_heads[0]}x{cfg.head_dim}, MLP {cfg.mlp_dims[0]}: {d['params']:,} "
        f"parameters, {count_params(cfg) * 4 / 1e6:.1f} MB fp32"
    )

    teacher_epochs = args.teacher_epochs or (4 if args.quick else 10)
    base = TrainSettings(epochs=teacher_epochs, batch_size=64, lr=5e-4, weight_decay=0.05, shift=2)
    t0 = time.time()
    teacher = fit(
        build_model(cfg).train(),
        train,
        base,
        val=val,
        metric="auc",
        task=cfg.task,
        progress=lambda m: print(f"  teacher {m}", file=sys.stderr, flush=True),
    )
    print(
        f"teacher trained: {teacher_epochs} epochs in {time.time() - t0:.0f} s; "
        f"val AUC {score(teacher, val, 'auc', 0).value:.4f}",
        flush=True,
    )

    target = count_params(cfg) // 8
    steps, per_step, final = (2, 1, 1) if args.quick else (3, 2, 4)
    student_train = replace(base, lr=5e-4)
    full = CompressSettings(
        target_params=target,
        steps=steps,
        epochs_per_step=per_step,
        final_epochs=final,
        distill=DistillSettings(kd_weight=1.0, temperature=2.0, attn_weight=1.0),
        train=student_train,
    )
    variants = {
        "KD + attention (full)": full,
        "logit KD only": replace(full, distill=replace(full.distill, attn_weight=0.0)),
        "pruning, no distillation": replace(full, use_teacher=False),
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, settings in variants.items():
            t0 = time.time()
            student, history = compress(
                teacher,
                train,
                val,
                "auc",
                settings,
                Path(tmp) / name.split()[0],
                progress=lambda m, n=name: print(f"  {n}: {m}", file=sys.stderr, flush=True),
            )
            results[name] = (student, time.time() - t0)
            print(
                f"{name}: {count_params(student.config):,} parameters in {time.time() - t0:.0f} s",
                flush=True,
            )
        student, scratch = results["KD + attention (full)"][0], None
        t0 = time.time()
        total_epochs = baseline_epochs(full)
        if not args.no_baseline:
            scratch = train_baseline(
                student,
                teacher,
                train,
                val,
                "auc",
                full,
                Path(tmp) / "baseline",
                progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True),
            )
            results["baseline: student shape from scratch"] = (scratch, time.time() - t0)

    print()
    report = compression_report(
        teacher,
        student,
        test,
        "auc",
        extra=("accuracy",),
        baseline=scratch,
        baseline_epochs=total_epochs,
    )
    print("\n".join(report.lines()))
    models = {"teacher": teacher, "student": student}
    models |= {"baseline": scratch} if scratch is not None else {}
    print("\n".join(operating_points(models, splits)["lines"]))
    print()
    print(
        f"ablation (same parameter budget, {total_epochs} student epochs each; "
        "test set, 95% bootstrap intervals):"
    )
    t_auc = report.teacher_metric.value
    print(f"{'variant':36}{'params':>10}{'AUC':>26}{'accuracy':>26}{'AUC kept':>10}")
    print(
        f"{'teacher':36}{count_params(cfg):>10,}{_fmt(report.teacher_metric):>26}"
        f"{_fmt(report.extra_metrics['accuracy']['teacher']):>26}{'100.0%':>10}"
    )
    for name, (model, _) in results.items():
        a, acc = score(model, test, "auc"), score(model, test, "accuracy")
        print(
            f"{name:36}{count_params(model.config):>10,}{_fmt(a):>26}{_fmt(acc):>26}"
            f"{100 * a.value / t_auc:>9.1f}%"
        )
    kept = report.retention
    print()
    print(
        f"target: student keeps >= 97% of teacher AUC -> {kept:.1f}% "
        f"({'met' if kept >= 97 else 'NOT met'}); "
        f"parameters 1/{report.param_ratio:.1f}; host latency ratio {report.latency_ratio:.2f}x; "
        f"total {time.time() - t_start:.0f} s"
    )


def _fmt(r) -> str:
    return f"{r.value:.4f} [{r.ci_low:.3f},{r.ci_high:.3f}]"


if __name__ == "__main__":
    main()
