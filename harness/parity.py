"""Numerical parity of an artifact against PyTorch fp32.

Every runtime is checked the same way: seeded inputs (the same on every machine, so no
patient image ever needs to leave it), the reference outputs PyTorch gives for them, and three
numbers: max absolute error, cosine similarity, top-1 agreement. The exporter writes the
reference outputs beside the artifact (``reference.npz``), so any target can check parity on
its device without the PyTorch model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE_FILE = "reference.npz"
REFERENCE_COUNT = 8  # seeded inputs an export checks


class NotRunnableHere(Exception):
    """Raised by an exporter's ``run`` when this machine cannot run the artifact; the message
    says where it can run ("Core ML predicts only on macOS")."""


@dataclass(frozen=True)
class Tolerance:
    max_abs: float
    cosine: float  # minimum
    top1: float  # minimum fraction of inputs whose arg-max agrees


# fp16 and int8 compare top-1 and cosine rather than raw differences.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs=1e-3, cosine=0.99999, top1=1.0),
    "fp16": Tolerance(max_abs=5e-2, cosine=0.999, top1=0.99),
    "int8": Tolerance(max_abs=float("inf"), cosine=0.98, top1=0.75),
}


def seeded_inputs(shape: Sequence[int], count: int = 4, seed: int = 0) -> list[np.ndarray]:
    """``count`` float32 arrays of ``shape`` (batch included) drawn from a fixed seed: the
    same bytes on every machine, resembling normalised images (zero mean, unit variance,
    with smooth structure so attention is not uniform)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    out = []
    for _ in range(count):
        noise = rng.standard_normal(shape).astype(np.float32)
        if len(shape) == 4 and shape[-1] >= 8 and shape[-2] >= 8:
            # a low-frequency component: blocks of 8x8 pixels share an offset
            b, c, h, w = shape
            low = rng.standard_normal((b, c, (h + 7) // 8, (w + 7) // 8)).astype(np.float32)
            low = np.repeat(np.repeat(low, 8, axis=2), 8, axis=3)[:, :, :h, :w]
            noise = (0.5 * noise + low).astype(np.float32)
        out.append(noise)
    return out


@dataclass(frozen=True)
class ParityResult:
    max_abs: float
    mean_abs: float
    cosine: float
    top1: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def failures(self, precision: str) -> list[str]:
        """What is outside the tolerance for ``precision`` (empty when it passes)."""
        tol = TOLERANCES.get(precision, TOLERANCES["fp32"])
        out = []
        if self.max_abs > tol.max_abs:
            out.append(f"max abs error {self.max_abs:.3g} > {tol.max_abs:.3g}")
        if self.cosine < tol.cosine:
            out.append(f"cosine {self.cosine:.6f} < {tol.cosine}")
        if self.top1 < tol.top1:
            out.append(f"top-1 agreement {self.top1:.1%} < {tol.top1:.0%}")
        return out

    def passed(self, precision: str) -> bool:
        return not self.failures(precision)


def compare(reference: Sequence[np.ndarray] | np.ndarray,
            candidate: Sequence[np.ndarray] | np.ndarray) -> ParityResult:
    """Parity of ``candidate`` outputs against ``reference`` (both (N, classes) or lists of
    per-batch arrays)."""
    ref = np.concatenate([np.asarray(r, dtype=np.float64).reshape(-1, np.shape(r)[-1]) for r in reference]) \
        if isinstance(reference, (list, tuple)) else np.asarray(reference, dtype=np.float64)
    out = np.concatenate([np.asarray(r, dtype=np.float64).reshape(-1, np.shape(r)[-1]) for r in candidate]) \
        if isinstance(candidate, (list, tuple)) else np.asarray(candidate, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"output shape {out.shape} does not match the reference {ref.shape}")
    diff = np.abs(ref - out)
    a, b = ref.ravel(), out.ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))
    top1 = float(np.mean(ref.argmax(-1) == out.argmax(-1))) if ref.ndim == 2 else 1.0
    return ParityResult(max_abs=float(diff.max()), mean_abs=float(diff.mean()), cosine=cosine,
                        top1=top1, n=int(ref.shape[0]))


def save_reference(folder: Path, outputs: Sequence[np.ndarray], shape: Sequence[int], count: int,
                   seed: int) -> Path:
    """Write the PyTorch outputs for :func:`seeded_inputs` (shape, count, seed) beside an
    artifact."""
    path = Path(folder) / REFERENCE_FILE
    np.savez(path, outputs=np.stack([np.asarray(o, dtype=np.float32) for o in outputs]),
             shape=np.asarray(shape, dtype=np.int64), count=np.int64(count), seed=np.int64(seed))
    return path


def load_reference(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(inputs, reference outputs) for the artifact in ``folder``; inputs are regenerated
    from the stored seed, not stored."""
    with np.load(Path(folder) / REFERENCE_FILE) as z:
        outputs = list(z["outputs"])
        shape, count, seed = [int(s) for s in z["shape"]], int(z["count"]), int(z["seed"])
    return seeded_inputs(shape, count, seed), outputs


def artifact_parity(exporter: Any, artifact: Any, inputs: Sequence[np.ndarray],
                    reference: Sequence[np.ndarray], precision: str) -> dict[str, Any]:
    """Run ``artifact`` on ``inputs`` through ``exporter.run`` (where this machine can) and
    compare with the PyTorch ``reference``: {"status": "passed" | "failed" | "pending",
    metrics, tolerance, "where"}. An exporter without ``run``, or one that raises
    :class:`NotRunnableHere`, leaves parity pending with the reason."""
    run = getattr(exporter, "run", None)
    if run is None:
        return {"status": "pending", "where": "a device",
                "reason": f"vitbench has no runtime for {artifact.format} on this host"}
    try:
        outputs = run(artifact, list(inputs))
    except NotRunnableHere as exc:
        return {"status": "pending", "where": "a device", "reason": str(exc)}
    result = compare(list(reference), outputs)
    tol = TOLERANCES.get(precision, TOLERANCES["fp32"])
    failures = result.failures(precision)
    where = exporter.where(artifact) if hasattr(exporter, "where") else "this host"
    return {"status": "failed" if failures else "passed", **result.to_dict(),
            "tolerance": {k: (None if v == float("inf") else v) for k, v in asdict(tol).items()},
            "precision": precision, "failures": failures, "where": where}
