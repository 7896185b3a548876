"""Training and prediction: one loop for teachers, students and distillation.

The loop runs on CPU or one GPU, and under ``torchrun`` on several GPUs or machines with no
change: when ``WORLD_SIZE`` > 1 it joins the process group (NCCL on GPU, Gloo on CPU), wraps
the model in DistributedDataParallel and shards batches with a DistributedSampler; only rank
0 reports progress. The best weights on the validation metric are kept.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from harness.compress.distill import task_loss
from harness.inference import score

LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    shift: int = 2  # random translation (pixels) for augmentation; 0 turns it off
    seed: int = 0
    max_steps: int | None = None  # stop early (tests)

    def to_dict(self) -> dict:
        return asdict(self)


def random_shift(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    if shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), mode="replicate")
    dy = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])


def device_for() -> torch.device:
    if torch.cuda.is_available():
        rank = int(os.environ.get("LOCAL_RANK", 0))
        return torch.device("cuda", rank)
    return torch.device("cpu")


def world() -> tuple[int, int]:
    """(rank, world size); joins the process group under torchrun."""
    size = int(os.environ.get("WORLD_SIZE", 1))
    if size <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), size


def _loader(
    train: torch.utils.data.Dataset,
    settings: TrainSettings,
    rank: int,
    size: int,
    g: torch.Generator,
) -> tuple[DataLoader, Any]:
    """Shuffled batches of ``train``; under torchrun each rank reads its own share."""
    sampler = None
    if size > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(
            train, num_replicas=size, rank=rank, shuffle=True, seed=settings.seed
        )
    loader = DataLoader(
        train,
        batch_size=settings.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=g if sampler is None else None,
        drop_last=len(train) > settings.batch_size,
    )
    return loader, sampler


def _optimiser(model: torch.nn.Module, settings: TrainSettings, total: int, warmup: int):
    """AdamW with a linear warm-up, then cosine decay to zero at ``total`` steps."""
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=settings.lr,
        weight_decay=settings.weight_decay,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / (warmup + 1)
            if s < warmup
            else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup)))
        ),
    )
    return opt, sched


def _wrap(model: torch.nn.Module, dev: torch.device, size: int) -> torch.nn.Module:
    if size <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


def _epoch(
    net: torch.nn.Module,
    loader: DataLoader,
    loss_fn: LossFn,
    optimiser: tuple[Any, Any],
    shift: int,
    g: torch.Generator,
    dev: torch.device,
    step: int,
    total: int,
) -> tuple[float, int]:
    """One pass over ``loader`` (stopping at ``total`` steps): the summed loss and the step
    count after it."""
    opt, sched = optimiser
    net.train()
    running = 0.0
    for x, y in loader:
        x, y = random_shift(x, shift, g).to(dev), y.to(dev)
        loss = loss_fn(net, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        running += float(loss.detach())
        step += 1
        if step >= total:
            break
    return running, step


def fit(
    model: torch.nn.Module,
    train: torch.utils.data.Dataset,
    settings: TrainSettings,
    loss_fn: LossFn | None = None,
    val: torch.utils.data.Dataset | None = None,
    metric: str | None = None,
    task: str = "multiclass",
    progress: Callable[[str], None] | None = None,
) -> torch.nn.Module:
    """Train ``model`` in place (AdamW, warm-up then cosine decay) and return it with the
    weights of its best validation epoch (the last one without ``val``)."""
    rank, size = world()
    dev = device_for()
    model.to(dev)
    if loss_fn is None:
        base = task_loss(task)

        def loss_fn(m, x, y):
            return base(m(x), y)

    teacher = getattr(loss_fn, "teacher", None)  # a DistillLoss carries its teacher
    if teacher is not None:
        teacher.to(dev)
    net = _wrap(model, dev, size)
    g = torch.Generator().manual_seed(settings.seed + rank)
    loader, sampler = _loader(train, settings, rank, size, g)
    steps_per_epoch = max(1, len(loader))
    total = steps_per_epoch * settings.epochs
    if settings.max_steps is not None:
        total = min(total, settings.max_steps)
    opt, sched = _optimiser(
        model, settings, total, min(total // 2, int(settings.warmup_epochs * steps_per_epoch))
    )
    best, best_state = -math.inf, None
    step = 0
    for epoch in range(settings.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        running, step = _epoch(
            net, loader, loss_fn, (opt, sched), settings.shift, g, dev, step, total
        )
        msg = f"epoch {epoch + 1}/{settings.epochs} loss {running / steps_per_epoch:.4f}"
        if val is not None and metric is not None:  # on every rank: all keep the same best epoch
            result = score(model, val, metric, n_boot=0)
            msg += f" val {metric} {result.value:.4f}"
            if result.value > best or best_state is None:
                best = result.value
                best_state = copy.deepcopy(model.state_dict())
        if progress is not None and rank == 0:
            progress(msg)
        if step >= total:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval()
