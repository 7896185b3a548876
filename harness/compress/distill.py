"""The distillation loss: task loss + logit KD + attention-map alignment.

``loss = task(student, y) + kd_weight * T^2 * KL(teacher_T || student_T)
        + attn_weight * mean over mapped layers of KL(teacher attention || student attention)``

Student block i is aligned with teacher block ``layer_map[i]`` (uniform spacing when depths
differ, as in MiniLM/DeiT). Per head where the student's heads are known teacher heads (a
pruned student: ``head_map[i]`` lists the teacher head each student head came from) or the
head counts agree; otherwise the head-averaged maps are compared. Multi-label tasks use the
binary form of KD on each label's sigmoid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

EPS = 1e-8


@dataclass(frozen=True)
class DistillSettings:
    kd_weight: float = 1.0
    temperature: float = 2.0
    attn_weight: float = 1.0


def task_loss(task: str):
    """Cross-entropy for multi-class and ordinal tasks; BCE for multi-label with NaN labels
    (U-Ignore) left out."""
    if task == "multilabel":

        def bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            mask = ~torch.isnan(y)
            if not mask.any():
                return logits.sum() * 0
            return F.binary_cross_entropy_with_logits(logits[mask], y[mask])

        return bce
    return F.cross_entropy


def default_layer_map(student_depth: int, teacher_depth: int) -> list[int]:
    return [
        max(0, round((i + 1) * teacher_depth / student_depth) - 1) for i in range(student_depth)
    ]


def attention_kl(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) over the key axis, averaged over batch, heads and queries."""
    t = teacher.clamp_min(EPS)
    return (t * (t.log() - student.clamp_min(EPS).log())).sum(-1).mean()


def logit_kd(
    teacher: torch.Tensor, student: torch.Tensor, temperature: float, multilabel: bool
) -> torch.Tensor:
    t = temperature
    if multilabel:
        return F.binary_cross_entropy_with_logits(student / t, torch.sigmoid(teacher / t)) * t * t
    return (
        F.kl_div(
            F.log_softmax(student / t, -1),
            F.log_softmax(teacher / t, -1),
            reduction="batchmean",
            log_target=True,
        )
        * t
        * t
    )


class DistillLoss:
    """Callable ``(student, x, y) -> loss`` for the training loop."""

    def __init__(
        self,
        teacher: torch.nn.Module,
        task: str,
        settings: DistillSettings = DistillSettings(),
        layer_map: Sequence[int] | None = None,
        head_map: Sequence[Sequence[int]] | None = None,
    ):
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.task = task
        self.settings = settings
        self.task_loss = task_loss(task)
        self.layer_map = list(layer_map) if layer_map is not None else None
        self.head_map = [list(h) for h in head_map] if head_map is not None else None

    def __call__(self, student: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        s = self.settings
        want_attn = s.attn_weight > 0
        with torch.no_grad():
            t_out = self.teacher(x, return_attention=want_attn)
        t_logits, t_maps = t_out if want_attn else (t_out, None)
        s_out = student(x, return_attention=want_attn)
        s_logits, s_maps = s_out if want_attn else (s_out, None)
        loss = self.task_loss(s_logits, y)
        if s.kd_weight > 0:
            loss = loss + s.kd_weight * logit_kd(
                t_logits, s_logits, s.temperature, self.task == "multilabel"
            )
        if want_attn:
            loss = loss + s.attn_weight * self.attention_loss(t_maps, s_maps)
        return loss

    def attention_loss(
        self, t_maps: Sequence[torch.Tensor], s_maps: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        layer_map = self.layer_map or default_layer_map(len(s_maps), len(t_maps))
        if len(layer_map) != len(s_maps):
            raise ValueError(
                f"layer map has {len(layer_map)} entries for {len(s_maps)} student blocks"
            )
        terms = []
        for i, sm in enumerate(s_maps):
            tm = t_maps[layer_map[i]]
            if tm.shape[-1] != sm.shape[-1]:
                raise ValueError(
                    f"attention alignment needs the same token count: teacher {tm.shape[-1]}, "
                    f"student {sm.shape[-1]} (same image and patch size)"
                )
            if self.head_map is not None:
                tm = tm[:, self.head_map[i]]
            elif tm.shape[1] != sm.shape[1]:
                tm, sm = tm.mean(1, keepdim=True), sm.mean(1, keepdim=True)
            terms.append(attention_kl(tm, sm))
        return torch.stack(terms).mean()
