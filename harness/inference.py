"""PyTorch inference on a data set split: model-ready (input, label) pairs through the one
preprocessing (:func:`harness.data.preprocess`), a model's outputs on them, and a metric with
its interval. Training, compression and accuracy all score through here; nothing here trains.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from harness import metrics
from harness.data import Dataset

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
        self.labels = (
            ds.labels.astype(np.float32) if ds.task == "multilabel" else ds.labels.astype(np.int64)
        )
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


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    data: torch.utils.data.Dataset | torch.Tensor | np.ndarray,
    batch_size: int = 256,
) -> np.ndarray:
    """Model outputs (logits) in order, for model-ready inputs or (input, label) pairs."""
    model.eval()
    dev = next(model.parameters()).device
    if isinstance(data, (torch.Tensor, np.ndarray)):
        x = torch.as_tensor(data)
        batches = (x[i : i + batch_size] for i in range(0, len(x), batch_size))
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


def score(
    model: torch.nn.Module, data: torch.utils.data.Dataset, metric: str, n_boot: int = 1000
) -> metrics.MetricResult:
    """Metric ``metric`` of ``model`` on (input, label) pairs, with its bootstrap interval."""
    return metrics.estimate(metric, labels_of(data), predict(model, data), n_boot=n_boot)
