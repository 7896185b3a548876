"""The from-scratch baseline: the student's final shape trained with the task loss only, from
fresh seeded weights, for the same epoch budget the compression spent on recovery (steps x
epochs per step + final epochs) and with the same training settings.

It answers the question distillation has to answer: does the teacher teach? When the
baseline matches or beats the teacher on the test split, pruning a teacher that is no better
than its own student's shape trained alone cannot be expected to help, and the compression
report says so (:func:`teacher_check`).

The baseline is written to ``work_dir/baseline/`` with ``work_dir/baseline.json`` (the
fingerprint of the student shape, settings and teacher): a rerun with the same inputs reuses
it instead of training it again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from torch.utils.data import Dataset

from harness.compress.schedule import CompressSettings
from harness.compress.train import TrainSettings, fit, world
from harness.errors import VitbenchWarning
from harness.model import build_model, load_checkpoint, save_checkpoint
from harness.model.vit import VisionTransformer
from harness.retention import Retention

BASELINE_DIR = "baseline"
BASELINE_STATE = "baseline.json"


class WeakTeacherWarning(VitbenchWarning):
    """The student's shape trained from scratch matches or beats the teacher."""


def baseline_epochs(settings: CompressSettings) -> int:
    """The recovery epochs a compression run spends: the baseline gets the same."""
    return settings.steps * settings.epochs_per_step + settings.final_epochs


def baseline_train_settings(settings: CompressSettings) -> TrainSettings:
    return TrainSettings(**{**settings.train.to_dict(), "epochs": baseline_epochs(settings)})


def _fingerprint(student: VisionTransformer, settings: CompressSettings, teacher_print: str) -> str:
    shape = student.config.replace(decision_threshold=None, threshold_rule=None).to_dict()
    payload = {
        "shape": shape,
        "train": baseline_train_settings(settings).to_dict(),
        "teacher": teacher_print,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def train_baseline(
    student: VisionTransformer,
    teacher: VisionTransformer,
    train: Dataset,
    val: Dataset,
    metric: str,
    settings: CompressSettings,
    work_dir: str | Path,
    progress: Callable[[str], None] | None = None,
) -> VisionTransformer:
    """``student``'s shape (heads and MLP widths per block) with fresh weights seeded by the
    training seed, trained on ``train`` with the task loss for :func:`baseline_epochs`
    epochs, the best epoch on ``val``'s ``metric`` kept; reused from ``work_dir`` when a
    previous run with the same shape, settings and teacher left it there."""
    say = progress or (lambda _m: None)
    work = Path(work_dir)
    folder, state = work / BASELINE_DIR, work / BASELINE_STATE
    fingerprint = _fingerprint(student, settings, settings.fingerprint(teacher))
    if state.is_file() and (folder / "config.json").is_file():
        if json.loads(state.read_text()).get("fingerprint") == fingerprint:
            say(f"baseline: reusing the from-scratch student in {folder}")
            return load_checkpoint(folder).eval()
    cfg = student.config.replace(
        name=f"{student.config.name or 'student'}-scratch",
        seed=settings.train.seed,
        decision_threshold=None,
        threshold_rule=None,
    )
    epochs = baseline_epochs(settings)
    say(f"baseline: the student's shape from scratch, {epochs} epochs, task loss only")
    model = fit(
        build_model(cfg).train(),
        train,
        baseline_train_settings(settings),
        None,
        val=val,
        metric=metric,
        task=cfg.task,
        progress=lambda m: say(f"  baseline: {m}"),
    )
    rank, _ = world()
    if rank == 0:
        work.mkdir(parents=True, exist_ok=True)
        save_checkpoint(model, folder)
        tmp = state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"fingerprint": fingerprint, "epochs": epochs}, indent=2))
        tmp.replace(state)
    return model.eval()


def teacher_check(kept: Retention, epochs: int) -> str | None:
    """The warning when the baseline (``kept``: its paired retention of the teacher's test
    metric) matches the teacher (the interval reaches 100%) or beats it; None otherwise."""
    if kept.ci_high < 1.0:
        return None
    verdict = "beats" if kept.ci_low > 1.0 else "matches"  # beats: the whole interval above
    return (
        f"the student's shape trained from scratch for the same {epochs} epochs {verdict} the "
        f"teacher: it keeps {kept.value:.1%} [{kept.ci_low:.1%}, {kept.ci_high:.1%}] of the "
        f"teacher's test {kept.name}; distillation from this teacher cannot be expected to "
        "help: train a stronger teacher (more epochs, more data, a larger model) first"
    )


__all__ = [
    "WeakTeacherWarning",
    "baseline_epochs",
    "baseline_train_settings",
    "teacher_check",
    "train_baseline",
]
