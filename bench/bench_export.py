"""Export benchmark: the ratios issue 3's Performance section names, measured side by side in
one run on this machine, for ``lite`` at 224x224 (1 channel, X-ray, 2 classes).

1. cache hit vs cold export (executorch/xnnpack/fp32): hit time / cold time, target < 2%;
2. ExecuTorch-XNNPACK fp32 latency / ONNX Runtime CPU latency, target <= 1.15;
3. XNNPACK fp32 latency / XNNPACK int8 latency (speed-up), target >= 1.8, and the int8
   program's top-1 agreement with PyTorch fp32 on the real PneumoniaMNIST test images
   (../shared/data, upsampled to 224), target >= 99%;
4. the share of the model's linear/matmul FLOPs delegated to XNNPACK, target >= 95%.

Latency: harness.measure.timed_loop in this process, the runtimes interleaved in rounds so
that load on a shared machine hits all of them alike; both runtimes get the same thread count.

    PYTHONPATH=. python bench/bench_export.py [--threads 2] [--seconds 5] [--data PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

DATA_NAME = "shared/data/pneumoniamnist_balanced.npz"


def find_data() -> Path:
    """../shared/data beside the clone (or beside a folder above it, for worktrees)."""
    for parent in Path(__file__).resolve().parents[1:]:
        if (parent / DATA_NAME).is_file():
            return parent / DATA_NAME
    raise SystemExit(f"{DATA_NAME} not found above {Path(__file__).resolve().parent}; pass --data")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--seconds", type=float, default=5.0, help="minimum seconds per runtime per round"
    )
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--calibration-images", type=int, default=64)
    args = ap.parse_args()
    args.data = args.data or find_data()

    import onnxruntime as ort
    import torch
    from executorch.extension.pybindings.portable_lib import (
        _load_for_executorch,
        _unsafe_reset_threadpool,
    )

    from harness.artifact import ExportSpec
    from harness.calibration import _to_model_input
    from harness.export import export_artifact
    from harness.measure import LoopSettings, summarize, timed_loop
    from harness.model import build_model, preset_config

    torch.set_num_threads(args.threads)
    model = build_model(preset_config("lite", in_chans=1))
    with np.load(args.data) as z:
        calib = _to_model_input(z["train_images"][: args.calibration_images], 1, 224)
        test = _to_model_input(z["test_images"], 1, 224)
    cache = Path(tempfile.mkdtemp(prefix="vitbench-bench-cache-"))
    log = lambda m: print(f"  [{time.strftime('%H:%M:%S')}] {m}", flush=True)  # noqa: E731

    print(f"lite 224x224x1, cache {cache}, {args.threads} threads")
    t0 = time.perf_counter()
    fp32 = export_artifact(
        model, ExportSpec("executorch", "xnnpack", "fp32"), cache=cache, progress=log
    )
    cold = time.perf_counter() - t0
    hits = []
    for _ in range(3):
        t0 = time.perf_counter()
        again = export_artifact(model, ExportSpec("executorch", "xnnpack", "fp32"), cache=cache)
        hits.append(time.perf_counter() - t0)
        assert again.path == fp32.path
    hit = float(np.median(hits))
    onnx = export_artifact(model, ExportSpec("onnx"), cache=cache, progress=log)
    int8 = export_artifact(
        model,
        ExportSpec("executorch", "xnnpack", "int8"),
        cache=cache,
        calibration=calib,
        progress=log,
    )

    _unsafe_reset_threadpool(args.threads)
    et32 = _load_for_executorch(str(fp32.path))
    et8 = _load_for_executorch(str(int8.path))
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx.path), so, providers=["CPUExecutionProvider"])
    x = torch.from_numpy(test[:1].copy())
    xn = test[:1].copy()
    runners = {
        "onnxruntime fp32": lambda: sess.run(None, {"pixels": xn}),
        "executorch xnnpack fp32": lambda: et32.forward((x,)),
        "executorch xnnpack int8": lambda: et8.forward((x,)),
    }
    settings = LoopSettings(
        warmup_iterations=5,
        warmup_seconds=1.0,
        min_iterations=20,
        min_seconds=args.seconds,
        max_seconds=120,
    )
    samples: dict[str, list[float]] = {k: [] for k in runners}
    for r in range(args.rounds):
        for name, fn in runners.items():
            s, _ = timed_loop(fn, settings)
            samples[name] += s
        log(f"latency round {r + 1}/{args.rounds} done")
    stats = {k: summarize(v) for k, v in samples.items()}

    with torch.no_grad():
        ref = np.concatenate(
            [model(torch.from_numpy(test[i : i + 32])).numpy() for i in range(0, len(test), 32)]
        )
    q = np.concatenate(
        [
            et8.forward((torch.from_numpy(test[i : i + 1].copy()),))[0].numpy()
            for i in range(len(test))
        ]
    )
    f = np.concatenate(
        [
            et32.forward((torch.from_numpy(test[i : i + 1].copy()),))[0].numpy()
            for i in range(len(test))
        ]
    )
    agree8 = float(np.mean(ref.argmax(1) == q.argmax(1)))
    agree32 = float(np.mean(ref.argmax(1) == f.argmax(1)))
    share32 = fp32.manifest["lowering"]["matmul_flops_delegated_share"]
    share8 = int8.manifest["lowering"]["matmul_flops_delegated_share"]

    print()
    for name, st in stats.items():
        print(f"{name:26s} p50 {st.p50:8.2f} ms  p90 {st.p90:8.2f} ms  n={st.n}  cv={st.cv:.2f}")
    print(f"cold export {cold:.1f} s, cache hit {hit * 1e3:.0f} ms (median of 3)")
    print(
        f"parity: fp32 {fp32.manifest['parity']['status']}, "
        f"int8 {int8.manifest['parity']['status']} "
        f"(cosine {int8.manifest['parity']['cosine']:.4f}), "
        f"onnx {onnx.manifest['parity']['status']}"
    )
    print(f"XNNPACK fp32 top-1 agreement with PyTorch on {len(test)} test images: {agree32:.1%}")
    rows = [
        ("cache hit / cold export", hit / cold, "< 0.02", hit / cold < 0.02),
        (
            "XNNPACK fp32 / ORT CPU p50",
            stats["executorch xnnpack fp32"].p50 / stats["onnxruntime fp32"].p50,
            "<= 1.15",
            stats["executorch xnnpack fp32"].p50 / stats["onnxruntime fp32"].p50 <= 1.15,
        ),
        (
            "int8 speed-up (fp32 / int8 p50)",
            stats["executorch xnnpack fp32"].p50 / stats["executorch xnnpack int8"].p50,
            ">= 1.8",
            stats["executorch xnnpack fp32"].p50 / stats["executorch xnnpack int8"].p50 >= 1.8,
        ),
        (f"int8 top-1 agreement ({len(test)} real images)", agree8, ">= 0.99", agree8 >= 0.99),
        ("linear/matmul FLOPs delegated (fp32)", share32, ">= 0.95", share32 >= 0.95),
        ("linear/matmul FLOPs delegated (int8)", share8, ">= 0.95", share8 >= 0.95),
    ]
    print()
    print(f"{'ratio':44s} {'measured':>9s}  {'target':>8s}  met")
    for name, value, target, ok in rows:
        print(f"{name:44s} {value:9.4f}  {target:>8s}  {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
