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

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from harness import metrics
from harness.compress.distill import task_loss
from harness.data import Dataset

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


# Preprocess everything up front below this many bytes of model input; decode per item above.
IN_MEMORY_BYTES = 2 << 30


class ModelInputs(torch.utils.data.Dataset):
    """A data set split as (model input, label) pairs through :func:`harness.data.preprocess`.

    Small sets (MedMNIST, a few thousand images) are preprocessed once and held in memory;
    large ones (CheXpert) decode and preprocess each image when it is read. An image that
    cannot be decoded then fails with its path.
    """

    def __init__(self, ds: Dataset, img_size: int, in_chans: int):
        self.ds, self.img_size, self.in_chans = ds, img_size, in_chans
        self.labels = ds.labels.astype(np.float32) if ds.task == "multilabel" else ds.labels.astype(np.int64)
        self._y = torch.from_numpy(self.labels)
        self._x: torch.Tensor | None = None
        if len(ds) * in_chans * img_size * img_size * 4 <= IN_MEMORY_BYTES:
            self._x = torch.from_numpy(ds.inputs(img_size, in_chans))

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._x is not None:
            return self._x[i], self._y[i]
        x = self.ds.subset([i]).inputs(self.img_size, self.in_chans)[0]
        return torch.from_numpy(x), self._y[i]


def tensors(ds: Dataset, img_size: int, in_chans: int) -> ModelInputs:
    """The split as model-ready (input, label) pairs for training and scoring."""
    return ModelInputs(ds, img_size, in_chans)


def random_shift(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    if shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), mode="replicate")
    dy = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * shift + 1, (b,), generator=generator)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


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


@torch.no_grad()
def predict(model: torch.nn.Module, data: torch.utils.data.Dataset | torch.Tensor | np.ndarray,
            batch_size: int = 256) -> np.ndarray:
    """Model outputs (logits) in order, for model-ready inputs or (input, label) pairs."""
    model.eval()
    dev = next(model.parameters()).device
    if isinstance(data, (torch.Tensor, np.ndarray)):
        x = torch.as_tensor(data)
        batches = (x[i:i + batch_size] for i in range(0, len(x), batch_size))
    else:
        batches = (b[0] for b in DataLoader(data, batch_size=batch_size, shuffle=False))
    out = [model(b.to(dev)).float().cpu() for b in batches]
    return torch.cat(out).numpy()


def labels_of(data: torch.utils.data.Dataset) -> np.ndarray:
    if isinstance(data, ModelInputs):
        return data.labels
    if isinstance(data, TensorDataset):
        return data.tensors[1].numpy()
    return np.stack([np.asarray(data[i][1]) for i in range(len(data))])


def score(model: torch.nn.Module, data: torch.utils.data.Dataset, metric: str,
          n_boot: int = 1000) -> metrics.MetricResult:
    """Metric ``metric`` of ``model`` on (input, label) pairs, with its bootstrap interval."""
    return metrics.evaluate(metric, labels_of(data), predict(model, data), n_boot=n_boot)


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
    teacher = getattr(loss_fn, "teacher", None)
    if teacher is not None:
        teacher.to(dev)
    net: torch.nn.Module = model
    if size > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    g = torch.Generator().manual_seed(settings.seed + rank)
    sampler = None
    if size > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(train, num_replicas=size, rank=rank, shuffle=True, seed=settings.seed)
    loader = DataLoader(train, batch_size=settings.batch_size, shuffle=sampler is None, sampler=sampler,
                        generator=g if sampler is None else None, drop_last=len(train) > settings.batch_size)
    steps_per_epoch = max(1, len(loader))
    total = steps_per_epoch * settings.epochs
    if settings.max_steps is not None:
        total = min(total, settings.max_steps)
    warmup = min(total // 2, int(settings.warmup_epochs * steps_per_epoch))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr,
                            weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / (warmup + 1) if s < warmup
        else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))
    best, best_state = -math.inf, None
    step = 0
    for epoch in range(settings.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        running = 0.0
        for x, y in loader:
            x, y = random_shift(x, settings.shift, g).to(dev), y.to(dev)
            loss = loss_fn(net, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            running += float(loss.detach())
            step += 1
            if step >= total:
                break
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
