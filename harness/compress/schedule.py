"""Iterative compression: prune a step, distil to recover, repeat to a target size.

Each step removes the least important heads and MLP neurons (importance from gradients on
held-out batches) so that the parameter count falls geometrically from the teacher's to the
target, then trains the pruned student against the teacher (logit KD + attention alignment
on the heads it kept). Every finished step is written to ``work_dir/step-N/`` (a normal
vitbench checkpoint) with ``work_dir/state.json``; a rerun with the same settings resumes
after the last finished step. The result is ``work_dir/student/``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch.utils.data import DataLoader, Dataset

from harness.compress.distill import DistillLoss, DistillSettings, task_loss
from harness.compress.prune import compute_importance, min_params, prune_to
from harness.compress.train import TrainSettings, fit, world
from harness.errors import UserError
from harness.inference import score
from harness.model import count_params, load_checkpoint, save_checkpoint
from harness.model.vit import VisionTransformer

STATE_FILE = "state.json"


@dataclass(frozen=True)
class CompressSettings:
    target_params: int
    steps: int = 4
    epochs_per_step: int = 2
    final_epochs: int = 4
    distill: DistillSettings = field(default_factory=DistillSettings)
    use_teacher: bool = True  # False: recover with the task loss only (the ablation)
    neuron_importance: str = "taylor"
    importance_batches: int = 8
    train: TrainSettings = field(default_factory=TrainSettings)

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self, teacher: VisionTransformer) -> str:
        """Settings, teacher config and teacher weights: what a resumed run must share."""
        h = hashlib.sha256(
            json.dumps(
                {"settings": self.to_dict(), "teacher": teacher.config.to_dict()}, sort_keys=True
            ).encode()
        )
        for name, tensor in sorted(teacher.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def check_target(teacher: VisionTransformer, target_params: int) -> None:
    n = count_params(teacher.config)
    if target_params >= n:
        raise UserError(
            f"target of {target_params:,} parameters is not smaller than the teacher's {n:,}; "
            "give a smaller --target-params or a --keep-ratio below 1"
        )
    floor = min_params(teacher.config)
    if target_params < floor:
        raise UserError(
            f"target of {target_params:,} parameters is below what head and FFN pruning can reach "
            f"for this teacher ({floor:,}: one head and one neuron per block)"
        )


def _step_targets(start: int, target: int, steps: int) -> list[int]:
    return [int(round(start * (target / start) ** (k / steps))) for k in range(1, steps + 1)]


def _loss_for(teacher, student_task, settings: CompressSettings, head_map):
    if settings.use_teacher:
        return DistillLoss(teacher, student_task, settings.distill, head_map=head_map)
    return None


def compress(
    teacher: VisionTransformer,
    train: Dataset,
    val: Dataset,
    metric: str,
    settings: CompressSettings,
    work_dir: str | Path,
    progress: Callable[[str], None] | None = None,
) -> tuple[VisionTransformer, list[dict]]:
    """Compress ``teacher`` to at most ``settings.target_params`` parameters; returns the
    student and the history (one entry per step: parameters, widths, validation metric)."""
    check_target(teacher, settings.target_params)
    say = progress or (lambda _m: None)
    rank, _ = world()
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    teacher = teacher.eval()
    task = teacher.config.task
    fingerprint = settings.fingerprint(teacher)
    state = {
        "fingerprint": fingerprint,
        "done": 0,
        "head_map": [list(range(h)) for h in teacher.config.num_heads],
        "history": [],
    }
    state_path = work / STATE_FILE
    student = teacher
    if state_path.is_file():
        saved = json.loads(state_path.read_text())
        if saved.get("fingerprint") != fingerprint:
            raise UserError(
                f"{work} holds a compression run with other settings or another teacher; "
                "use a new --work-dir or delete it"
            )
        state = saved
        if state["done"] > 0:
            student = load_checkpoint(work / f"step-{state['done']}")
            say(f"resuming after step {state['done']}/{settings.steps} from {work}")
    if student is teacher:
        student = _copy_model(teacher)
    targets = _step_targets(count_params(teacher.config), settings.target_params, settings.steps)
    imp_loss = task_loss(task)
    for k in range(state["done"] + 1, settings.steps + 1):
        loader = DataLoader(val, batch_size=settings.train.batch_size, shuffle=False)
        batches = [b for _, b in zip(range(settings.importance_batches), loader, strict=False)]
        importance = compute_importance(student, batches, imp_loss, settings.neuron_importance)
        student, keep_heads, _ = prune_to(student, importance, targets[k - 1])
        state["head_map"] = [
            [state["head_map"][i][j] for j in kh] for i, kh in enumerate(keep_heads)
        ]
        n = count_params(student.config)
        say(
            f"step {k}/{settings.steps}: pruned to {n:,} parameters, heads "
            f"{list(student.config.num_heads)}, "
            f"MLP {list(student.config.mlp_dims)}"
        )
        epochs = settings.epochs_per_step + (settings.final_epochs if k == settings.steps else 0)
        train_settings = TrainSettings(
            **{**settings.train.to_dict(), "epochs": epochs, "seed": settings.train.seed + k}
        )
        student = fit(
            student,
            train,
            train_settings,
            _loss_for(teacher, task, settings, state["head_map"]),
            val=val,
            metric=metric,
            task=task,
            progress=lambda m, k=k: say(f"  step {k}: {m}"),
        )
        val_result = score(student, val, metric, n_boot=0)
        state["history"].append(
            {
                "step": k,
                "params": n,
                "num_heads": list(student.config.num_heads),
                "mlp_dims": list(student.config.mlp_dims),
                f"val_{metric}": val_result.value,
            }
        )
        state["done"] = k
        if rank == 0:
            save_checkpoint(student, work / f"step-{k}")
            tmp = state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2))
            tmp.replace(state_path)
    if rank == 0:
        save_checkpoint(student, work / "student")
    return student.eval(), state["history"]


def _copy_model(model: VisionTransformer) -> VisionTransformer:
    """A separate copy of ``model`` (the teacher stays untouched)."""
    from harness.model.vit import build_model

    new = build_model(model.config, init=False)
    new.load_state_dict({k: v.detach().clone() for k, v in model.state_dict().items()})
    return new


__all__ = ["CompressSettings", "check_target", "compress"]
