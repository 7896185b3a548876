from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.compress import (
    CompressSettings,
    DistillSettings,
    TrainSettings,
    compress,
    compression_report,
    fit,
    score,
    tensors,
)
from harness.data import load_dataset
from harness.errors import UserError
from harness.model import build_model, count_params, load_checkpoint
from tests.support.data_fixtures import make_medmnist
from tests.support.models import small_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def xray(tmp_path):
    """A learnable binary task at 16 px, 1 channel, in the MedMNIST layout."""
    path = make_medmnist(tmp_path / "toy.npz", size=16, n=(96, 32, 32), learnable=True)
    return {s: tensors(load_dataset(path, split=s), 16, 1) for s in ("train", "val", "test")}


def _cfg(**kw):
    base = dict(
        img_size=16,
        patch_size=4,
        in_chans=1,
        num_classes=2,
        embed_dim=32,
        head_dim=8,
        num_heads=(4, 4),
        mlp_dims=(64, 64),
        seed=0,
    )
    base.update(kw)
    return small_config(**base)


def test_fit_learns_a_separable_task(xray):
    model = build_model(_cfg())
    before = score(model, xray["test"], "auc", n_boot=0).value
    fit(
        model.train(),
        xray["train"],
        TrainSettings(epochs=6, batch_size=16, lr=3e-3, shift=1),
        val=xray["val"],
        metric="auc",
    )
    after = score(model, xray["test"], "auc", n_boot=50)
    assert after.value > 0.95 and after.value > before
    assert after.ci_low <= after.value <= after.ci_high


def test_compress_reaches_target_writes_checkpoints_and_resumes(xray, tmp_path):
    teacher = fit(
        build_model(_cfg()).train(),
        xray["train"],
        TrainSettings(epochs=4, batch_size=16, lr=3e-3),
        val=xray["val"],
        metric="auc",
    )
    target = count_params(teacher.config) // 2
    settings = CompressSettings(
        target_params=target,
        steps=2,
        epochs_per_step=2,
        final_epochs=1,
        train=TrainSettings(batch_size=16, lr=2e-3),
        importance_batches=2,
    )
    logs = []
    student, history = compress(
        teacher, xray["train"], xray["val"], "auc", settings, tmp_path / "work", logs.append
    )
    assert count_params(student.config) <= target
    assert [h["step"] for h in history] == [1, 2] and history[0]["params"] > history[1]["params"]
    saved = load_checkpoint(tmp_path / "work" / "student")
    assert saved.config == student.config and sum(
        p.numel() for p in saved.parameters()
    ) == count_params(saved.config)
    cfg = json.loads((tmp_path / "work" / "student" / "config.json").read_text())
    assert cfg["num_heads"] == list(student.config.num_heads) and cfg["mlp_dims"] == list(
        student.config.mlp_dims
    )
    assert sum(cfg["num_heads"]) < 8 or sum(cfg["mlp_dims"]) < 128
    # the teacher is unchanged
    assert teacher.config.num_heads == (4, 4)
    # resume: step 1 done, step 2 lost -> only step 2 runs again
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    state["done"], state["history"] = 1, state["history"][:1]
    state["head_map"] = [
        list(range(h)) for h in load_checkpoint(tmp_path / "work" / "step-1").config.num_heads
    ]
    (tmp_path / "work" / "state.json").write_text(json.dumps(state))
    logs.clear()
    again, history2 = compress(
        teacher, xray["train"], xray["val"], "auc", settings, tmp_path / "work", logs.append
    )
    assert logs[0].startswith("resuming after step 1/2")
    assert not any(m.startswith("step 1/2") for m in logs) and any(
        m.startswith("step 2/2") for m in logs
    )
    assert [h["step"] for h in history2] == [1, 2]
    report = compression_report(
        teacher, again, xray["test"], "auc", history2, extra=("accuracy",), n_boot=50
    )
    assert report.param_ratio >= 2 and report.student_latency.n >= 30
    assert report.student_metric.value > 0.8
    text = "\n".join(report.lines())
    assert "retention" in text and "host p50" in text and "GMACs" in text
    # another run's settings in the same folder are refused
    with pytest.raises(UserError, match="other settings"):
        compress(
            teacher,
            xray["train"],
            xray["val"],
            "auc",
            CompressSettings(target_params=target, steps=3),
            tmp_path / "work",
        )


def test_compress_refuses_a_target_not_below_the_teacher(xray, tmp_path):
    teacher = build_model(_cfg())
    with pytest.raises(UserError, match="not smaller than the teacher"):
        compress(
            teacher,
            xray["train"],
            xray["val"],
            "auc",
            CompressSettings(target_params=count_params(teacher.config) + 1),
            tmp_path,
        )
    with pytest.raises(UserError, match="below what head and FFN pruning can reach"):
        compress(
            teacher, xray["train"], xray["val"], "auc", CompressSettings(target_params=10), tmp_path
        )


def test_no_distillation_and_logit_only_variants_run(xray, tmp_path):
    teacher = build_model(_cfg())
    for name, settings in {
        "nodistill": CompressSettings(
            target_params=count_params(teacher.config) * 2 // 3,
            steps=1,
            epochs_per_step=1,
            final_epochs=0,
            use_teacher=False,
            train=TrainSettings(batch_size=32),
        ),
        "logit": CompressSettings(
            target_params=count_params(teacher.config) * 2 // 3,
            steps=1,
            epochs_per_step=1,
            final_epochs=0,
            distill=DistillSettings(attn_weight=0.0),
            train=TrainSettings(batch_size=32),
        ),
    }.items():
        student, _ = compress(teacher, xray["train"], xray["val"], "auc", settings, tmp_path / name)
        assert count_params(student.config) <= settings.target_params


DDP_SCRIPT = """
import sys, torch
sys.path.insert(0, {repo!r})
torch.set_num_threads(1)
from harness.compress import CompressSettings, TrainSettings, compress, fit, tensors
from harness.data import load_dataset
from harness.model import ViTConfig, build_model, count_params
import json
import torch.distributed as dist
cfg = ViTConfig.from_dict(json.loads({cfg!r}))
train = tensors(load_dataset({data!r}, split="train"), 16, 1)
val = tensors(load_dataset({data!r}, split="val"), 16, 1)
model = fit(build_model(cfg).train(), train, TrainSettings(epochs=2, batch_size=8), val=val,
            metric="auc")
# every rank holds the same weights after DDP steps (gradients were averaged)
w = model.blocks[0].attn.qkv.weight.detach().clone()
gathered = [torch.zeros_like(w) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, w)
assert all(torch.equal(g, gathered[0]) for g in gathered), "ranks diverged"
# the compression schedule too: every rank prunes to the same shape and trains in step
settings = CompressSettings(target_params=count_params(model.config) // 2, steps=2,
                            epochs_per_step=1, final_epochs=0, train=TrainSettings(batch_size=8),
                            importance_batches=2)
student, _ = compress(model, train, val, "auc", settings, {work!r} + f"/rank{{dist.get_rank()}}")
shapes = [None] * dist.get_world_size()
dist.all_gather_object(shapes, (student.config.num_heads, student.config.mlp_dims))
assert all(s == shapes[0] for s in shapes), shapes
with open({work!r} + f"-rank{{dist.get_rank()}}.ok", "w") as fh:  # stdout of two ranks interleaves
    fh.write(f"rank {{dist.get_rank()}} of {{dist.get_world_size()}} ok")
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_same_training_code_runs_under_torchrun_ddp(tmp_path):
    data = make_medmnist(tmp_path / "toy.npz", size=16, n=(64, 16, 16), learnable=True)
    script = tmp_path / "ddp_train.py"
    script.write_text(
        DDP_SCRIPT.format(
            repo=str(REPO), data=str(data), work=str(tmp_path / "work"), cfg=_cfg().to_json()
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--standalone",
            str(script),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        assert (tmp_path / f"work-rank{rank}.ok").read_text() == f"rank {rank} of 2 ok"
    assert torch.distributed.is_available()


def test_large_sets_decode_per_item_with_the_same_inputs(tmp_path, monkeypatch):
    from harness import inference as train_mod
    from harness.data import DataError
    from tests.support.data_fixtures import make_folder

    ds = load_dataset(make_folder(tmp_path / "f", classes=("a", "b"), per_class=5), split="train")
    held = tensors(ds, 16, 3)
    monkeypatch.setattr(train_mod, "IN_MEMORY_BYTES", 0)  # a "large" set: nothing held in memory
    lazy = tensors(ds, 16, 3)
    assert lazy._x is None and held._x is not None
    for i in range(len(ds)):
        assert torch.equal(lazy[i][0], held[i][0]) and lazy[i][1] == held[i][1]
    model = build_model(_cfg(in_chans=3))
    assert score(model, lazy, "auc", n_boot=0).value == score(model, held, "auc", n_boot=0).value
    ds.items[0].write_bytes(b"broken")
    with pytest.raises(DataError, match=ds.items[0].name):
        tensors(ds, 16, 3)[0]


def test_a_work_dir_of_another_teacher_is_refused(xray, tmp_path):
    settings = CompressSettings(
        target_params=count_params(_cfg()) * 2 // 3,
        steps=1,
        epochs_per_step=1,
        final_epochs=0,
        train=TrainSettings(batch_size=32),
    )
    compress(build_model(_cfg()), xray["train"], xray["val"], "auc", settings, tmp_path)
    other = build_model(_cfg(seed=9))  # same shape, other weights
    with pytest.raises(UserError, match="another teacher"):
        compress(other, xray["train"], xray["val"], "auc", settings, tmp_path)


@pytest.mark.parametrize(
    ("value", "low", "high", "verdict"),
    [
        (0.90, 0.86, 0.94, None),  # the teacher is clearly better: it can teach
        (0.97, 0.93, 1.01, "matches"),  # cannot be told apart on this split
        (1.00, 1.00, 1.00, "matches"),
        (1.04, 0.99, 1.08, "matches"),  # better by its value, not by its interval
        (1.04, 1.01, 1.08, "beats"),
    ],
)
def test_teacher_check_warns_when_the_baseline_reaches_the_teacher(value, low, high, verdict):
    from harness.compress import teacher_check
    from harness.retention import Retention

    warning = teacher_check(Retention("auc", value, low, high), epochs=12)
    if verdict is None:
        assert warning is None
    else:
        assert f"for the same 12 epochs {verdict} the teacher" in warning
        assert f"{value:.1%} [{low:.1%}, {high:.1%}] of the teacher's test auc" in warning
