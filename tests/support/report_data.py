"""Realistic synthetic results, written through the Store API, for report tests and
bench/bench_report.py.

A nightly plan runs two models in several formats on phones (AI Hub Snapdragon, a MediaTek
phone on adb), a Mac and the host. Latencies are right-skewed (log-normal body plus rare
spikes), each night's level wanders a little, one cell slows down by ``SLOWDOWN`` from night
``SLOW_FROM`` (1-based: the 7th run) on, and one cell is very noisy within and between nights
but never changes. Some cells fail, with the reasons real runs give.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from harness.parity import REFERENCE_COUNT, ParityResult, judge
from harness.store import CellRecord, Store

PLAN = "nightly"
SLOW_FROM = 7  # the 7th run (1-based) is the first slow one
SLOWDOWN = 1.25


@dataclass(frozen=True)
class SyntheticCell:
    model: str
    export: str
    precision: str
    target: str
    device: str
    chipset: str
    os: str
    runtime: str
    compute_unit: str
    p50_ms: float
    cv: float = 0.04  # within-run spread
    night_jitter: float = 0.01  # sd of the night-to-night level (log scale)
    accuracy: float = 0.86
    shares: tuple[float, float, float] = (0.0, 0.0, 1.0)  # npu, gpu, cpu
    fails: str = ""  # failure kind when it fails every night

    @property
    def key(self) -> str:
        text = f"{self.model}|{self.export}|{self.target}|{self.device}"
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    @property
    def label(self) -> str:
        return f"{self.model} · {self.export} · {self.target}:{self.device}"


S24 = ("aihub", "Samsung Galaxy S24 (Family)", "qualcomm-snapdragon-8gen3", "Android 14")
MTK = ("android", "Xiaomi 14T Pro", "mediatek-dimensity-9300", "Android 14")
MAC = ("apple", "MacBook Pro M3", "apple-m3", "macOS 14.5")
HOST = ("host", "host", "AMD EPYC 7763", "Linux 6.1")

CELLS: list[SyntheticCell] = [
    SyntheticCell(
        "lite",
        "executorch/qnn/int8",
        "int8",
        *S24,
        "qnn",
        "npu",
        41.0,
        shares=(0.94, 0.0, 0.06),
        accuracy=0.852,
    ),
    SyntheticCell("lite", "onnx", "fp32", *S24, "ort", "cpu", 182.0, cv=0.06, accuracy=0.861),
    SyntheticCell(
        "lite", "executorch/xnnpack/fp32", "fp32", *S24, "xnnpack", "cpu", 171.0, accuracy=0.861
    ),
    SyntheticCell(
        "lite",
        "executorch/xnnpack/int8",
        "int8",
        *MTK,
        "xnnpack",
        "cpu",
        96.0,
        cv=0.35,
        night_jitter=0.05,
        accuracy=0.848,
    ),  # the noisy one
    SyntheticCell(
        "lite", "executorch/xnnpack/fp32", "fp32", *MTK, "xnnpack", "cpu", 214.0, accuracy=0.861
    ),
    SyntheticCell(
        "lite", "executorch/neuropilot/int8", "int8", *MTK, "neuron", "npu", 0.0, fails="model"
    ),
    SyntheticCell(
        "lite",
        "coreml/fp16",
        "fp16",
        *MAC,
        "coreml",
        "ane",
        9.5,
        shares=(0.81, 0.12, 0.07),
        accuracy=0.859,
    ),
    SyntheticCell(
        "lite",
        "executorch/coreml/fp16",
        "fp16",
        *MAC,
        "executorch",
        "ane",
        11.2,
        shares=(0.78, 0.14, 0.08),
        accuracy=0.859,
    ),
    SyntheticCell("lite", "onnx", "fp32", *HOST, "ort", "cpu", 63.0, accuracy=0.861),
    SyntheticCell("tiny", "onnx", "fp32", *HOST, "ort", "cpu", 7.8, accuracy=0.801),
    SyntheticCell(
        "tiny", "executorch/xnnpack/fp32", "fp32", *HOST, "xnnpack", "cpu", 6.9, accuracy=0.801
    ),
    SyntheticCell(
        "tiny",
        "executorch/qnn/int8",
        "int8",
        *S24,
        "qnn",
        "npu",
        4.1,
        shares=(0.9, 0.0, 0.1),
        accuracy=0.792,
    ),
]
SLOW_CELL = CELLS[0]  # lite · executorch/qnn/int8 on the Galaxy S24 (a QNN SDK regression)
NOISY_CELL = CELLS[3]
FAILING_CELL = CELLS[5]
FAILURE_REASONS = {
    "model": "QNN/NeuroPilot compile failed: op 'aten::_softmax' with dim=-1 on int8 "
    "is not supported",
    "infrastructure": "device Xiaomi 14T Pro went offline (adb: device not found) after 3 attempts",
}


def samples_for(cell: SyntheticCell, level: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Right-skewed latencies around ``level`` (median) with ~0.5% spikes of 1.5-3x."""
    sigma = float(np.sqrt(np.log(1 + cell.cv**2)))
    x = level * rng.lognormal(0.0, sigma, size=n)
    spikes = rng.random(n) < 0.005
    x[spikes] *= rng.uniform(1.5, 3.0, size=int(spikes.sum()))
    return x


def parity_on_device(cell: SyntheticCell, rng: np.random.Generator) -> ParityResult:
    """Parity as a target judges and stores it (harness.parity), typical of the precision."""
    max_abs_tol, cosine = {"int8": (0.012, 0.9991), "fp16": (0.002, 0.99998), "fp32": (2e-5, 1.0)}[
        cell.precision
    ]
    max_abs = max_abs_tol * rng.uniform(0.3, 0.9)
    top1 = 1.0 if cell.precision != "int8" else 0.995
    failures = tuple(judge(max_abs, cosine, top1, cell.precision))
    return ParityResult(
        status="failed" if failures else "passed",
        precision=cell.precision,
        where=f"{cell.target}:{cell.device}",
        max_abs=max_abs,
        mean_abs=max_abs / 3,
        cosine=cosine,
        top1=top1,
        n=REFERENCE_COUNT,
        failures=failures,
    )


def metric_rows(
    cell: SyntheticCell, x: np.ndarray, rng: np.random.Generator
) -> tuple[list[tuple[str, float, str]], ParityResult]:
    """The cell's metric rows and the parity judgement they include."""
    from harness.measure import summarize
    from harness.target import Device, Profile

    # What a target reports (Profile.metric_rows), with a lighter bootstrap to keep tests fast.
    prof = Profile(
        cell.target,
        Device(cell.target, cell.device, cell.chipset, cell.os),
        "a" * 64,
        cell.runtime,
        list(x),
        summarize(x, n_boot=300),
    )
    mean = float(np.mean(x))
    prof.metrics.update(
        load_cold_ms=mean * 9 + 120 * rng.uniform(0.9, 1.1),
        load_warm_ms=mean * 2.5 + 15,
        first_inference_ms=mean * 1.8,
        peak_memory_mb=(48.0 if cell.model == "lite" else 9.0)
        * (0.55 if cell.precision == "int8" else 1.0)
        + rng.uniform(30, 34),
    )
    npu, gpu, cpu = cell.shares
    prof.metrics.update(compute_share_npu=npu, compute_share_gpu=gpu, compute_share_cpu=cpu)
    rows = prof.metric_rows()
    parity = parity_on_device(cell, rng)
    rows += parity.metric_rows()
    reference = 0.861 if cell.model == "lite" else 0.801
    acc = cell.accuracy + rng.normal(0, 0.001)
    rows += [
        ("accuracy", acc, "auc"),
        ("accuracy_ci_low", acc - 0.021, "auc"),
        ("accuracy_ci_high", acc + 0.019, "auc"),
        ("accuracy_reference", reference, "auc"),
    ]
    return rows, parity


def write_nightly(
    store: Store,
    runs: int = 12,
    cells: list[SyntheticCell] | None = None,
    samples: tuple[int, int] = (200, 600),
    seed: int = 7,
    plan: str = PLAN,
    start: float = 1_790_000_000.0,
    slow_cell: SyntheticCell | None = SLOW_CELL,
) -> list[str]:
    """Write ``runs`` nightly runs (one a day) and return their ids, oldest first."""
    cells = CELLS if cells is None else cells
    rng = np.random.default_rng(seed)
    plan_doc = {
        "name": plan,
        "budgets": {"latency_ms": 200.0, "percentile": 90, "accuracy_retention": 0.95},
    }
    ids = []
    for night in range(1, runs + 1):
        run_id = f"{plan}-{night:03d}"
        commit = hashlib.sha1(f"commit{night}".encode()).hexdigest()
        store.create_run(
            run_id,
            plan,
            "planhash-" + plan,
            commit,
            {"cpu": "AMD EPYC 7763", "hostname": "ci-7"},
            {"vitbench": "0.1.0", "torch": "2.13.0"},
            plan_doc,
            len(cells),
        )
        with store.transaction() as cur:  # nights are a day apart, in order
            cur.execute(
                store._sql("UPDATE runs SET started_at = ? WHERE id = ?"),
                (start + night * 86400.0, run_id),
            )
        for cell in cells:
            rec = CellRecord(
                cell_key=cell.key,
                model_name=cell.model,
                model_hash="m" + cell.model,
                export_label=cell.export,
                export_spec={"format": cell.export.split("/")[0], "precision": cell.precision},
                target=cell.target,
                device_name=cell.device,
                device_chipset=cell.chipset,
                device_os=cell.os,
            )
            cid = store.start_cell(run_id, rec)
            if cell.fails:
                store.finish_cell(
                    cid,
                    status="failed",
                    failure_kind=cell.fails,
                    failure_reason=FAILURE_REASONS[cell.fails],
                    runtime=cell.runtime,
                )
                continue
            level = cell.p50_ms * float(np.exp(rng.normal(0, cell.night_jitter)))
            if slow_cell is not None and cell.key == slow_cell.key and night >= SLOW_FROM:
                level *= SLOWDOWN
            x = samples_for(cell, level, int(rng.integers(samples[0], samples[1] + 1)), rng)
            warnings = (
                ["CPU fallback for 6% of operators"] if cell.shares[2] and cell.shares[0] else []
            )
            rows, parity = metric_rows(cell, x, rng)
            store.finish_cell(
                cid,
                status="done",
                artifact_sha256=hashlib.sha256(cell.key.encode()).hexdigest(),
                runtime=cell.runtime,
                compute_unit=cell.compute_unit,
                samples_ms=list(x),
                metrics=rows,
                details={
                    "environment": {"threads": 4},
                    "warnings": warnings,
                    "parity": parity.to_dict(),
                },
            )
        store.finish_run_if_complete(run_id)
        ids.append(run_id)
    return ids


def write_history(store, samples, plan="p"):
    """One cell, one run per night, as a target writes it (raw samples, p50 and p90)."""
    ids = []
    for night, x in enumerate(samples):
        run_id = f"{plan}-{night:02d}"
        store.create_run(run_id, plan, "h", "c", {}, {}, {"name": plan}, 1)
        cid = store.start_cell(run_id, CellRecord("cell", "lite", "m", "onnx", {}, "host", "host"))
        p50, p90 = np.percentile(x, [50, 90])
        store.finish_cell(
            cid,
            status="done",
            samples_ms=list(x),
            metrics=[("latency_p50_ms", p50, "ms"), ("latency_p90_ms", p90, "ms")],
        )
        ids.append(run_id)
    return ids
