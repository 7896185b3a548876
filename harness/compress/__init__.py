"""Compression: teacher training, distillation (logit KD + attention-map alignment), adaptive
head pruning, structured FFN pruning and the iterative schedule that combines them.

    from harness.compress import CompressSettings, compress, compare
    student, history = compress(teacher, train, val, "auc", CompressSettings(target_params=300_000), "work/")
    print("\\n".join(compare(teacher, student, test, "auc").lines()))

Modules: ``train`` (the loop, DDP-ready), ``distill`` (the loss), ``prune`` (importance and
physical removal), ``schedule`` (prune-then-recover steps, resumable), ``report``.
"""

from harness.compress.distill import DistillLoss, DistillSettings, task_loss
from harness.compress.prune import compute_importance, prune, prune_to, select_keep
from harness.compress.report import CompressReport, compare, host_latency
from harness.compress.schedule import CompressSettings, check_target, compress
from harness.compress.train import TrainSettings, fit, predict, score, tensors

__all__ = ["CompressReport", "CompressSettings", "DistillLoss", "DistillSettings", "TrainSettings",
           "check_target", "compare", "compress", "compute_importance", "fit", "host_latency", "predict",
           "prune", "prune_to", "score", "select_keep", "task_loss", "tensors"]
