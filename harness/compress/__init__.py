"""Compression: teacher training, distillation (logit KD + attention-map alignment), adaptive
head pruning, structured FFN pruning and the iterative schedule that combines them.

    from harness.compress import CompressSettings, compress, compression_report
    settings = CompressSettings(target_params=300_000)
    student, history = compress(teacher, train, val, "auc", settings, "work/")
    print("\\n".join(compression_report(teacher, student, test, "auc").lines()))

Modules: ``train`` (the loop, DDP-ready), ``distill`` (the loss), ``prune`` (importance and
physical removal), ``schedule`` (prune-then-recover steps, resumable), ``baseline`` (the
student's shape from scratch: does the teacher teach?), ``report``, ``points`` (clinical
operating points side by side).
"""

from harness.compress.baseline import (
    WeakTeacherWarning,
    baseline_epochs,
    teacher_check,
    train_baseline,
)
from harness.compress.distill import DistillLoss, DistillSettings, task_loss
from harness.compress.points import operating_points, with_threshold
from harness.compress.prune import compute_importance, prune, prune_to, select_keep
from harness.compress.report import CompressReport, compression_report, host_latency
from harness.compress.schedule import CompressSettings, check_target, compress
from harness.compress.train import TrainSettings, fit
from harness.inference import predict, score, tensors

__all__ = [
    "CompressReport",
    "CompressSettings",
    "DistillLoss",
    "DistillSettings",
    "TrainSettings",
    "WeakTeacherWarning",
    "baseline_epochs",
    "check_target",
    "compress",
    "compression_report",
    "compute_importance",
    "fit",
    "host_latency",
    "operating_points",
    "predict",
    "prune",
    "prune_to",
    "score",
    "select_keep",
    "task_loss",
    "teacher_check",
    "tensors",
    "train_baseline",
    "with_threshold",
]
