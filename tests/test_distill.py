from __future__ import annotations

import math

import torch

from harness.compress.distill import (
    DistillLoss,
    DistillSettings,
    attention_kl,
    default_layer_map,
    logit_kd,
    task_loss,
)
from harness.compress.prune import prune
from harness.model import build_model
from tests.support.models import small_config


def test_attention_kl_is_zero_for_equal_maps_and_positive_otherwise():
    a = torch.softmax(torch.randn(2, 3, 5, 5), -1)
    b = torch.softmax(torch.randn(2, 3, 5, 5), -1)
    assert attention_kl(a, a).item() < 1e-6
    assert attention_kl(a, b).item() > 0.01


def test_logit_kd_zero_for_identical_logits_and_t_squared_scaling():
    t = torch.randn(4, 3)
    assert logit_kd(t, t, 2.0, False).abs().item() < 1e-6
    s = torch.randn(4, 3)
    assert logit_kd(t, s, 1.0, False).item() > 0
    # multi-label KD: BCE against the teacher's sigmoids, minimised at the teacher's logits
    better = logit_kd(t, t, 1.0, True).item()
    assert better < logit_kd(t, s, 1.0, True).item()


def test_multilabel_task_loss_ignores_nan_labels():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    y = torch.tensor([[1.0, float("nan")], [0.0, float("nan")]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y[:, 0])
    assert torch.allclose(task_loss("multilabel")(logits, y), expected)


def test_layer_map_spreads_student_blocks_over_teacher_depth():
    assert default_layer_map(3, 12) == [3, 7, 11]
    assert default_layer_map(4, 4) == [0, 1, 2, 3]


def test_pruned_student_aligns_with_the_teacher_heads_it_kept():
    teacher = build_model(small_config(num_heads=(4, 4, 4), seed=2))
    keep = [[0, 3], [1], [2, 3]]
    student = prune(teacher, keep)
    x = torch.randn(3, 3, 32, 32)
    loss = DistillLoss(
        teacher, "multiclass", DistillSettings(kd_weight=1.0, attn_weight=1.0), head_map=keep
    )
    with torch.no_grad():
        _, t_maps = teacher(x, return_attention=True)
        _, s_maps = student(x, return_attention=True)
        # attention maps of kept heads are untouched by pruning (only the outputs change)
        assert torch.allclose(s_maps[0], t_maps[0][:, [0, 3]], atol=1e-6)
        assert loss.attention_loss(t_maps, s_maps).item() < 1e-3
        wrong = DistillLoss(teacher, "multiclass", head_map=[[1, 2], [0], [0, 1]])
        assert (
            wrong.attention_loss(t_maps, s_maps).item()
            > 10 * loss.attention_loss(t_maps, s_maps).item()
        )


def test_different_student_uses_head_averaged_maps_and_trains():
    torch.manual_seed(0)
    teacher = build_model(small_config(num_heads=(4, 4, 4), seed=2))
    student = build_model(small_config(num_heads=(1, 2), mlp_dims=(32, 32), seed=5)).train()
    loss_fn = DistillLoss(teacher, "multiclass", DistillSettings(attn_weight=1.0))
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 5, (8,))
    loss = loss_fn(student, x, y)
    assert math.isfinite(loss.item()) and loss.requires_grad
    loss.backward()
    assert student.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    first = loss.item()
    for _ in range(20):
        opt.zero_grad()
        loss = loss_fn(student, x, y)
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.7
