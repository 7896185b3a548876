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
    # Core ML ML programs computing in fp16 on the Neural Engine or GPU: judged on agreement
    # and cosine, not raw differences
    "coreml-fp16": Tolerance(max_abs=float("inf"), cosine=0.999, top1=0.99),
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


UNITS = {"max_abs": "abs", "cosine": "cosine", "top1": "fraction"}
STATUSES = ("passed", "failed", "pending")


def tolerance_for(precision: str | None) -> Tolerance:
    return TOLERANCES.get(precision or "fp32", TOLERANCES["fp32"])


def judge(max_abs: float, cosine: float, top1: float, precision: str | None) -> list[str]:
    """What is outside the tolerance for ``precision`` (empty when it passes): the one place
    a parity verdict is made, at export, on a device and in the gate."""
    tol = tolerance_for(precision)
    out = []
    if max_abs > tol.max_abs:
        out.append(f"max abs error {max_abs:.3g} > {tol.max_abs:.3g}")
    if cosine < tol.cosine:
        out.append(f"cosine {cosine:.6f} < {tol.cosine}")
    if top1 < tol.top1:
        out.append(f"top-1 agreement {top1:.1%} < {tol.top1:.0%}")
    return out


@dataclass(frozen=True)
class ParityResult:
    """Parity of one artifact's outputs against PyTorch fp32 on the seeded inputs, judged
    against the tolerance of ``precision``; ``where`` says what ran it ("host (onnxruntime
    1.32.0)", "android:Pixel 8"). A ``pending`` result says in ``reason`` why it could not
    run here."""

    status: str  # passed | failed | pending
    precision: str = "fp32"
    where: str = ""
    max_abs: float = float("nan")
    mean_abs: float = float("nan")
    cosine: float = float("nan")
    top1: float = float("nan")
    n: int = 0
    failures: tuple[str, ...] = ()
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def measured(self) -> bool:
        return self.status != "pending"

    @property
    def tolerance(self) -> Tolerance:
        return tolerance_for(self.precision)

    def to_dict(self) -> dict[str, Any]:
        if not self.measured:
            return {"status": self.status, "where": self.where, "reason": self.reason}
        tol = asdict(self.tolerance)
        return {
            "status": self.status,
            "max_abs": self.max_abs,
            "mean_abs": self.mean_abs,
            "cosine": self.cosine,
            "top1": self.top1,
            "n": self.n,
            "tolerance": {k: (None if v == float("inf") else v) for k, v in tol.items()},
            "precision": self.precision,
            "failures": list(self.failures),
            "where": self.where,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParityResult:
        keep = {
            k: d[k]
            for k in (
                "status",
                "precision",
                "where",
                "max_abs",
                "mean_abs",
                "cosine",
                "top1",
                "n",
                "reason",
            )
            if d.get(k) is not None
        }
        return cls(**keep, failures=tuple(d.get("failures") or ()))

    def metric_rows(self) -> list[tuple[str, float, str]]:
        """(name, value, unit) rows for the store; nothing for a pending result."""
        if not self.measured:
            return []
        return [
            ("parity_max_abs", self.max_abs, UNITS["max_abs"]),
            ("parity_cosine", self.cosine, UNITS["cosine"]),
            ("parity_top1", self.top1, UNITS["top1"]),
            ("parity_passed", float(self.passed), "bool"),
        ]

    def summary(self) -> str:
        """One line for a terminal or a report."""
        if not self.measured:
            return f"pending on {self.where or 'a device'}: {self.reason}"
        text = (
            f"{self.status} on {self.where}: max abs {self.max_abs:.3g}, cosine {self.cosine:.6f}, "
            f"top-1 {self.top1:.0%} ({self.n} seeded inputs)"
        )
        return text + (f"; {'; '.join(self.failures)}" if self.failures else "")


def pending(reason: str, where: str = "a device", precision: str = "fp32") -> ParityResult:
    return ParityResult(status="pending", precision=precision, where=where, reason=reason)


def from_metrics(
    metrics: dict[str, float], precision: str | None, where: str = ""
) -> ParityResult | None:
    """The judged result for stored parity metrics (None when the cell has none)."""
    if "parity_cosine" not in metrics:
        return None
    max_abs = metrics.get("parity_max_abs", 0.0)
    cosine, top1 = metrics["parity_cosine"], metrics.get("parity_top1", 1.0)
    failures = judge(max_abs, cosine, top1, precision)
    return ParityResult(
        status="failed" if failures else "passed",
        precision=precision or "fp32",
        where=where,
        max_abs=max_abs,
        cosine=cosine,
        top1=top1,
        failures=tuple(failures),
    )


def _rows(arrays: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    if isinstance(arrays, (list, tuple)):
        return np.concatenate(
            [np.asarray(r, dtype=np.float64).reshape(-1, np.shape(r)[-1]) for r in arrays]
        )
    return np.asarray(arrays, dtype=np.float64)


def check(
    reference: Sequence[np.ndarray] | np.ndarray,
    candidate: Sequence[np.ndarray] | np.ndarray,
    precision: str | None = "fp32",
    where: str = "",
) -> ParityResult:
    """Parity of ``candidate`` outputs against ``reference`` (both (N, classes) or lists of
    per-batch arrays), judged for ``precision``. Outputs of the wrong size fail with the
    numbers rather than raising."""
    ref, out = _rows(reference), _rows(candidate)
    precision = precision or "fp32"
    if ref.shape != out.shape:
        return ParityResult(
            status="failed",
            precision=precision,
            where=where,
            n=int(ref.shape[0]),
            failures=(f"output shape {out.shape} does not match the reference {ref.shape}",),
        )
    diff = np.abs(ref - out)
    a, b = ref.ravel(), out.ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))
    top1 = float(np.mean(ref.argmax(-1) == out.argmax(-1))) if ref.ndim == 2 else 1.0
    max_abs = float(diff.max()) if diff.size else 0.0
    failures = judge(max_abs, cosine, top1, precision)
    return ParityResult(
        status="failed" if failures else "passed",
        precision=precision,
        where=where,
        max_abs=max_abs,
        mean_abs=float(diff.mean()) if diff.size else 0.0,
        cosine=cosine,
        top1=top1,
        n=int(ref.shape[0]),
        failures=tuple(failures),
    )


def save_reference(
    folder: Path, outputs: Sequence[np.ndarray], shape: Sequence[int], count: int, seed: int
) -> Path:
    """Write the PyTorch outputs for :func:`seeded_inputs` (shape, count, seed) beside an
    artifact."""
    path = Path(folder) / REFERENCE_FILE
    np.savez(
        path,
        outputs=np.stack([np.asarray(o, dtype=np.float32) for o in outputs]),
        shape=np.asarray(shape, dtype=np.int64),
        count=np.int64(count),
        seed=np.int64(seed),
    )
    return path


def load_reference(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(inputs, reference outputs) for the artifact in ``folder``; inputs are regenerated
    from the stored seed, not stored."""
    with np.load(Path(folder) / REFERENCE_FILE) as z:
        outputs = list(z["outputs"])
        shape, count, seed = [int(s) for s in z["shape"]], int(z["count"]), int(z["seed"])
    return seeded_inputs(shape, count, seed), outputs
