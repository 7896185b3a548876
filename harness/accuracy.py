"""Accuracy of a checkpoint (PyTorch) or of an exported artifact on a target's device, on
one split of a data set, with the data set's own metric (and accuracy) and bootstrap
intervals. The images go through :func:`harness.data.preprocess` either way, so the two
numbers compare; images that cannot be read are all listed in one error
(:func:`harness.data.check_images`) before any inference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness import metrics
from harness.data import DataError, Dataset, check_images


@dataclass
class EvalResult:
    source: str  # "pytorch" or "<target>:<device>"
    data: str
    split: str
    n: int
    results: list[metrics.MetricResult]
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "data": self.data,
            "split": self.split,
            "n": self.n,
            "metrics": [r.to_dict() for r in self.results],
            "details": self.details,
        }


def metric_names(ds: Dataset) -> list[str]:
    names = [ds.metric]
    if ds.task != "multilabel" and "accuracy" not in names:
        names.append("accuracy")
    return names


def score_outputs(
    ds: Dataset, scores: np.ndarray, source: str, n_boot: int = 1000, **details: Any
) -> EvalResult:
    if scores.ndim != 2 or scores.shape[0] != len(ds) or scores.shape[1] != ds.num_classes:
        raise DataError(
            f"model outputs have shape {tuple(scores.shape)} but the data set has {len(ds)} images "
            f"and {ds.num_classes} classes"
        )
    results = [metrics.estimate(m, ds.labels, scores, n_boot=n_boot) for m in metric_names(ds)]
    return EvalResult(source, str(ds.root), ds.split, len(ds), results, dict(details))


def model_accuracy(model: Any, ds: Dataset, n_boot: int = 1000) -> EvalResult:
    """PyTorch eager outputs of ``model`` on every image of ``ds``."""
    from harness.inference import predict, tensors

    ds.check_fits(model.config)
    check_images(ds)
    data = tensors(ds, model.config.img_size, model.config.in_chans)
    return score_outputs(ds, predict(model, data), "pytorch", n_boot)


def artifact_accuracy(
    artifact: Any,
    target: Any,
    device: Any,
    ds: Dataset,
    n_boot: int = 1000,
    allow_data_upload: bool = False,
    settings: Any = None,
) -> EvalResult:
    """Outputs of ``artifact`` run by ``target.infer`` on ``device`` (the Target contract)
    with the cell's ``settings`` (ProfileSettings: runtime, compute unit), fed in batches of
    the artifact's own input shape. The images go to a service (AI Hub) only with
    ``allow_data_upload``."""
    if not artifact.inputs:
        raise DataError(f"artifact {artifact.path} records no input shape in its manifest")
    shape = list(artifact.inputs[0]["shape"])
    if len(shape) != 4:
        raise DataError(
            f"artifact {artifact.path} takes input shape {shape}; expected (batch, channels, H, W)"
        )
    dims = [s if isinstance(s, int) and s > 0 else None for s in shape]
    batch, chans, h, w = dims
    if h is None or h != w or chans is None:
        raise DataError(
            f"artifact {artifact.path} takes input shape {shape}; expected a square image size"
        )
    check_images(ds)
    x = ds.inputs(h, chans)
    batch = batch or 64  # a symbolic batch takes any size
    batches = []
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        if len(chunk) < batch and dims[0] is not None:  # a fixed batch: pad, drop the padding after
            chunk = np.concatenate(
                [chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)]
            )
        batches.append(np.ascontiguousarray(chunk, dtype=np.float32))
    # one call: one worker for the whole split
    outputs = target.infer(
        artifact, device, batches, allow_data_upload=allow_data_upload, settings=settings
    )
    chunks = [
        np.asarray(o, dtype=np.float32).reshape(len(b), -1)
        for o, b in zip(outputs, batches, strict=True)
    ]
    return score_outputs(
        ds,
        np.concatenate(chunks)[: len(x)],
        f"{target.name}:{device.name}",
        n_boot,
        artifact_sha256=artifact.sha256,
    )
