"""Accuracy of a checkpoint (PyTorch) or of an exported artifact on a target's device, on
one split of a data set, with the data set's own metric (and accuracy) and bootstrap
intervals. The images go through :func:`harness.data.preprocess` either way, so the two
numbers compare; images that cannot be read are all listed in one error
(:func:`harness.data.check_images`) before any inference.

Beside the data set's metric each result has its clinical breakdown
(:mod:`harness.operating_point`): for a binary task, sensitivity, specificity, PPV, NPV and AUC
at the model's decision threshold (its config's, or the artifact manifest's copy of that
config; 0.5 without one); per-class recall and balanced accuracy for a multi-class or graded
task; per-label AUC for a multi-label one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness import metrics
from harness import operating_point as op
from harness.data import DataError, Dataset, check_images


@dataclass
class EvalResult:
    source: str  # "pytorch" or "<target>:<device>"
    data: str
    split: str
    n: int
    results: list[metrics.MetricResult]
    details: dict[str, Any] = field(default_factory=dict)
    operating_point: op.OperatingPoint | None = None  # binary tasks
    threshold_rule: str = ""
    breakdown: list[metrics.MetricResult] = field(default_factory=list)  # per class / label
    undefined: dict[str, str] = field(default_factory=dict)
    # the raw outputs scored (one row per image), for paired comparisons; never serialised
    scores: np.ndarray | None = field(default=None, repr=False, compare=False)
    labels: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "source": self.source,
            "data": self.data,
            "split": self.split,
            "n": self.n,
            "metrics": [r.to_dict() for r in self.results],
            "details": self.details,
        }
        if self.operating_point is not None:
            d["operating_point"] = self.operating_point.to_dict() | {"rule": self.threshold_rule}
        if self.breakdown:
            d["breakdown"] = [r.to_dict() for r in self.breakdown]
            d["undefined"] = dict(self.undefined)
        return d

    def clinical_lines(self) -> list[str]:
        """The operating point or the per-class / per-label breakdown, one line each."""
        rows = []
        point = self.operating_point
        if point is not None:
            rows.append(
                f"threshold {point.threshold:.4f} ({self.threshold_rule}): "
                f"tp {point.tp}  fp {point.fp}  tn {point.tn}  fn {point.fn}"
            )
        for r in (point.results if point is not None else []) + self.breakdown:
            why = (point.undefined if point is not None else {}).get(r.name) or self.undefined.get(
                r.name
            )
            rows.append(
                f"{r.name:18} nan  ({why})"
                if why
                else f"{r.name:18} {r.value:.4f}  95% CI [{r.ci_low:.4f}, {r.ci_high:.4f}]"
            )
        return rows


def metric_names(ds: Dataset) -> list[str]:
    names = [ds.metric]
    if ds.task != "multilabel" and "accuracy" not in names:
        names.append("accuracy")
    return names


def score_outputs(
    ds: Dataset,
    scores: np.ndarray,
    source: str,
    n_boot: int = 1000,
    threshold: tuple[float, str] = (op.DEFAULT_THRESHOLD, "default"),
    **details: Any,
) -> EvalResult:
    if scores.ndim != 2 or scores.shape[0] != len(ds) or scores.shape[1] != ds.num_classes:
        raise DataError(
            f"model outputs have shape {tuple(scores.shape)} but the data set has {len(ds)} images "
            f"and {ds.num_classes} classes"
        )
    results = [metrics.estimate(m, ds.labels, scores, n_boot=n_boot) for m in metric_names(ds)]
    out = EvalResult(source, str(ds.root), ds.split, len(ds), results, dict(details))
    out.scores, out.labels = scores, ds.labels
    return clinical(out, ds, scores, threshold, n_boot)


def clinical(
    out: EvalResult, ds: Dataset, scores: np.ndarray, threshold: tuple[float, str], n_boot: int
) -> EvalResult:
    """``out`` with the task's clinical breakdown added."""
    if ds.task == "multilabel":
        out.breakdown, out.undefined = op.per_label_auc(ds.labels, scores, ds.classes, n_boot)
    elif op.is_binary(ds.task, ds.num_classes):
        out.operating_point = op.operating_point(ds.labels, scores, threshold[0], n_boot)
        out.threshold_rule = threshold[1]
    else:
        out.breakdown, out.undefined = op.per_class_recall(ds.labels, scores, ds.classes, n_boot)
        if ds.metric != "balanced_accuracy":
            out.breakdown.append(metrics.estimate("balanced_accuracy", ds.labels, scores, n_boot))
    return out


def threshold_for(config: Any, ds: Dataset, warn: bool) -> tuple[float, str]:
    """The model's decision threshold for a binary data set (0.5 and, with ``warn``, one
    warning without one); unused otherwise."""
    if not op.is_binary(ds.task, ds.num_classes):
        return op.DEFAULT_THRESHOLD, "default"
    return op.threshold_of(config or {}, warn=warn)


def model_accuracy(
    model: Any, ds: Dataset, n_boot: int = 1000, warn_no_threshold: bool = False
) -> EvalResult:
    """PyTorch eager outputs of ``model`` on every image of ``ds``, a binary task scored at
    the model config's decision threshold."""
    from harness.inference import predict, tensors

    ds.check_fits(model.config)
    check_images(ds)
    data = tensors(ds, model.config.img_size, model.config.in_chans)
    threshold = threshold_for(model.config, ds, warn_no_threshold)
    return score_outputs(ds, predict(model, data), "pytorch", n_boot, threshold)


def artifact_accuracy(
    artifact: Any,
    target: Any,
    device: Any,
    ds: Dataset,
    n_boot: int = 1000,
    allow_data_upload: bool = False,
    settings: Any = None,
    warn_no_threshold: bool = False,
) -> EvalResult:
    """Outputs of ``artifact`` run by ``target.infer`` on ``device`` (the Target contract)
    with the cell's ``settings`` (ProfileSettings: runtime, compute unit), fed in batches of
    the artifact's own input shape. The images go to a service (AI Hub) only with
    ``allow_data_upload``. A binary task is scored at the decision threshold of the model
    config the manifest carries."""
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
        threshold_for((artifact.manifest.get("model") or {}).get("config"), ds, warn_no_threshold),
        artifact_sha256=artifact.sha256,
    )
